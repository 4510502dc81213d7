"""Which class loads a component named in a repo's index.

``model_index.json`` names components as ``[library, class]``. Diffusers-format classes map to
diffblocks' own implementations (imported on first use); ``transformers`` classes are used as they are.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import UnsupportedComponentError

_MODELS = "diffblocks.components.models"
_SCHEDULERS = "diffblocks.components.schedulers"
_GUIDERS = "diffblocks.guiders"
_IMAGES = "diffblocks.components.image_processor"

# diffusers class name -> module holding diffblocks' class of the same name
DIFFUSERS_CLASSES: dict[str, str] = {
    **{name: _MODELS for name in ("UNet2DConditionModel", "UNet2DModel", "AutoencoderKL", "ControlNetModel",
                                  "FluxTransformer2DModel", "FluxControlNetModel")},
    **{name: _SCHEDULERS for name in (
        "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DDIMScheduler", "DDPMScheduler",
        "DPMSolverMultistepScheduler", "LCMScheduler", "UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler",
    )},
    **{name: _GUIDERS for name in (
        "ClassifierFreeGuidance", "ClassifierFreeZeroStarGuidance", "AdaptiveProjectedGuidance",
        "AdaptiveProjectedMixGuidance", "TangentialClassifierFreeGuidance", "FrequencyDecoupledGuidance",
        "MagnitudeAwareGuidance", "PerturbedAttentionGuidance", "SkipLayerGuidance", "SmoothedEnergyGuidance",
        "AutoGuidance",
    )},
    **{name: _IMAGES for name in ("VaeImageProcessor", "MaskImageProcessor")},
    "AutoModel": "diffblocks.components.auto_model",  # a type_hint meaning "the class the config names"
}

OUR_LIBRARIES = (None, "diffusers", "diffblocks")
PASS_THROUGH_LIBRARIES = ("transformers",)


def supported_names() -> list[str]:
    return sorted(DIFFUSERS_CLASSES) + ["transformers.<any class>"]


def resolve_class(library: str | None, class_name: str) -> Any:
    """The class for ``[library, class_name]`` from an index (always a class: names of functions or other
    attributes of a library are refused).

    Raises:
        UnsupportedComponentError: the pair is not one diffblocks can load (the message lists those it can).
    """
    if library in OUR_LIBRARIES and class_name in DIFFUSERS_CLASSES:
        module = importlib.import_module(DIFFUSERS_CLASSES[class_name])
        found = getattr(module, class_name, None)
        if found is not None:
            return found
    if library in PASS_THROUGH_LIBRARIES and class_name.isidentifier():
        module = importlib.import_module(library)
        found = getattr(module, class_name, None)
        if isinstance(found, type):  # a class, never a function an index could make us call
            return found
    raise UnsupportedComponentError.unknown_class(library, class_name, supported_names())


def library_of(cls: Any) -> tuple[str | None, str | None]:
    """``[library, class]`` as an index writes it: diffblocks' own classes are written as ``diffusers``."""
    if not isinstance(cls, type):
        return None, None
    root = cls.__module__.split(".")[0]
    if root == "diffblocks" and cls.__name__ in DIFFUSERS_CLASSES:
        return "diffusers", cls.__name__
    return root, cls.__name__
