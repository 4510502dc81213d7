"""diffblocks.components.schedulers: samplers built from diffusers ``scheduler_config.json`` files.

Every scheduler takes the config keys of the diffusers class of the same name and follows the same call
sequence (``set_timesteps``, ``scale_model_input``, ``step``, ``add_noise``, ``set_begin_index``), so a
pipeline driving it gets the same numbers. ``SCHEDULERS`` maps class names to classes for loaders that
read ``model_index.json`` / ``_class_name``.
"""

from .base import FrozenConfig, SchedulerConfig, SchedulerMixin, SchedulerOutput, SigmaSchedulerMixin
from .ddim import DDIMScheduler
from .ddpm import DDPMScheduler
from .dpm_solver import DPMSolverMultistepScheduler
from .euler import EulerDiscreteScheduler
from .euler_ancestral import EulerAncestralDiscreteScheduler
from .flow_match_euler import FlowMatchEulerDiscreteScheduler
from .heun import HeunDiscreteScheduler
from .kdpm2 import KDPM2AncestralDiscreteScheduler, KDPM2DiscreteScheduler
from .lcm import LCMScheduler
from .lms import LMSDiscreteScheduler
from .unipc import UniPCMultistepScheduler

SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    cls.__name__: cls
    for cls in (
        EulerDiscreteScheduler,
        EulerAncestralDiscreteScheduler,
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        LCMScheduler,
        UniPCMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        HeunDiscreteScheduler,
        LMSDiscreteScheduler,
        KDPM2DiscreteScheduler,
        KDPM2AncestralDiscreteScheduler,
    )
}

__all__ = [
    "SCHEDULERS",
    "DDIMScheduler",
    "DDPMScheduler",
    "DPMSolverMultistepScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "FrozenConfig",
    "HeunDiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "LCMScheduler",
    "LMSDiscreteScheduler",
    "SchedulerConfig",
    "SchedulerMixin",
    "SchedulerOutput",
    "SigmaSchedulerMixin",
    "UniPCMultistepScheduler",
]
