"""The IP-Adapter cross-attention processor (Ye et al., 2023, "IP-Adapter: Text Compatible Image Prompt
Adapter for Text-to-Image Diffusion Models", arXiv:2308.06721).

Decoupled cross-attention: the query attends to the text tokens with the layer's own ``to_k``/``to_v``,
and separately to each adapter's image tokens with that adapter's ``to_k_ip``/``to_v_ip``::

    out = to_out(Attn(q, K_text, V_text) + sum_i scale_i * Attn(q, K_ip_i, V_ip_i))

The UNet hands the processor ``encoder_hidden_states = (text_states, [image_tokens per adapter])`` when image
embeddings are given (see ``UNet2DConditionModel`` with ``encoder_hid_dim_type="ip_image_proj"``); given a
plain tensor it is the ordinary attention.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdapterError
from .attention import Attention


class IPAdapterAttnProcessor(nn.Module):
    """Cross-attention with extra keys/values for the image tokens of one or more IP-Adapters.

    The weights are ``to_k_ip.<i>.weight`` and ``to_v_ip.<i>.weight`` for adapter ``i`` (diffusers' names),
    and the processor is a submodule of its attention layer, so they move and save with the UNet.

    Args:
        hidden_size: Width of the layer's keys and values (``heads * head_dim``).
        cross_attention_dim: Width of the image tokens (the UNet's ``cross_attention_dim``).
        num_tokens: Image tokens per image, one entry per adapter (4 for the base adapter, 16 for "plus").
        scale: How much each adapter's attention adds; one value or one per adapter. 0 skips the adapter.
    """

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_tokens: Sequence[int] = (4,),
                 scale: float | Sequence[float] = 1.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.cross_attention_dim = cross_attention_dim
        self.num_tokens = list(num_tokens)
        count = len(self.num_tokens)
        self.scale = list(scale) if isinstance(scale, (list, tuple)) else [float(scale)] * count
        if len(self.scale) != count:
            raise AdapterError.wrong_count("IPAdapterAttnProcessor", "scales", len(self.scale), count)
        self.to_k_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False) for _ in range(count)])
        self.to_v_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False) for _ in range(count)])

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        image_tokens: list[torch.Tensor] = []
        if isinstance(encoder_hidden_states, tuple):
            encoder_hidden_states, image_tokens = encoder_hidden_states
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.split_heads(attn.to_q(hidden_states))
        key = attn.split_heads(attn.to_k(context))
        value = attn.split_heads(attn.to_v(context))
        mask = attn.prepare_attention_mask(attention_mask, hidden_states.shape[0])
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)
        out = attn.merge_heads(out).to(query.dtype)
        if image_tokens:
            out = self._add_image_attention(attn, query, out, image_tokens)
        return attn.to_out[1](attn.to_out[0](out))

    def _add_image_attention(self, attn: Attention, query: torch.Tensor, out: torch.Tensor,
                             image_tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(image_tokens) != len(self.to_k_ip):
            raise AdapterError.wrong_count("IPAdapterAttnProcessor", "image-token tensors", len(image_tokens),
                                           len(self.to_k_ip), "give one ip_adapter_image (or embedding) per adapter")
        for tokens, scale, to_k, to_v in zip(image_tokens, self.scale, self.to_k_ip, self.to_v_ip):
            if scale == 0:
                continue
            if tokens.ndim == 4:  # (batch, images, tokens, dim): every image's tokens side by side
                tokens = tokens.flatten(1, 2)
            key, value = attn.split_heads(to_k(tokens)), attn.split_heads(to_v(tokens))
            image_out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
            out = out + scale * attn.merge_heads(image_out).to(query.dtype)
        return out

    def extra_repr(self) -> str:
        return f"adapters={len(self.to_k_ip)}, num_tokens={self.num_tokens}, scale={self.scale}"
