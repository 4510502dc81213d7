"""Classifier-free guidance."""

from __future__ import annotations

from typing import Mapping

import torch

from ..components.config import register_to_config
from .base import COND, UNCOND, BaseGuidance, GuidanceBranch, GuiderOutput
from .functional import cfg, rescale_noise_cfg


class _CFGLike(BaseGuidance):
    """Two branches (``pred_cond``, ``pred_uncond``) combined by :meth:`_update` while guidance is active.

    Subclasses set ``guidance_scale``, ``guidance_rescale`` and ``use_original_formulation``.
    """

    guidance_scale: float
    guidance_rescale: float
    use_original_formulation: bool

    def _active(self) -> bool:
        return self._guides(self.guidance_scale, self.use_original_formulation)

    def _uncond_branch(self) -> GuidanceBranch:
        return GuidanceBranch(UNCOND, False)

    def _branches(self) -> list[GuidanceBranch]:
        return [GuidanceBranch(COND, True)] + ([self._uncond_branch()] if self._active() else [])

    def _update(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
        return cfg(pred_cond, pred_uncond, self.guidance_scale, self.use_original_formulation)

    def _combine(self, preds: Mapping[str, torch.Tensor]) -> GuiderOutput:
        pred_cond, pred_uncond = preds[COND], preds.get(UNCOND)
        pred = pred_cond
        if pred_uncond is not None and self._active():
            pred = self._update(pred_cond, pred_uncond)
        if self.guidance_rescale > 0.0:
            pred = rescale_noise_cfg(pred, pred_cond, self.guidance_rescale)
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=pred_uncond)


class ClassifierFreeGuidance(_CFGLike):
    """Classifier-free guidance (Ho & Salimans 2022, https://huggingface.co/papers/2207.12598).

    ``pred = uncond + w (cond - uncond)`` (the Imagen form, default) or, with
    ``use_original_formulation``, ``pred = cond + w (cond - uncond)``; then optionally rescaled towards the
    std of ``cond`` (Lin et al. 2023, https://huggingface.co/papers/2305.08891). Outside ``[start, stop)``
    or when ``w`` makes the update the identity (1, or 0 for the original form), only ``pred_cond`` runs.

    Args:
        guidance_scale: ``w``.
        guidance_rescale: Mix of the std-rescaled prediction, 0 (off) to 1.
        use_original_formulation: Use the paper's form above.
        start: Fraction of the steps after which guidance starts.
        stop: Fraction of the steps after which guidance stops.
        enabled: False runs only the conditional branch.
    """

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 7.5,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ):
        super().__init__(start, stop, enabled)
        self.guidance_scale = guidance_scale
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation
