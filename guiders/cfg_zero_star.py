"""CFG-Zero*: classifier-free guidance with an optimized unconditional scale and zeroed first steps."""

from __future__ import annotations

from typing import Mapping

import torch

from ..components.config import register_to_config
from .base import COND, UNCOND, GuiderOutput
from .cfg import _CFGLike
from .functional import cfg, zero_star_alpha


class ClassifierFreeZeroStarGuidance(_CFGLike):
    """CFG-Zero* (Fan et al. 2025, https://huggingface.co/papers/2503.18886).

    With ``s* = <cond, uncond> / ||uncond||^2`` per sample, ``uncond' = s* uncond`` and
    ``pred = uncond' + w (cond - uncond')`` (or ``cond + w (cond - uncond')``); the first
    ``zero_init_steps`` steps predict zero (§4.2; the paper suggests the first 4% of steps).

    Args:
        guidance_scale: ``w``.
        zero_init_steps: Number of leading steps whose prediction is zero.
        guidance_rescale: Mix of the std-rescaled prediction (not applied to the zeroed steps).
        use_original_formulation: Use ``cond`` as the base.
        start: Fraction of the steps after which guidance starts.
        stop: Fraction of the steps after which guidance stops.
        enabled: False runs only the conditional branch.
    """

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 7.5,
        zero_init_steps: int = 1,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ):
        super().__init__(start, stop, enabled)
        self.guidance_scale = guidance_scale
        self.zero_init_steps = zero_init_steps
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation

    def _update(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
        scaled = pred_uncond * zero_star_alpha(pred_cond, pred_uncond)
        return cfg(pred_cond, scaled, self.guidance_scale, self.use_original_formulation)

    def _combine(self, preds: Mapping[str, torch.Tensor]) -> GuiderOutput:
        if self._step is not None and self._step < self.zero_init_steps:
            # A zero prediction has no std to rescale (diffusers turns it into NaN).
            pred_cond = preds[COND]
            return GuiderOutput(pred=torch.zeros_like(pred_cond), pred_cond=pred_cond, pred_uncond=preds.get(UNCOND))
        return super()._combine(preds)
