"""FLUX.1 transformers saved in Black Forest Labs' original layout, one file (``flux1-dev.safetensors``, the
fine-tunes and fp8 copies that ComfyUI and Forge load): the config read off the tensors' shapes, and the weights
renamed to diffusers' layout (fused q/k/v, and q/k/v plus the MLP's input in single blocks, cut by output rows;
the last modulation's halves swapped). ``FluxTransformer2DModel.from_single_file`` uses both.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from ..errors import ConfigError, WeightsMismatchError
from ..lora.flux_names import flux_modules, split_up

# prefixes a file may put before the transformer's keys (ComfyUI's full checkpoints hold the VAE and text encoders too)
PREFIXES = ("model.diffusion_model.", "diffusion_model.")
# the q/k RMS norms' scales: (original block kind, original name) -> our parameter
_NORMS = {("double", "img_attn.norm.query_norm.scale"): "attn.norm_q.weight",
          ("double", "img_attn.norm.key_norm.scale"): "attn.norm_k.weight",
          ("double", "txt_attn.norm.query_norm.scale"): "attn.norm_added_q.weight",
          ("double", "txt_attn.norm.key_norm.scale"): "attn.norm_added_k.weight",
          ("single", "norm.query_norm.scale"): "attn.norm_q.weight",
          ("single", "norm.key_norm.scale"): "attn.norm_k.weight"}
_BLOCK = re.compile(r"^(?P<kind>double|single)_blocks\.(?P<i>\d+)\.(?P<tail>.+)$")
_PREFIX = {"double": "transformer_blocks", "single": "single_transformer_blocks"}
ROPE_AXES = (16, 56, 56)  # FLUX.1's split of the 128 channels of a head among (index, row, column)


def is_original(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is a FLUX.1 transformer in the original layout (with or without a prefix)."""
    return any(key.endswith("double_blocks.0.img_attn.qkv.weight") for key in state_dict)


def strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The transformer's tensors without the prefix a full checkpoint gives them (its other parts dropped)."""
    for prefix in PREFIXES:
        if any(key.startswith(prefix) for key in state_dict):
            return {key[len(prefix):]: tensor for key, tensor in state_dict.items() if key.startswith(prefix)}
    return dict(state_dict)


def original_config(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """``FluxTransformer2DModel``'s config for an original-layout ``state_dict`` (prefix stripped)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise WeightsMismatchError.keys(f"a FLUX.1 transformer ({source})", [key], [])
        return tuple(state_dict[key].shape)

    blocks = {kind: {int(m["i"]) for m in map(_BLOCK.match, state_dict) if m and m["kind"] == kind}
              for kind in ("double", "single")}
    inner, in_channels = shape("img_in.weight")
    head_dim = shape("double_blocks.0.img_attn.norm.query_norm.scale")[0]
    if head_dim != sum(ROPE_AXES):
        raise ConfigError(f"{source}: heads of {head_dim} channels, not FLUX.1's {sum(ROPE_AXES)}, so the rotary "
                          "axes are unknown; pass config= (a transformer config dict, folder or Hub repo)")
    return {"patch_size": 1, "in_channels": in_channels, "out_channels": shape("final_layer.linear.weight")[0],
            "num_layers": len(blocks["double"]), "num_single_layers": len(blocks["single"]),
            "attention_head_dim": head_dim, "num_attention_heads": inner // head_dim,
            "joint_attention_dim": shape("txt_in.weight")[1],
            "pooled_projection_dim": shape("vector_in.in_layer.weight")[1],
            "guidance_embeds": "guidance_in.in_layer.weight" in state_dict, "axes_dims_rope": ROPE_AXES}


def from_original(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` (original layout, prefix stripped) renamed to ``model``'s parameters; fused layers are cut
    by the rows of the layers they hold. Keys that name nothing are kept as they are, for the loader to report."""
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        module, _, param = key.rpartition(".")
        match = _BLOCK.match(key)
        norm = _NORMS.get((match["kind"], match["tail"])) if match else None
        if norm is not None:
            converted[f"{_PREFIX[match['kind']]}.{match['i']}.{norm}"] = tensor
            continue
        flat = module.replace(".", "_")
        targets = flux_modules(flat) if param in ("weight", "bias") else None
        if targets is None:
            converted[key] = tensor
            continue
        rows = [model.get_submodule(target).weight.shape[0] for target in targets]
        parts = split_up(flat, tensor, rows)
        if parts is None:
            raise WeightsMismatchError.shape(type(model).__name__, key, (sum(rows), *tensor.shape[1:]),
                                             tuple(tensor.shape))
        converted.update({f"{target}.{param}": part for target, part in zip(targets, parts)})
    return converted
