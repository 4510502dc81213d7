"""Flags that pick a component by name: ``--scheduler`` (with ``--prediction-type``, ``--zero-snr``), ``--guider``
(with ``--guidance-scale``), ``--device``."""

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
                   "dpm++-sde": "DPMSolverMultistepScheduler", "unipc": "UniPCMultistepScheduler",
                   "lcm": "LCMScheduler", "heun": "HeunDiscreteScheduler", "lms": "LMSDiscreteScheduler",
                   "dpm2": "KDPM2DiscreteScheduler", "dpm2-a": "KDPM2AncestralDiscreteScheduler"}
# short names that are a scheduler with settings of its own (A1111's DPM++ 2M SDE, ComfyUI's dpmpp_2m_sde)
SCHEDULER_SETTINGS = {"dpm++-sde": {"algorithm_type": "sde-dpmsolver++"}}


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


# what a UNet predicts (the scheduler's prediction_type), by flag value; ComfyUI's ModelSamplingDiscrete's names too
PREDICTION_TYPES = {"epsilon": "epsilon", "eps": "epsilon", "v_prediction": "v_prediction", "v": "v_prediction"}
SAMPLING_HELP = ("what the model predicts: epsilon (the noise) or v_prediction, for a model whose file or scheduler "
                 "does not say (default: the model's; a checkpoint's v_pred marker, ComfyUI's ModelSamplingDiscrete)")
ZERO_SNR_HELP = ("the model was trained with zero terminal SNR: its scheduler's betas rescaled (default: the model's; "
                 "a checkpoint's ztsnr marker)")
FREEU_HELP = ("FreeU, as B1,B2,S1,S2: the UNet's two deepest decoder stages amplify their features by B1, B2 and "
              "damp the low frequencies of their skip connections by S1, S2; no weights (the paper's: SD 1.x "
              "1.5,1.6,0.9,0.2, SDXL 1.3,1.4,0.9,0.2; ComfyUI's FreeU node, Forge's FreeU)")
FREEU_VERSION_HELP = "with --freeu: 1, the paper's (default), or 2, ComfyUI's FreeU_V2 (Forge's FreeU)"
VAE_TILING_HELP = ("encode and decode images larger than the VAE's own size (SD 1.x: 512 px, SDXL and FLUX.1: 1024) in "
                   "overlapping tiles, for large images on little memory (diffusers' enable_tiling, A1111's Tiled VAE, "
                   "ComfyUI's VAEDecodeTiled; the seams differ slightly from a whole decode)")


# A1111's schedule types (ComfyUI's "scheduler" widget) that our schedulers take -> the change to their config:
# Karras / exponential / beta sigmas (the sigma-based schedulers), or trailing timesteps (SGM Uniform, Simple: the
# last training timestep first, then evenly spaced, as Lightning / Turbo / Hyper-SD models are sampled; every
# scheduler but LCM's)
SCHEDULE_TYPES = {"karras": {"use_karras_sigmas": True}, "exponential": {"use_exponential_sigmas": True},
                  "beta": {"use_beta_sigmas": True}, "sgm uniform": {"timestep_spacing": "trailing"},
                  "simple": {"timestep_spacing": "trailing"}}
SCHEDULE_NAMES = {"karras": "Karras", "exponential": "Exponential", "beta": "Beta", "sgm uniform": "SGM Uniform",
                  "simple": "Simple"}  # as A1111 writes them
SCHEDULE_HELP = ("the spacing of the noise levels: karras, exponential or beta (euler, heun, lms, dpm2, dpm2-a, dpm++ "
                 "and unipc take them; beta needs scipy), or sgm-uniform / simple (trailing timesteps, as Lightning "
                 "and Turbo models want); A1111's Schedule type, ComfyUI's scheduler (default: the scheduler's)")


def schedule_key(name: str | None) -> str | None:
    """``SCHEDULE_TYPES``' key for a schedule type as a flag, A1111 or ComfyUI write it (``sgm_uniform``,
    ``SGM Uniform``, ``sgm-uniform``); None for one not there."""
    key = " ".join((name or "").lower().replace("_", " ").replace("-", " ").split())
    return key if key in SCHEDULE_TYPES else None


def schedule_changes(args) -> dict:
    """The changes to the scheduler's config ``--schedule-type`` asks for."""
    kind = getattr(args, "schedule_type", None)
    if kind is None:
        return {}
    if schedule_key(kind) is None:
        raise FlagError.unknown_choice("schedule type", kind, [k.replace(" ", "-") for k in SCHEDULE_TYPES],
                                       flag="--schedule-type")
    return dict(SCHEDULE_TYPES[schedule_key(kind)])


def check_schedule(args, scheduler: type) -> None:
    """Raise when ``scheduler`` (a class) has no setting for ``--schedule-type``."""
    import inspect

    changes = schedule_changes(args)
    if changes and not set(changes) <= set(inspect.signature(scheduler.__init__).parameters):
        raise FlagError.unusable("--schedule-type", args.schedule_type, f"{scheduler.__name__} has no such spacing "
                                 "(euler, heun, lms, dpm2, dpm2-a, dpm++ and unipc do: give "
                                 "--scheduler)")


def sampling_changes(args) -> dict:
    """The changes to the scheduler's config ``--prediction-type`` and ``--zero-snr`` ask for."""
    changes = {}
    kind = getattr(args, "prediction_type", None)
    if kind is not None:
        if kind.lower() not in PREDICTION_TYPES:
            raise FlagError.unknown_choice("prediction type", kind, ("epsilon", "v_prediction"),
                                           flag="--prediction-type")
        changes["prediction_type"] = PREDICTION_TYPES[kind.lower()]
    if getattr(args, "zero_snr", False):
        changes["rescale_betas_zero_snr"] = True
    return changes


def scheduler_settings(name: str | None) -> dict:
    """The settings a ``--scheduler`` short name brings besides its class (``dpm++-sde``: the SDE algorithm)."""
    return dict(SCHEDULER_SETTINGS.get((name or "").lower().replace("_", "-"), {}))


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
