"""Magnitude-aware guidance (MAMBO-G)."""

from __future__ import annotations

import torch

from ..components.config import register_to_config
from .cfg import _CFGLike
from .functional import magnitude_aware


class MagnitudeAwareGuidance(_CFGLike):
    """MAMBO-G (https://huggingface.co/papers/2508.03442): CFG whose scale shrinks when the update is large.

    With ``r = ||cond - uncond|| / ||uncond||`` per sample, ``w' = 1 + (w - 1) exp(-alpha r)`` and
    ``pred = uncond + w' (cond - uncond)``; with ``use_original_formulation``, ``w' = w exp(-alpha r)`` and
    ``pred = cond + w' (cond - uncond)``.

    Args:
        guidance_scale: ``w``.
        alpha: How strongly a large update damps the scale.
        guidance_rescale: Mix of the std-rescaled prediction.
        use_original_formulation: Use ``cond`` as the base.
        start: Fraction of the steps after which guidance starts.
        stop: Fraction of the steps after which guidance stops.
        enabled: False runs only the conditional branch.
    """

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 10.0,
        alpha: float = 8.0,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ):
        super().__init__(start, stop, enabled)
        self.guidance_scale = guidance_scale
        self.alpha = alpha
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation

    def _update(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
        return magnitude_aware(pred_cond, pred_uncond, self.guidance_scale, self.alpha, self.use_original_formulation)
