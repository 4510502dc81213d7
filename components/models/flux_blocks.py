"""FLUX.1's transformer blocks: joint attention with rotary embeddings, the double-stream block (separate
weights for text and image tokens, one attention over both) and the single-stream block (one set of weights,
attention and MLP in parallel), each modulated by the conditioning vector (adaLN-Zero, Peebles & Xie 2023).

Weight names follow diffusers' ``FluxTransformerBlock`` / ``FluxSingleTransformerBlock``. Blocks and
attention layers are called with keyword arguments, so guiders' layer-skip hooks find their inputs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .activations import FeedForward
from .flux_embeddings import apply_rope

Rope = tuple[torch.Tensor, torch.Tensor]


def _clip_fp16(hidden: torch.Tensor) -> torch.Tensor:
    """Keep float16 activations finite (FLUX's residual stream exceeds the float16 range otherwise)."""
    return hidden.clip(-65504, 65504) if hidden.dtype == torch.float16 else hidden


class AdaNormZero(nn.Module):
    """``LayerNorm(x) * (1 + scale) + shift`` with ``(shift, scale, *rest) = linear(silu(emb)).chunk(chunks)``;
    returns the normalised ``x`` and the ``rest`` (gates and the MLP's shift/scale)."""

    def __init__(self, dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, chunks * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        shift, scale, *rest = self.linear(self.silu(emb)).chunk(self.chunks, dim=1)
        return (self.norm(x) * (1 + scale[:, None]) + shift[:, None], *rest)


class AdaNormOut(nn.Module):
    """The final norm: ``LayerNorm(x) * (1 + scale) + shift`` with ``(scale, shift) = linear(silu(emb))``
    (scale first, unlike :class:`AdaNormZero`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(self.silu(emb).to(x.dtype)).chunk(2, dim=1)
        return self.norm(x) * (1 + scale)[:, None, :] + shift[:, None, :]


class FluxAttnProcessor:
    """Joint attention: project, RMS-normalise q and k per head, put the text tokens (``add_*`` projections)
    before the image tokens, rotate by the rotary embedding, ``F.scaled_dot_product_attention``, then split
    the streams again and project each out (the single-stream block has no output projection)."""

    def __call__(self, attn: "FluxAttention", hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 image_rotary_emb: Rope | None = None):
        query, key, value = self.project(attn, hidden_states, encoder_hidden_states)
        return self.attend(attn, query, key, value, encoder_hidden_states, attention_mask, image_rotary_emb)

    @staticmethod
    def project(attn: "FluxAttention", hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None):
        """``(query, key, value)``, ``(batch, tokens, heads, head_dim)``: q and k normalised, the text tokens first,
        not yet rotated."""
        query, key, value = (attn.split_heads(proj(hidden_states)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if encoder_hidden_states is not None:
            text = [attn.split_heads(proj(encoder_hidden_states))
                    for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)]
            query = torch.cat([attn.norm_added_q(text[0]), query], dim=1)
            key = torch.cat([attn.norm_added_k(text[1]), key], dim=1)
            value = torch.cat([text[2], value], dim=1)
        return query, key, value

    @staticmethod
    def attend(attn: "FluxAttention", query, key, value, encoder_hidden_states, attention_mask, image_rotary_emb):
        """Rotate, attend, split the streams and project them out."""
        if image_rotary_emb is not None:
            query, key = apply_rope(query, image_rotary_emb), apply_rope(key, image_rotary_emb)
        out = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                                             attn_mask=attention_mask)
        out = out.transpose(1, 2).flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return out
        text_len = encoder_hidden_states.shape[1]
        text_out, image_out = out[:, :text_len], out[:, text_len:]
        return attn.to_out[1](attn.to_out[0](image_out.contiguous())), attn.to_add_out(text_out.contiguous())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FluxAttention(nn.Module):
    """The projections of FLUX's attention; the computation is ``self.processor`` (swappable, like
    :class:`~diffblocks.components.models.attention.Attention`'s).

    Args:
        dim: Model width (query, key, value and output).
        heads: Number of heads; ``dim == heads * head_dim``.
        head_dim: Channels per head.
        joint: Add the text stream's projections (``add_*_proj``, ``to_add_out``) (double-stream blocks).
        pre_only: No output projection (single-stream blocks project after concatenating with the MLP).
        eps: Epsilon of the q/k RMS norms.
    """

    # joint self-attention (text and image tokens attend to each other): what guiders' attention skips address
    is_cross_attention = False

    def __init__(self, dim: int, heads: int, head_dim: int, joint: bool = False, pre_only: bool = False, eps: float = 1e-6):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.norm_q = nn.RMSNorm(head_dim, eps=eps)
        self.norm_k = nn.RMSNorm(head_dim, eps=eps)
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, inner) for _ in range(3))
        if not pre_only:
            self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])
        if joint:
            self.norm_added_q = nn.RMSNorm(head_dim, eps=eps)
            self.norm_added_k = nn.RMSNorm(head_dim, eps=eps)
            self.add_q_proj, self.add_k_proj, self.add_v_proj = (nn.Linear(dim, inner) for _ in range(3))
            self.to_add_out = nn.Linear(inner, dim)
        self.processor: Callable = FluxAttnProcessor()

    def set_processor(self, processor: Callable) -> None:
        """Use ``processor`` for every later call. A processor that is an ``nn.Module`` (one with weights, like
        an IP-Adapter's) becomes a submodule, so it moves and saves with the model."""
        if isinstance(self._modules.get("processor"), nn.Module) and not isinstance(processor, nn.Module):
            del self._modules["processor"]
        self.processor = processor

    def split_heads(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(batch, tokens, heads * d)`` -> ``(batch, tokens, heads, d)``."""
        return tensor.unflatten(-1, (-1, self.head_dim))

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None, **kwargs: Any):
        return self.processor(self, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, **kwargs)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, processor={type(self.processor).__name__}"


class FluxTransformerBlock(nn.Module):
    """Double-stream block: image and text tokens keep their own norms, projections and MLPs and meet in
    one attention; both streams are modulated by ``temb``."""

    output_streams = ("encoder_hidden_states", "hidden_states")  # the input each output stands for (layer skips)

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int):
        super().__init__()
        self.norm1 = AdaNormZero(dim, 6)
        self.norm1_context = AdaNormZero(dim, 6)
        self.attn = FluxAttention(dim, num_attention_heads, attention_head_dim, joint=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, activation_fn="gelu-approximate")
        self.norm2_context = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff_context = FeedForward(dim, activation_fn="gelu-approximate")

    def forward(self, hidden_states, encoder_hidden_states, temb, image_rotary_emb=None, joint_attention_kwargs=None):
        """Returns ``(encoder_hidden_states, hidden_states)``, as diffusers' block does."""
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, temb)
        normed_ctx, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(encoder_hidden_states, temb)
        outputs = self.attn(hidden_states=normed, encoder_hidden_states=normed_ctx, image_rotary_emb=image_rotary_emb,
                            **(joint_attention_kwargs or {}))
        attn_out, ctx_attn_out = outputs[:2]
        hidden_states = self._mlp(hidden_states + gate_msa[:, None] * attn_out, self.norm2, self.ff,
                                  shift_mlp, scale_mlp, gate_mlp)
        if len(outputs) == 3:  # IP-Adapters: their attention, added after the MLP, ungated
            hidden_states = hidden_states + outputs[2]
        encoder_hidden_states = self._mlp(encoder_hidden_states + c_gate_msa[:, None] * ctx_attn_out,
                                          self.norm2_context, self.ff_context, c_shift_mlp, c_scale_mlp, c_gate_mlp)
        return _clip_fp16(encoder_hidden_states), hidden_states

    @staticmethod
    def _mlp(x, norm, ff, shift, scale, gate):
        return x + gate[:, None] * ff(norm(x) * (1 + scale[:, None]) + shift[:, None])


class FluxSingleTransformerBlock(nn.Module):
    """Single-stream block over the concatenated ``[text, image]`` tokens: attention and a GELU MLP in
    parallel from one modulated norm, joined by ``proj_out`` and gated into the residual."""

    output_streams = ("encoder_hidden_states", "hidden_states")  # the input each output stands for (layer skips)

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.mlp_hidden_dim = int(dim * mlp_ratio)
        self.norm = AdaNormZero(dim, 3)
        self.proj_mlp = nn.Linear(dim, self.mlp_hidden_dim)
        self.act_mlp = nn.GELU(approximate="tanh")
        self.proj_out = nn.Linear(dim + self.mlp_hidden_dim, dim)
        self.attn = FluxAttention(dim, num_attention_heads, attention_head_dim, pre_only=True)

    def forward(self, hidden_states, encoder_hidden_states, temb, image_rotary_emb=None, joint_attention_kwargs=None):
        """Returns ``(encoder_hidden_states, hidden_states)``, as diffusers' block does."""
        text_len = encoder_hidden_states.shape[1]
        residual = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        normed, gate = self.norm(residual, temb)
        mlp = self.act_mlp(self.proj_mlp(normed))
        attn = self.attn(hidden_states=normed, image_rotary_emb=image_rotary_emb, **(joint_attention_kwargs or {}))
        out = _clip_fp16(residual + gate[:, None] * self.proj_out(torch.cat([attn, mlp], dim=2)))
        return out[:, :text_len], out[:, text_len:]
