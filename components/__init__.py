"""diffblocks.components: component specs, the ComponentsManager, models, schedulers and image processors.

Every name below is importable from here (``from diffblocks.components import UNet2DConditionModel``); each
is imported from its module on first use, so importing the package costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODELS = ("Attention", "AttnProcessor", "AutoencoderKL", "ControlNetModel", "FluxControlNetModel",
           "FluxMultiControlNetModel", "FluxTransformer2DModel", "ModelMixin", "MultiControlNetModel",
           "Transformer2DModel", "UNet2DConditionModel", "UNet2DModel")
_SCHEDULERS = ("SCHEDULERS", "DDIMScheduler", "DDPMScheduler", "DPMSolverMultistepScheduler",
               "EulerAncestralDiscreteScheduler", "EulerDiscreteScheduler", "LCMScheduler", "SchedulerMixin",
               "SchedulerOutput", "UniPCMultistepScheduler")

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "AutoModel": ".auto_model",
    "ComponentSpec": ".spec",
    "ConfigSpec": ".spec",
    "ComponentsManager": ".manager",
    "VaeImageProcessor": ".image_processor",
    "MaskImageProcessor": ".image_processor",
    **{name: ".models" for name in _MODELS},
    **{name: ".schedulers" for name in _SCHEDULERS},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diffblocks.components' has no attribute '{name}'")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
