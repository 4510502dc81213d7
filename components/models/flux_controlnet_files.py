"""FLUX.1 ControlNets in one file, as ComfyUI keeps them: XLabs' own layout (``flux-canny-controlnet-v3.safetensors``
of models/xlabs/controlnets: Black Forest Labs' block names, ``pos_embed_input`` and the control image's conv
encoder ``input_hint_block.0`` ... ``.14``), or diffusers' (an InstantX or Union ControlNet's weights without their
config.json). The config is read off the tensors' shapes; ``FluxControlNetModel.from_single_file`` uses both.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from ..errors import ConfigError, WeightsMismatchError
from .flux_original import ROPE_AXES, from_original

XLABS_KEYS = ("pos_embed_input.weight", "input_hint_block.0.weight")  # what only XLabs' files hold
# XLabs' input_hint_block (a Sequential of convolutions and SiLUs) -> our ControlNetConditioningEmbedding's convs
_HINT = {0: "conv_in", 14: "conv_out", **{2 * (i + 1): f"blocks.{i}" for i in range(6)}}
_HINT_KEY = re.compile(r"^input_hint_block\.(\d+)\.(weight|bias)$")


def is_xlabs(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is an XLabs ControlNet in its own layout."""
    return all(key in state_dict for key in XLABS_KEYS)


def _count(state_dict: Mapping[str, Any], pattern: str) -> int:
    """How many blocks ``pattern`` (with one ``(\\d+)``) numbers among the keys."""
    found = {int(m[1]) for m in map(re.compile(pattern).match, state_dict) if m}
    return len(found)


def _shape(state_dict: Mapping[str, torch.Tensor], source: str):
    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise WeightsMismatchError.keys(f"a FLUX.1 ControlNet ({source})", [key], [])
        return tuple(state_dict[key].shape)
    return shape


def _check_heads(head_dim: int, source: str) -> None:
    if head_dim != sum(ROPE_AXES):
        raise ConfigError(f"{source}: heads of {head_dim} channels, not FLUX.1's {sum(ROPE_AXES)}, so the rotary axes "
                          "are unknown; pass config= (a ControlNet config dict, or a folder with its config.json)")


def file_config(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """``FluxControlNetModel``'s config for a one-file ControlNet, XLabs' layout or diffusers'."""
    shape = _shape(state_dict, source)
    if is_xlabs(state_dict):
        inner, in_channels = shape("img_in.weight")
        head_dim = shape("double_blocks.0.img_attn.norm.query_norm.scale")[0]
        _check_heads(head_dim, source)
        return {"in_channels": in_channels, "num_layers": _count(state_dict, r"^double_blocks\.(\d+)\."),
                "num_single_layers": 0, "attention_head_dim": head_dim, "num_attention_heads": inner // head_dim,
                "joint_attention_dim": shape("txt_in.weight")[1],
                "pooled_projection_dim": shape("vector_in.in_layer.weight")[1],
                "guidance_embeds": "guidance_in.in_layer.weight" in state_dict, "axes_dims_rope": ROPE_AXES,
                "conditioning_embedding_channels": shape("input_hint_block.14.weight")[0]}
    inner, in_channels = shape("x_embedder.weight")
    head_dim = shape("transformer_blocks.0.attn.norm_q.weight")[0]
    _check_heads(head_dim, source)
    config = {"in_channels": in_channels, "num_layers": _count(state_dict, r"^transformer_blocks\.(\d+)\."),
              "num_single_layers": _count(state_dict, r"^single_transformer_blocks\.(\d+)\."),
              "attention_head_dim": head_dim, "num_attention_heads": inner // head_dim,
              "joint_attention_dim": shape("context_embedder.weight")[1],
              "pooled_projection_dim": shape("time_text_embed.text_embedder.linear_1.weight")[1],
              "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in state_dict,
              "axes_dims_rope": ROPE_AXES}
    if "controlnet_mode_embedder.weight" in state_dict:  # a Union ControlNet: one learned token per control mode
        config["num_mode"] = shape("controlnet_mode_embedder.weight")[0]
    if "input_hint_block.conv_out.weight" in state_dict:
        config["conditioning_embedding_channels"] = shape("input_hint_block.conv_out.weight")[0]
    return config


def from_xlabs(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An XLabs file's tensors renamed to ``model``'s parameters: the trunk as a transformer's original layout, its
    ``pos_embed_input`` our ``controlnet_x_embedder``, its hint encoder's convolutions ours by position; what names
    nothing is kept as it is, for the loader to report."""
    trunk, renamed = {}, {}
    for key, tensor in state_dict.items():
        hint = _HINT_KEY.match(key)
        if key.startswith("pos_embed_input."):
            renamed[f"controlnet_x_embedder.{key.split('.', 1)[1]}"] = tensor
        elif hint is not None and int(hint[1]) in _HINT:
            renamed[f"input_hint_block.{_HINT[int(hint[1])]}.{hint[2]}"] = tensor
        else:
            trunk[key] = tensor  # controlnet_blocks.N: our names already
    return {**from_original(trunk, model), **renamed}
