"""LoRA layers on any torch module, with PEFT's layer classes: adding adapters, their scales, fusing, unloading.

PEFT's ``lora.Linear`` / ``lora.Conv2d`` wrap the original module (kept as ``base_layer``) and add
``base(x) + scale * up(down(x))``; its ``loha`` / ``lokr`` layers add a LyCORIS file's weight delta (a layer of one
kind wraps one of another where adapters of both kinds adapt one module, as PEFT's mixed models do). We place them
ourselves (``dispatch_default``) instead of going through transformers' or diffusers' PEFT integrations, so the
UNet and the text encoders are handled alike.

Fusing does not add into the original weight: the fused weight is a new tensor and the original is kept, so
unfusing and unloading give back the exact original tensors (and weight-sharing copies, as the node engine makes,
never change the model they share weights with). A fused layer also steps out of the module tree, leaving its
base module (with the fused weight) in its place: PEFT's wrapper would still cost a call of its own per layer,
which on a GPU, where a step is mostly such calls, made a fused rank-64 LoRA on SD 1.5's 192 layers 15 % slower
than no LoRA. Unfusing puts the wrappers back.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from ..spec import mark_changed
from .mapping import Target

LOADED_ATTR = "_diffblocks_lora_adapters"  # adapter name -> the names of the modules it adapts
_ORIGINAL = "_diffblocks_unfused_weight"
_FUSED = "_diffblocks_fused_layers"  # name -> the PEFT layer a fused model holds outside its module tree


def _tuner_layers() -> tuple[type, ...]:
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lycoris_utils import LycorisLayer

    return LoraLayer, LycorisLayer


def lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The PEFT layers of ``model`` (LoRA, LoHa, LoKr), by name, outer before inner where one wraps another (a LoHa
    on a layer a LoRA adapts too); those of a fused model too, which are outside its tree."""
    kinds = _tuner_layers()
    found = [(f"{name}.{inner}" if inner else name, module)
             for name, outer in getattr(model, _FUSED, {}).items() for inner, module in outer.named_modules()
             if isinstance(module, kinds)]
    return found + [(name, module) for name, module in model.named_modules() if isinstance(module, kinds)]


def loaded_adapters(model: nn.Module) -> list[str]:
    return list(getattr(model, LOADED_ATTR, {}))


def active_adapters(model: nn.Module) -> list[str]:
    layers = lora_layers(model)
    return list(layers[0][1].active_adapters) if layers else []


def add_adapter(model: nn.Module, adapter_name: str, targets: Sequence[Target]) -> None:
    """Wrap each target module in a PEFT layer of its kind (LoRA, LoHa or LoKr; or add ``adapter_name`` to the one
    already there, a layer of another kind wrapping it) and fill in the file's weights; ``adapter_name`` becomes
    the only active adapter, at scale 1 (as diffusers)."""
    unfuse(model)  # fused weights hold the adapters of before; the new set is fused again on request
    for target in targets:
        parent_name, _, child = target.name.rpartition(".")
        parent = model.get_submodule(parent_name)
        module = getattr(parent, child)
        with torch.device("meta"):  # PEFT's random init and dtype moves would be thrown away: skip them
            module = (_add_lora if target.lora.kind == "lora" else _add_lycoris)(module, adapter_name, target)
        setattr(parent, child, module)
    loaded = dict(getattr(model, LOADED_ATTR, {}))
    loaded[adapter_name] = [t.name for t in targets]
    object.__setattr__(model, LOADED_ATTR, loaded)
    set_weights(model, {adapter_name: 1.0})


