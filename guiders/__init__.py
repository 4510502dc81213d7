"""Guiders: how the denoise loop turns several model predictions into one guided prediction.

Every guider follows the contract of :class:`BaseGuidance` (``reset``, ``set_state``, ``branches``,
``perturb``, ``combine``) and is a config object saved as ``guider_config.json``.
"""

from .apg import AdaptiveProjectedGuidance
from .apg_mix import AdaptiveProjectedMixGuidance
from .auto_guidance import AutoGuidance
from .base import BaseGuidance, GuidanceBranch, GuiderOutput
from .cfg import ClassifierFreeGuidance
from .cfg_zero_star import ClassifierFreeZeroStarGuidance
from .fdg import FrequencyDecoupledGuidance
from .magnitude_aware import MagnitudeAwareGuidance
from .pag import PerturbedAttentionGuidance
from .perturbations import LayerSkipConfig, SmoothedEnergyGuidanceConfig
from .skip_layer import SkipLayerGuidance
from .smoothed_energy import SmoothedEnergyGuidance
from .tcfg import TangentialClassifierFreeGuidance

GUIDERS: dict[str, type[BaseGuidance]] = {
    cls.__name__: cls
    for cls in (
        ClassifierFreeGuidance,
        ClassifierFreeZeroStarGuidance,
        AdaptiveProjectedGuidance,
        AdaptiveProjectedMixGuidance,
        TangentialClassifierFreeGuidance,
        FrequencyDecoupledGuidance,
        MagnitudeAwareGuidance,
        PerturbedAttentionGuidance,
        SkipLayerGuidance,
        SmoothedEnergyGuidance,
        AutoGuidance,
    )
}

__all__ = [
    "BaseGuidance",
    "GuidanceBranch",
    "GuiderOutput",
    "LayerSkipConfig",
    "SmoothedEnergyGuidanceConfig",
    "GUIDERS",
    *GUIDERS,
]
