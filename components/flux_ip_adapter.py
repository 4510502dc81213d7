"""IP-Adapters for FLUX.1 (XLabs' ``flux-ip-adapter``): the image's CLIP embedding projected to a few tokens, which
the image stream of every double-stream block also attends to, through its own key and value projections; the
result is added to the block's image output, times the adapter's scale.

Files: XLabs' layout (``ip_adapter_proj_model.proj.weight``, ``double_blocks.<i>.processor.
ip_adapter_double_stream_k_proj.weight``), or the ``image_proj`` / ``ip_adapter`` groups diffusers saves
(``<i>.to_k_ip.weight`` for double block ``i``).
"""

from __future__ import annotations

import os
import re
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import AdapterError, WeightsMismatchError
from .files import resolve_file
from .ip_adapter_checkpoint import IPAdapterCheckpoint, build_image_projection, read_ip_adapter
from .ip_adapter_projection import MultiIPAdapterImageProjection
from .models.flux_blocks import FluxAttnProcessor, FluxTransformerBlock
from .spec import mark_changed

_XLABS = re.compile(r"^double_blocks\.(\d+)\.processor\.ip_adapter_double_stream_([kv])_proj\.(weight|bias)$")


def read_flux_ip_adapter(source: str | os.PathLike | Mapping, weight_name: str | None = None,
                         subfolder: str | None = None, revision: str | None = None) -> IPAdapterCheckpoint:
    """One FLUX.1 IP-Adapter, in XLabs' layout or diffusers' groups.

    Raises:
        MissingFileError, CorruptedFileError: the file. AdapterError: neither layout (naming the keys expected).
    """
    if isinstance(source, Mapping) or not str(weight_name or "").endswith(".safetensors"):
        return read_ip_adapter(source, weight_name, subfolder, revision)
    from safetensors.torch import load_file

    path = resolve_file(source, weight_name, subfolder=subfolder or None, revision=revision, what="IP-Adapter weights")
    flat = load_file(str(path))
    if not any(key.startswith("ip_adapter_proj_model.") for key in flat):
        return read_ip_adapter(source, weight_name, subfolder, revision)
    image_proj = {key.split(".", 1)[1]: value for key, value in flat.items() if key.startswith("ip_adapter_proj_model.")}
    layers = {}
    for key, value in flat.items():
        match = _XLABS.match(key)
        if match:
            layers[f"{match[1]}.to_{match[2]}_ip.{match[3]}"] = value
    return IPAdapterCheckpoint(str(path), image_proj, layers)


class FluxIPAdapterAttnProcessor(FluxAttnProcessor, nn.Module):
    """Joint attention, plus each adapter's attention of the image tokens' queries (normalised, before the rotary
    embedding) to its image tokens; returns ``(image, text, ip)`` outputs, ``ip`` the scaled sum."""

    def __init__(self, hidden_size: int, cross_attention_dim: int, count: int):
        super().__init__()
        self.to_k_ip = nn.ModuleList(nn.Linear(cross_attention_dim, hidden_size) for _ in range(count))
        self.to_v_ip = nn.ModuleList(nn.Linear(cross_attention_dim, hidden_size) for _ in range(count))
        self.scale = [1.0] * count

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None,
                 ip_hidden_states: Sequence[torch.Tensor] | None = None):
        query, key, value = self.project(attn, hidden_states, encoder_hidden_states)
        image_out, text_out = self.attend(attn, query, key, value, encoder_hidden_states, attention_mask,
                                          image_rotary_emb)
        if not ip_hidden_states:
            return image_out, text_out
        query = query[:, -hidden_states.shape[1]:].transpose(1, 2)  # the image tokens', before the rotation
        ip_out = torch.zeros_like(image_out)
        for tokens, scale, to_k, to_v in zip(ip_hidden_states, self.scale, self.to_k_ip, self.to_v_ip):
            tokens = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])  # (batch, images x tokens, dim)
            key, value = (attn.split_heads(proj(tokens)).transpose(1, 2) for proj in (to_k, to_v))
            out = F.scaled_dot_product_attention(query, key, value).transpose(1, 2).flatten(2, 3)
            ip_out = ip_out + scale * out.to(query.dtype)
        return image_out, text_out, ip_out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(adapters={len(self.scale)}, scale={self.scale})"


def double_blocks(transformer: nn.Module) -> list[FluxTransformerBlock]:
    return list(transformer.transformer_blocks)


def load_flux_ip_adapters(transformer: nn.Module, checkpoints: Sequence[IPAdapterCheckpoint]) -> None:
    """Install ``checkpoints`` (used together) in ``transformer``'s double-stream blocks, replacing any loaded
    before; each starts at scale 1.0. Nothing changes when one does not fit.

    Raises:
        AdapterError: an adapter lacks weights for some double block (made for another model).
        WeightsMismatchError: weights whose shapes do not fit the transformer.
    """
    if not checkpoints:
        raise AdapterError("load_ip_adapter: no adapter given")
    blocks = double_blocks(transformer)
    inner, cross = transformer.inner_dim, transformer.config.joint_attention_dim
    processors = []
    for index, block in enumerate(blocks):
        processor = FluxIPAdapterAttnProcessor(inner, cross, len(checkpoints))
        for adapter, checkpoint in enumerate(checkpoints):
            for kind, linears in (("k", processor.to_k_ip), ("v", processor.to_v_ip)):
                for param in ("weight", "bias"):
                    key = f"{index}.to_{kind}_ip.{param}"
                    if key not in checkpoint.ip_adapter:
                        raise AdapterError(f"{checkpoint.source} has no '{key}': it does not fit this transformer's "
                                           f"{len(blocks)} double-stream blocks (an adapter for another model?)")
                    target = getattr(linears[adapter], param)
                    weight = checkpoint.ip_adapter[key]
                    if weight.shape != target.shape:
                        raise WeightsMismatchError.shape(f"IP-Adapter {checkpoint.source}", key, tuple(target.shape),
                                                         tuple(weight.shape))
                    target.data.copy_(weight)
        processors.append(processor.to(device=transformer.device, dtype=transformer.dtype))
    projection = MultiIPAdapterImageProjection([build_image_projection(c) for c in checkpoints])
    for block, processor in zip(blocks, processors):
        block.attn.set_processor(processor)
    transformer.encoder_hid_proj = projection.to(device=transformer.device, dtype=transformer.dtype)
    mark_changed(transformer)


def unload_flux_ip_adapters(transformer: nn.Module) -> None:
    """Remove every IP-Adapter: plain joint attention again, no image projection."""
    for block in double_blocks(transformer):
        if isinstance(block.attn.processor, FluxIPAdapterAttnProcessor):
            block.attn.set_processor(FluxAttnProcessor())
    transformer.encoder_hid_proj = None
    mark_changed(transformer)


def set_flux_ip_adapter_scale(transformer: nn.Module, scale: float | Sequence[float]) -> None:
    """One scale for every adapter, or one each."""
    processors = [b.attn.processor for b in double_blocks(transformer)
                  if isinstance(b.attn.processor, FluxIPAdapterAttnProcessor)]
    if not processors:
        raise AdapterError("set_ip_adapter_scale: no IP-Adapter is loaded in the transformer")
    count = len(processors[0].scale)
    scales = list(scale) if isinstance(scale, (list, tuple)) else [scale] * count
    if len(scales) != count:
        raise AdapterError.wrong_count("set_ip_adapter_scale", "scales", len(scales), count)
    for processor in processors:
        processor.scale = [float(s) for s in scales]
    mark_changed(transformer)
