"""Multi-head attention with swappable processors.

:class:`Attention` owns the projections (``to_q``, ``to_k``, ``to_v``, ``to_out``) and delegates the computation
to ``self.processor``, a callable ``processor(attn, hidden_states, encoder_hidden_states=None,
attention_mask=None, **kwargs)`` on ``(batch, tokens, channels)`` tensors. Guiders (PAG) and adapters
(IP-Adapter) install their own processors with :meth:`AttentionProcessorMixin.set_attn_processor`; the
default, :class:`AttnProcessor`, calls ``torch.nn.functional.scaled_dot_product_attention`` on
``(batch, heads, tokens, head_dim)`` tensors. Residual connections belong to the caller, except in
:class:`SpatialSelfAttention` (the VAE / pixel-UNet attention on feature maps), which wraps the processor
call in its group norm and residual.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..spec import mark_changed


@functools.lru_cache(maxsize=256)
def _accepted_kwargs(call: Callable) -> frozenset[str] | None:
    """Keyword names a processor's ``__call__`` takes, or None when it takes ``**kwargs``."""
    params = inspect.signature(call).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params)


def mask_to_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A keep-mask ``(batch, key_tokens)`` (1 keep, 0 drop) as an additive bias ``(batch, 1, key_tokens)``
    (0 or -10000); masks of other ranks are taken to be biases already and returned unchanged."""
    if mask is None or mask.ndim != 2:
        return mask
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


class AttnProcessor:
    """The default processor: project, split heads, ``F.scaled_dot_product_attention``, merge, project out.

    The attention mask, when given, is an additive bias of shape ``(batch, 1, key_tokens)`` or
    ``(batch * heads, query_tokens | 1, key_tokens)`` (0 to keep, a large negative number to drop).
    """

    def __call__(
        self,
        attn: "Attention",
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.split_heads(attn.to_q(hidden_states))
        key = attn.split_heads(attn.to_k(context))
        value = attn.split_heads(attn.to_v(context))
        mask = attn.prepare_attention_mask(attention_mask, hidden_states.shape[0])
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)
        out = attn.merge_heads(out).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](out))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Attention(nn.Module):
    """Multi-head (cross-)attention: ``to_out(softmax(q k^T * scale) v)`` with ``q = to_q(x)``,
    ``k = to_k(c)``, ``v = to_v(c)`` and ``c`` the encoder states (or ``x`` for self-attention).

    Args:
        query_dim: Channels of the query input (and of the output).
        cross_attention_dim: Channels of ``encoder_hidden_states``; None for self-attention.
        heads: Number of heads.
        dim_head: Channels per head.
        dropout: Dropout after the output projection.
        bias: Whether ``to_q``/``to_k``/``to_v`` have a bias.
        out_bias: Whether ``to_out[0]`` has a bias.
        upcast_attention: Recorded from the config; the SDPA processor computes scores at SDPA's own
            precision, as diffusers' default processor does.
        processor: The processor to start with (default :class:`AttnProcessor`).
    """

    def __init__(
        self,
        query_dim: int,
        cross_attention_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        bias: bool = False,
        out_bias: bool = True,
        upcast_attention: bool = False,
        processor: Callable | None = None,
    ):
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.upcast_attention = upcast_attention
        self.is_cross_attention = cross_attention_dim is not None
        context_dim = cross_attention_dim if cross_attention_dim is not None else query_dim
        self.to_q = nn.Linear(query_dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim, bias=out_bias), nn.Dropout(dropout)])
        self.set_processor(processor if processor is not None else AttnProcessor())

    def set_processor(self, processor: Callable) -> None:
        """Use ``processor`` for every later call. A processor that is an ``nn.Module`` (one with weights, like
        an IP-Adapter's) becomes a submodule, so it moves and saves with the model."""
        if isinstance(self._modules.get("processor"), nn.Module) and not isinstance(processor, nn.Module):
            del self._modules["processor"]
        self.processor = processor

    def split_heads(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(batch, tokens, heads * d)`` -> ``(batch, heads, tokens, d)``."""
        batch, tokens, channels = tensor.shape
        return tensor.view(batch, tokens, self.heads, channels // self.heads).transpose(1, 2)

    def merge_heads(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(batch, heads, tokens, d)`` -> ``(batch, tokens, heads * d)``."""
        batch, heads, tokens, head_dim = tensor.shape
        return tensor.transpose(1, 2).reshape(batch, tokens, heads * head_dim)

    def prepare_attention_mask(self, mask: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """An additive mask as a tensor that broadcasts against ``(batch, heads, query, key)`` scores."""
        if mask is None or mask.ndim == 4:
            return mask
        if mask.ndim == 2:  # (batch, key): one row for every query and head
            return mask[:, None, None, :]
        if mask.shape[0] == batch * self.heads:
            return mask.view(batch, self.heads, mask.shape[1], mask.shape[2])
        return mask[:, None]

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **cross_attention_kwargs: Any,
    ) -> torch.Tensor:
        """Run the processor on ``(batch, tokens, channels)`` states.

        Keyword arguments the processor does not take are dropped with a warning (the default processor
        takes none), so that one ``cross_attention_kwargs`` dict can serve processors of different kinds.
        """
        if cross_attention_kwargs:
            cross_attention_kwargs = self._kwargs_for_processor(cross_attention_kwargs)
        return self.processor(
            self,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
            **cross_attention_kwargs,
        )

    def _kwargs_for_processor(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        processor = self.processor
        if inspect.isfunction(processor) or inspect.ismethod(processor):
            call = processor
        elif type(processor).__call__ is nn.Module.__call__:  # a module processor that defines forward
            call = type(processor).forward
        else:
            call = type(processor).__call__
        accepted = _accepted_kwargs(getattr(call, "__func__", call))
        if accepted is None:
            return kwargs
        dropped = sorted(k for k in kwargs if k not in accepted)
        if dropped:
            warnings.warn(
                f"cross_attention_kwargs {dropped} are not taken by {type(self.processor).__name__} and are ignored",
                stacklevel=3,
            )
        return {k: v for k, v in kwargs.items() if k in accepted}

    def extra_repr(self) -> str:
        return f"heads={self.heads}, processor={type(self.processor).__name__}"


class SpatialSelfAttention(Attention):
    """Self-attention over the pixels of a feature map, with its own group norm and residual
    (the attention of the VAE mid-block and of pixel-space UNets).

    ``forward`` takes ``(batch, channels, height, width)``, normalises with ``group_norm``, runs the processor
    on ``(batch, height * width, channels)`` tokens, then returns ``(out + input) / rescale_output_factor``.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 1,
        dim_head: int | None = None,
        norm_num_groups: int | None = 32,
        eps: float = 1e-6,
        rescale_output_factor: float = 1.0,
    ):
        dim_head = dim_head if dim_head is not None else channels // heads
        super().__init__(channels, heads=heads, dim_head=dim_head, bias=True)
        self.group_norm = (
            nn.GroupNorm(num_groups=norm_num_groups, num_channels=channels, eps=eps, affine=True)
            if norm_num_groups is not None
            else None
        )
        self.rescale_output_factor = rescale_output_factor

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **cross_attention_kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        batch, channels, height, width = hidden_states.shape
        tokens = hidden_states.view(batch, channels, height * width)
        if self.group_norm is not None:
            tokens = self.group_norm(tokens)
        out = super().forward(
            tokens.transpose(1, 2), encoder_hidden_states, attention_mask, **cross_attention_kwargs
        )
        out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        return (out + residual) / self.rescale_output_factor


# Weight names of checkpoints saved before the pixel attention used to_q/to_k/to_v/to_out.
LEGACY_ATTENTION_KEYS = {
    f".{old}.{kind}": f".{new}.{kind}"
    for old, new in (("query", "to_q"), ("key", "to_k"), ("value", "to_v"), ("proj_attn", "to_out.0"))
    for kind in ("weight", "bias")
}


class AttentionProcessorMixin:
    """``attn_processors`` and ``set_attn_processor`` for a model made of :class:`Attention` layers."""

    def _attention_layers(self) -> dict[str, Attention]:
        return {name: module for name, module in self.named_modules() if isinstance(module, Attention)}

    @property
    def attn_processors(self) -> dict[str, Callable]:
        """Every attention layer's processor, keyed ``"<module path>.processor"`` (e.g.
        ``"mid_block.attentions.0.transformer_blocks.0.attn1.processor"``)."""
        return {f"{name}.processor": layer.processor for name, layer in self._attention_layers().items()}

    def set_attn_processor(self, processor: Callable | Mapping[str, Callable]) -> None:
        """Install one processor in every attention layer, or one per layer from a dict keyed as in
        :attr:`attn_processors` (it must name every layer and nothing else).

        Raises:
            ConfigError: the dict's keys differ from :attr:`attn_processors`' keys.
        """
        layers = self._attention_layers()
        mark_changed(self)
        if not isinstance(processor, Mapping):
            for layer in layers.values():
                layer.set_processor(processor)
            return
        expected = {f"{name}.processor" for name in layers}
        missing, unknown = sorted(expected - set(processor)), sorted(set(processor) - expected)
        if missing or unknown:
            raise ConfigError(
                f"{type(self).__name__}.set_attn_processor: the dict must name all {len(expected)} attention layers; "
                f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''} ({len(missing)}), "
                f"unknown {unknown[:3]}{' ...' if len(unknown) > 3 else ''} ({len(unknown)})"
            )
        for name, layer in layers.items():
            layer.set_processor(processor[f"{name}.processor"])

    def set_default_attn_processor(self) -> None:
        """Put a fresh :class:`AttnProcessor` in every attention layer."""
        self.set_attn_processor(AttnProcessor())