def _add_lora(module: nn.Module, adapter_name: str, target: Target) -> nn.Module:
    """``module`` with a LoRA layer for ``target`` (the module, wrapped, or a LoRA layer in it given one more)."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora.layer import dispatch_default

    config = LoraConfig(r=1, lora_alpha=1, lora_dropout=0.0, init_lora_weights=False, inference_mode=True)
    rank, alpha = target.down.shape[0], target.lora.alpha or target.down.shape[0]
    layer = _layer_in(module, LoraLayer)
    if layer is not None:
        layer.update_layer(adapter_name, rank, lora_alpha=alpha, config=config)
    else:
        module = layer = dispatch_default(module, adapter_name, config, r=rank, lora_alpha=alpha)
    for layers, value in ((layer.lora_A, target.down), (layer.lora_B, target.up)):
        layers[adapter_name].weight = _weight_like(layer, value)
    return module


def _add_lycoris(module: nn.Module, adapter_name: str, target: Target) -> nn.Module:
    """``module`` with a LoHa or LoKr layer holding ``target``'s factors, scaled as A1111 and ComfyUI scale them
    (alpha over the rank of the low-rank factors; a LoKr of whole factors at 1)."""
    from peft import LoHaConfig, LoKrConfig
    from peft.tuners import loha, lokr

    factors = target.lora.factors
    package, config = (loha, LoHaConfig(r=1)) if target.lora.kind == "loha" else (lokr, LoKrConfig(r=1))
    lower = factors.get("hada_w1_b", factors.get("lokr_w1_b", factors.get("lokr_w2_b")))
    rank = lower.shape[0] if lower is not None else None
    rank, alpha = (rank, target.lora.alpha) if rank and target.lora.alpha else (1, 1.0)
    kind = package.layer.LoHaLayer if package is loha else package.layer.LoKrLayer
    layer = _layer_in(module, kind)
    if layer is None:
        wrapper = package.layer.Conv2d if isinstance(_base(module), nn.Conv2d) else package.layer.Linear
        module = layer = wrapper(module, adapter_name, config=config, r=rank, alpha=alpha)
    else:
        layer.update_layer(adapter_name, rank, alpha, config=config)
    for name in layer.adapter_layer_names:  # the file's factors in place of those PEFT's own layout made
        held = getattr(layer, name)
        if adapter_name in held:
            del held[adapter_name]
        if name in factors:
            held[adapter_name] = _weight_like(layer, factors[name])
    return module


def _base(module: nn.Module) -> nn.Module:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return module.get_base_layer() if isinstance(module, BaseTunerLayer) else module


def _layer_in(module: nn.Module, kind: type) -> nn.Module | None:
    """The PEFT layer of ``kind`` among ``module`` and the layers it wraps, if any."""
    while module is not None:
        if isinstance(module, kind):
            return module
        module = getattr(module, "base_layer", None)
    return None


def _weight_like(layer: nn.Module, value: torch.Tensor) -> nn.Parameter:
    weight = layer.get_base_layer().weight
    return nn.Parameter(value.to(device=weight.device, dtype=weight.dtype, copy=True), requires_grad=False)


def set_weights(model: nn.Module, weights: dict[str, float]) -> None:
    """Make exactly the adapters of ``weights`` active, each at its weight (its ``alpha / rank`` times the weight);
    adapters a layer does not have are skipped there. A fused model is unfused first (fuse again to keep the
    new weights fused)."""
    unfuse(model)
    names = list(weights)
    for _, layer in lora_layers(model):
        layer.set_adapter(names, inference_mode=True)
        for name, weight in weights.items():
            layer.set_scale(name, weight)
    mark_changed(model)


def enable(model: nn.Module, enabled: bool) -> None:
    """Switch the LoRA layers on or off (off: the model computes as without them)."""
    if not lora_layers(model):
        return
    if not enabled:
        unfuse(model)
    for _, layer in lora_layers(model):
        layer.enable_adapters(enabled)
    mark_changed(model)


def fuse(model: nn.Module, lora_scale: float = 1.0) -> None:
    """Add the active adapters into the weights (times ``lora_scale``), so a step costs what it costs without
    LoRA. The original weights are kept for :func:`unfuse`; a fused model is unfused first."""
    if not lora_layers(model):
        return
    unfuse(model)
    nests: dict[int, list[tuple[str, nn.Module]]] = {}  # a layer and those it wraps share their base module
    for name, layer in lora_layers(model):
        nests.setdefault(id(layer.get_base_layer()), []).append((name, layer))
    fused = {}
    for (name, outer), *_ in nests.values():
        base = outer.get_base_layer()
        outer.__dict__[_ORIGINAL] = base.weight  # in __dict__: kept, but not a parameter of the layer
        base.weight = nn.Parameter(base.weight.detach().clone(), requires_grad=False)
        for _, layer in nests[id(base)]:
            scaling = dict(layer.scaling)
            layer.scale_layer(lora_scale)
            layer.merge()
            layer.scaling.update(scaling)  # the adapters' own scales, exactly as before fusing
        _place(model, name, base)
        fused[name] = outer
    object.__setattr__(model, _FUSED, fused)
    mark_changed(model)


def unfuse(model: nn.Module) -> None:
    """Give fused layers their original weight tensors back (no subtraction: bitwise the original), and their
    places in the module tree."""
    restored = False
    for name, layer in getattr(model, _FUSED, {}).items():
        _place(model, name, layer)
    if hasattr(model, _FUSED):
        object.__delattr__(model, _FUSED)
    for _, layer in lora_layers(model):
        original = layer.__dict__.pop(_ORIGINAL, None)
        if original is not None:
            layer.get_base_layer().weight = original
            restored = True
        layer.merged_adapters.clear()
    if restored:
        mark_changed(model)


def is_fused(model: nn.Module) -> bool:
    return any(_ORIGINAL in layer.__dict__ for _, layer in lora_layers(model))


def delete_adapters(model: nn.Module, names: Iterable[str]) -> None:
    """Remove adapters; a layer left with none is replaced by its original module."""
    names = set(names)
    active = [n for n in active_adapters(model) if n not in names]
    unfuse(model)
    for name, layer in reversed(lora_layers(model)):  # inner layers first: an outer one may then step out
        for adapter in names & set(layer._all_available_adapter_names()):
            layer.delete_adapter(adapter)
        if not layer._all_available_adapter_names():
            _restore(model, name, layer)
    loaded = {n: m for n, m in getattr(model, LOADED_ATTR, {}).items() if n not in names}
    if loaded:
        object.__setattr__(model, LOADED_ATTR, loaded)
        set_weights(model, {n: 1.0 for n in active} if active else {})
    elif hasattr(model, LOADED_ATTR):
        object.__delattr__(model, LOADED_ATTR)
    mark_changed(model)


def unload(model: nn.Module) -> None:
    """Remove every LoRA layer: the model gets its original modules and weight tensors back."""
    if not lora_layers(model) and not hasattr(model, LOADED_ATTR):
        return
    unfuse(model)
    for name, layer in reversed(lora_layers(model)):  # inner layers first
        _restore(model, name, layer)
    if hasattr(model, LOADED_ATTR):
        object.__delattr__(model, LOADED_ATTR)
    mark_changed(model)


def _restore(model: nn.Module, name: str, layer: nn.Module) -> None:
    _place(model, name, layer.base_layer)  # what it wraps: the original module, or a layer of another kind


def _place(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)
