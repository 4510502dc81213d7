"""kohya / sd-scripts FLUX.1 LoRAs name Black Forest Labs' original modules (``double_blocks_0_img_attn_qkv``,
``single_blocks_3_linear1``); these are the modules of our FluxTransformer2DModel (diffusers' layout) each one
adapts. A fused layer of the original (q, k and v in one; in single blocks also the MLP's input) is several
layers here: its LoRA's down matrix is shared and its up matrix is split by their output rows, which gives each
part exactly its rows of the fused update."""

from __future__ import annotations

import re

import torch

_DOUBLE = {"img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"), "img_attn_proj": ("attn.to_out.0",),
           "img_mlp_0": ("ff.net.0.proj",), "img_mlp_2": ("ff.net.2",), "img_mod_lin": ("norm1.linear",),
           "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
           "txt_attn_proj": ("attn.to_add_out",), "txt_mlp_0": ("ff_context.net.0.proj",),
           "txt_mlp_2": ("ff_context.net.2",), "txt_mod_lin": ("norm1_context.linear",)}
_SINGLE = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "linear2": ("proj_out",),
           "modulation_lin": ("norm.linear",),
           "attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v")}  # XLabs' LoRAs: the attention part of linear1
_TOP = {"img_in": "x_embedder", "txt_in": "context_embedder",
        "time_in_in_layer": "time_text_embed.timestep_embedder.linear_1",
        "time_in_out_layer": "time_text_embed.timestep_embedder.linear_2",
        "vector_in_in_layer": "time_text_embed.text_embedder.linear_1",
        "vector_in_out_layer": "time_text_embed.text_embedder.linear_2",
        "guidance_in_in_layer": "time_text_embed.guidance_embedder.linear_1",
        "guidance_in_out_layer": "time_text_embed.guidance_embedder.linear_2",
        "final_layer_linear": "proj_out", "final_layer_adaLN_modulation_1": "norm_out.linear"}
# the original's last modulation gives (shift, scale); diffusers' norm_out.linear gives (scale, shift)
_SWAPPED = {"final_layer_adaLN_modulation_1"}
_BLOCK = re.compile(r"^(?P<kind>double|single)_blocks_(?P<i>\d+)_(?P<tail>.+)$")


def flux_modules(flat: str) -> tuple[str, ...] | None:
    """The modules (dotted names) the original module ``flat`` (underscore-joined, without ``lora_unet_``) is,
    in the order of its output rows; None when ``flat`` is not a FLUX.1 module name."""
    if flat in _TOP:
        return (_TOP[flat],)
    match = _BLOCK.match(flat)
    if match is None:
        return None
    table, prefix = (_DOUBLE, "transformer_blocks") if match["kind"] == "double" else (_SINGLE, "single_transformer_blocks")
    parts = table.get(match["tail"])
    return None if parts is None else tuple(f"{prefix}.{match['i']}.{part}" for part in parts)


def split_up(flat: str, up: torch.Tensor, rows: list[int]) -> list[torch.Tensor] | None:
    """``up`` (the original module's LoRA up matrix) as one matrix per part of ``rows`` output rows each; None
    when the rows do not add up to the original's."""
    if up.shape[0] != sum(rows):
        return None
    if flat in _SWAPPED:
        up = torch.cat(up.chunk(2, dim=0)[::-1])
    return list(up.split(rows, dim=0))
