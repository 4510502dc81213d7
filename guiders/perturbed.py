"""The shared shape of SLG, PAG and SEG: CFG plus a conditional branch run on a perturbed model."""

from __future__ import annotations

import math
from typing import Mapping

import torch

from .base import COND, UNCOND, BaseGuidance, GuidanceBranch, GuiderOutput, check_window
from .functional import guide, rescale_noise_cfg
from .perturbations import Perturbation


class _PerturbedGuidance(BaseGuidance):
    """``pred = base + w (cond - uncond) + s (cond - perturbed)``, each term only while it is active.

    ``base`` is ``uncond`` (or ``cond`` with ``use_original_formulation``); without the CFG term it is
    ``perturbed`` (or ``cond``). The CFG term is active in ``[start, stop)`` unless ``w`` is the identity
    scale; the perturbed term after the first step of ``[perturbed_start, perturbed_stop)`` unless ``s == 0``.
    The perturbed branch always gets the positive conditioning, also when CFG is off.
    """

    perturbed_name = "pred_cond_skip"

    def _setup(
        self,
        guidance_scale: float,
        perturbed_scale: float,
        perturbed_window: tuple[float, float],
        window_keys: tuple[str, str],
        perturbations: tuple[Perturbation, ...],
        guidance_rescale: float,
        use_original_formulation: bool,
    ) -> None:
        check_window(type(self).__name__, *perturbed_window, keys=window_keys)
        self.guidance_scale = guidance_scale
        self.perturbed_scale = perturbed_scale
        self.perturbed_start, self.perturbed_stop = perturbed_window
        self.perturbations = perturbations
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation

    def _cfg_active(self) -> bool:
        return self._guides(self.guidance_scale, self.use_original_formulation)

    def _perturbed_active(self) -> bool:
        in_window = self.in_window(self.perturbed_start, self.perturbed_stop, strict_start=True)
        return in_window and not math.isclose(self.perturbed_scale, 0.0)

    def _branches(self) -> list[GuidanceBranch]:
        out = [GuidanceBranch(COND, True)]
        if self._cfg_active():
            out.append(GuidanceBranch(UNCOND, False))
        if self._perturbed_active():
            out.append(GuidanceBranch(self.perturbed_name, True, self.perturbations))
        return out

    def _combine(self, preds: Mapping[str, torch.Tensor]) -> GuiderOutput:
        pred_cond = preds[COND]
        pred_uncond = preds.get(UNCOND) if self._cfg_active() else None
        perturbed = preds.get(self.perturbed_name) if self._perturbed_active() else None
        terms = []
        if pred_uncond is not None:
            terms.append((self.guidance_scale, pred_cond - pred_uncond))
        if perturbed is not None:
            terms.append((self.perturbed_scale, pred_cond - perturbed))
        # without CFG the base is the conditional prediction, as in the papers and the classic PAG pipelines
        # (pred = cond + s (cond - perturbed)); diffusers' modular guiders start from the perturbed one instead
        base = pred_uncond if pred_uncond is not None and not self.use_original_formulation else pred_cond
        pred = guide(base, *terms)
        if self.guidance_rescale > 0.0:
            pred = rescale_noise_cfg(pred, pred_cond, self.guidance_rescale)
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=preds.get(UNCOND))
