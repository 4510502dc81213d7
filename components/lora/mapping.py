"""Finding a LoRA file's layers in a model: module names, kohya's underscore names, SDXL's SGM block names and
FLUX.1's original ones (:mod:`.flux_names`).

Every layer is checked before anything is injected (the module exists, is a Linear or Conv2d, and the LoRA's
shapes fit it), so a LoRA for another model family is refused as a whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from .flux_names import flux_modules, split_up
from .formats import LayerLora

_RESNET_TAILS = {"in_layers_2": "conv1", "out_layers_3": "conv2", "emb_layers_1": "time_emb_proj",
                 "skip_connection": "conv_shortcut"}
_SGM_TOP = {"time_embed_0": "time_embedding_linear_1", "time_embed_2": "time_embedding_linear_2",
            "label_emb_0_0": "add_embedding_linear_1", "label_emb_0_2": "add_embedding_linear_2",
            "input_blocks_0_0": "conv_in", "out_2": "conv_out"}
_SGM_BLOCK = re.compile(r"^(?P<kind>input_blocks|output_blocks)_(?P<i>\d+)_(?P<j>\d+)_(?P<tail>.+)$")
_SGM_MIDDLE = re.compile(r"^middle_block_(?P<i>\d+)_(?P<tail>.+)$")


@dataclass
class Target:
    """A LoRA layer found in the model: the module's name, and down / up shaped as PEFT's layers hold them (None for
    a LoHa or LoKr: its factors are the file's, as PEFT's layers hold them too)."""

    name: str
    lora: LayerLora
    down: torch.Tensor | None
    up: torch.Tensor | None


def adaptable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Linear and Conv2d modules of ``model`` by name (a module already wrapped by PEFT counts as its base)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found: dict[str, nn.Module] = {}
    inside: tuple[str, ...] = ()
    for name, module in model.named_modules():
        if inside and name.startswith(inside):
            continue
        if isinstance(module, BaseTunerLayer):
            found[name], inside = module.get_base_layer(), inside + (name + ".",)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            found[name] = module
    return found


def find_targets(model: nn.Module, layers: dict[str, LayerLora], kohya: bool) -> tuple[list[Target], list[str]]:
    """The layers found in ``model``, and the file keys of those that fit no module (in file order)."""
    modules = adaptable_modules(model)
    names = _kohya_names(modules) if kohya else None
    targets, unfit = [], []
    for file_name, lora in layers.items():
        name = _kohya_lookup(model, names, file_name) if kohya else _dotted_lookup(modules, file_name)
        flat = file_name.replace(".", "_")  # FLUX.1's original names, underscored (kohya) or dotted
        parts = flux_modules(flat) if name is None else None
        if parts is not None:
            found = _fit_parts(flat, parts, modules, lora)
        else:
            found = [_fit(name, modules.get(name), lora)] if name is not None else [None]
        if any(target is None for target in found):
            unfit.append(lora.key)
        else:
            targets += found
    return targets, unfit


def _fit_parts(flat: str, parts: tuple[str, ...], modules: dict[str, nn.Module], lora: LayerLora) -> list[Target | None]:
    """The targets of a LoRA on one module of FLUX.1's original layout: one per part it is here (see
    :mod:`.flux_names`), each with its rows of the up matrix and the shared down matrix."""
    found = [modules.get(part) for part in parts]
    if lora.up is None or any(not isinstance(module, nn.Linear) for module in found):
        return [None]
    ups = split_up(flat, lora.up.flatten(1), [module.out_features for module in found])
    if ups is None:
        return [None]
    return [_fit(part, module, LayerLora(lora.key, lora.down, up, lora.alpha)) for part, module, up in zip(parts, found, ups)]


def _dotted_lookup(modules: dict[str, nn.Module], name: str) -> str | None:
    # transformers 5 flattens CLIPTextModel (no ``text_model.``); LoRAs written before still carry it
    for candidate in (name, name.removeprefix("text_model."), "text_model." + name):
        if candidate in modules:
            return candidate
    return None


def _kohya_names(modules: dict[str, nn.Module]) -> dict[str, str]:
    names = {}
    for name in modules:
        flat = name.replace(".", "_")
        names[flat] = name
        if not flat.startswith("text_model_") and flat.startswith(("encoder_", "embeddings_", "final_layer_norm")):
            names["text_model_" + flat] = name
    return names


def _kohya_lookup(model: nn.Module, names: dict[str, str], flat: str) -> str | None:
    if flat in names:
        return names[flat]
    return names.get(sgm_to_diffusers(model, flat) or "")


def sgm_to_diffusers(model: nn.Module, flat: str) -> str | None:
    """kohya's SDXL LoRAs name the original (SGM) UNet's modules: ``input_blocks_4_1_transformer_blocks_0_attn1_to_q``
    is ``down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q`` in ours (underscore-joined)."""
    if flat in _SGM_TOP:
        return _SGM_TOP[flat]
    middle = _SGM_MIDDLE.match(flat)
    if middle is not None:
        inner = {0: "resnets_0", 1: "attentions_0", 2: "resnets_1"}.get(int(middle["i"]))
        return inner and f"mid_block_{inner}_{_RESNET_TAILS.get(middle['tail'], middle['tail'])}"
    match = _SGM_BLOCK.match(flat)
    layers = getattr(getattr(model, "config", None), "layers_per_block", None)
    if match is None or not isinstance(layers, int):
        return None
    i, j, tail = int(match["i"]), int(match["j"]), _RESNET_TAILS.get(match["tail"], match["tail"])
    if match["kind"] == "input_blocks":
        block, layer = divmod(i - 1, layers + 1)
        if layer == layers:  # the downsampler closes each block
            return f"down_blocks_{block}_downsamplers_0_conv" if tail == "op" else None
        return f"down_blocks_{block}_{('resnets', 'attentions')[min(j, 1)]}_{layer}_{tail}"
    block, layer = divmod(i, layers + 1)
    up_blocks = getattr(model, "up_blocks", [])
    has_attention = block < len(up_blocks) and hasattr(up_blocks[block], "attentions")
    kind = ["resnets", "attentions" if has_attention else "upsamplers", "upsamplers"][min(j, 2)]
    return f"up_blocks_{block}_upsamplers_0_{tail}" if kind == "upsamplers" else f"up_blocks_{block}_{kind}_{layer}_{tail}"


def _fit(name: str, module: nn.Module | None, lora: LayerLora) -> Target | None:
    """``lora`` shaped as PEFT's ``lora_A`` / ``lora_B`` of ``module``, or None when the shapes do not fit."""
    if lora.factors and (lora.down is not None or lora.up is not None):  # two kinds in one layer
        return None
    if lora.factors and module is not None:
        delta = lycoris_delta_shape(lora)
        fits = delta is not None and _count(delta) == module.weight.numel() and delta[0] == module.weight.shape[0]
        return Target(name, lora, None, None) if fits else None
    if module is None or lora.down is None or lora.up is None:
        return None
    rank = lora.down.shape[0]
    if isinstance(module, nn.Conv2d):
        down_shape = (rank, module.in_channels // module.groups, *module.kernel_size)
        up_shape = (module.out_channels, rank, 1, 1)
    else:
        down_shape, up_shape = (rank, module.in_features), (module.out_features, rank)
    if lora.down.numel() != _count(down_shape) or lora.up.numel() != _count(up_shape) or lora.up.shape[0] != up_shape[0]:
        return None
    if lora.down.dim() == 4 and tuple(lora.down.shape) != down_shape:  # a 3x3 LoRA on a 1x1 conv, or the reverse
        return None
    return Target(name, lora, lora.down.reshape(down_shape), lora.up.reshape(up_shape))


def lycoris_delta_shape(lora: LayerLora) -> tuple[int, ...] | None:
    """The shape of the weight delta a LoHa's or LoKr's factors make (PEFT's own products, on the meta device: no
    work), or None when they are incomplete or do not multiply."""
    from peft.tuners.loha.layer import make_weight, make_weight_cp
    from peft.tuners.lokr.layer import make_kron
    from peft.tuners.lokr.layer import make_weight_cp as make_lokr_cp

    meta = {name: torch.empty(tensor.shape, device="meta") for name, tensor in lora.factors.items()}
    try:
        if lora.kind == "loha":
            w1a, w1b, w2a, w2b = (meta[f"hada_w{i}_{ab}"] for i in (1, 2) for ab in "ab")
            if "hada_t1" in meta:
                return tuple(make_weight_cp(meta["hada_t1"], w1a, w1b, meta["hada_t2"], w2a, w2b, scale=1.0).shape)
            return tuple(make_weight(w1a, w1b, w2a, w2b, scale=torch.tensor(1.0, device="meta")).shape)
        w1 = meta["lokr_w1"] if "lokr_w1" in meta else meta["lokr_w1_a"] @ meta["lokr_w1_b"]
        if "lokr_w2" in meta:
            w2 = meta["lokr_w2"]
        elif "lokr_t2" in meta:
            w2 = make_lokr_cp(meta["lokr_t2"], meta["lokr_w2_a"], meta["lokr_w2_b"])
        else:
            w2 = meta["lokr_w2_a"] @ meta["lokr_w2_b"]
        return tuple(make_kron(w1, w2).shape)
    except (KeyError, RuntimeError, ValueError):  # a factor missing, or shapes that do not multiply
        return None


def _count(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total
