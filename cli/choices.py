"""Flags that pick a component by name: ``--scheduler``, ``--guider`` (with ``--guidance-scale``), ``--device``."""

from __future__ import annotations

from ..components.devices import device_problem
from ..components.errors import FlagError

# short name -> (guider class, extra arguments); layer-perturbing guiders perturb the UNet's mid-block layer 0
GUIDERS = {
    "cfg": ("ClassifierFreeGuidance", {}),
    "cfg-zero-star": ("ClassifierFreeZeroStarGuidance", {}),
    "apg": ("AdaptiveProjectedGuidance", {}),
    "tcfg": ("TangentialClassifierFreeGuidance", {}),
    "mag": ("MagnitudeAwareGuidance", {}),
    "pag": ("PerturbedAttentionGuidance", {"perturbed_guidance_layers": [0]}),
    "seg": ("SmoothedEnergyGuidance", {"seg_guidance_layers": [0]}),
    "slg": ("SkipLayerGuidance", {"skip_layer_guidance_layers": [0]}),
}
SCHEDULER_NAMES = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", "euler": "EulerDiscreteScheduler",
                   "euler-a": "EulerAncestralDiscreteScheduler", "dpm++": "DPMSolverMultistepScheduler",
                   "unipc": "UniPCMultistepScheduler", "lcm": "LCMScheduler"}


def scheduler_class(name: str | None):
    """The scheduler class ``--scheduler`` names: a short name (``euler-a``) or a class name, any case."""
    if name is None:
        return None
    from ..components.schedulers import SCHEDULERS

    key = name.lower().replace("_", "-")
    by_lower = {class_name.lower(): class_name for class_name in SCHEDULERS}
    class_name = SCHEDULER_NAMES.get(key) or by_lower.get(key) or by_lower.get(key + "scheduler")
    if class_name not in SCHEDULERS:
        raise FlagError.unknown_choice("scheduler", name, [*SCHEDULER_NAMES, *SCHEDULERS], flag="--scheduler")
    return SCHEDULERS[class_name]


def make_guider(name: str | None, scale: float | None):
    """The guider for ``--guider`` / ``--guidance-scale``, or None to keep the pipeline's default."""
    if name is None and scale is None:
        return None
    if name is not None and name not in GUIDERS:
        raise FlagError.unknown_choice("guider", name, GUIDERS, flag="--guider")
    from .. import guiders

    class_name, kwargs = GUIDERS[name or "cfg"]
    if scale is not None:
        kwargs = {**kwargs, "guidance_scale": scale}
    return getattr(guiders, class_name)(**kwargs)


def pick_device(name: str | None) -> str:
    """``--device`` checked to exist on this machine; by default ``cuda`` when available, else ``cpu``."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    problem = device_problem(name)
    if problem is not None:
        raise FlagError.unusable("--device", name, problem)
    return name
