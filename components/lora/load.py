"""Loading one LoRA file into a set of models (the UNet and the text encoders), all or nothing."""

from __future__ import annotations

import logging
import os
from typing import Mapping

from torch import nn

from ..errors import LoraError
from .formats import DENOISER, parse_lora, read_lora_file
from .inject import add_adapter, loaded_adapters
from .mapping import Target, find_targets

logger = logging.getLogger("diffblocks")


def load_lora(models: Mapping[str, nn.Module], source: str | os.PathLike | Mapping, weight_name: str | None = None,
              adapter_name: str | None = None, skip: tuple[str, ...] = ()) -> str:
    """Read a LoRA and add it to ``models`` (``{"unet": ..., "text_encoder": ..., "text_encoder_2": ...}``, or
    ``"transformer"`` for FLUX.1).

    Every key is matched to a module of its model before anything is injected; keys that fit nothing raise one
    error and leave every model as it was.

    Args:
        models: The models a LoRA may adapt, by component name.
        source: A state dict, a file, or a folder / Hub repo (then ``weight_name`` names the file).
        weight_name: The file in the folder or repo (default ``pytorch_lora_weights.safetensors``).
        adapter_name: Name of the new adapter (default ``default_<n>``, as diffusers).
        skip: Components whose weights are ignored (a pipeline without text encoders).

    Returns:
        The adapter's name.

    Raises:
        LoraError: keys that fit no module, weights for a model that is not given, or a taken adapter name.
        MissingFileError, CorruptedFileError: the file is not there or cannot be read.
    """
    state_dict, metadata, label = read_lora_file(source, weight_name)
    parsed = parse_lora(state_dict, metadata)
    if parsed.unread:
        raise LoraError.keys_do_not_fit(label, parsed.unread, len(parsed.unread), "not LoRA weights of a known layout")
    if not parsed.layers:
        raise LoraError.empty(label)
    if DENOISER in parsed.layers:  # the UNet, or FLUX.1's transformer
        denoiser = "transformer" if models.get("unet") is None and models.get("transformer") is not None else "unet"
        parsed.layers[denoiser] = {**parsed.layers.pop(DENOISER), **parsed.layers.get(denoiser, {})}
    plan = _plan(models, parsed, label, skip)
    taken = {name for model in models.values() for name in loaded_adapters(model)}
    adapter_name = adapter_name or f"default_{len(taken)}"
    if adapter_name in taken:
        raise LoraError.name_taken(adapter_name)
    for component, targets in plan.items():
        add_adapter(models[component], adapter_name, targets)
    return adapter_name


def _plan(models, parsed, label: str, skip) -> dict[str, list[Target]]:
    """The targets of each component; raises before anything changes when some layer fits nowhere."""
    plan, unfit = {}, []
    for component, layers in parsed.layers.items():
        if component in skip:
            logger.warning("LoRA %s: this pipeline has no %s; its %d layers there are skipped", label, component,
                           len(layers))
            continue
        if models.get(component) is None:
            raise LoraError.no_component(label, component, [n for n, m in models.items() if m is not None])
        plan[component], missed = find_targets(models[component], layers, parsed.kohya)
        unfit += missed
    if unfit:
        raise LoraError.keys_do_not_fit(label, unfit, len(unfit), "no module of that name and shape")
    return plan
