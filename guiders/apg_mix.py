"""Classifier-free guidance that switches to adaptive projected guidance after a few steps."""

from __future__ import annotations

import math
from typing import Mapping

import torch

from ..components.config import register_to_config
from .apg import MomentumBuffer
from .base import COND, UNCOND, GuiderOutput
from .cfg import _CFGLike
from .functional import apg, cfg, rescale_noise_cfg


class AdaptiveProjectedMixGuidance(_CFGLike):
    """CFG, then APG (https://huggingface.co/papers/2410.02416), as used by HunyuanImage 2.1.

    Up to step ``adaptive_projected_guidance_start_step``: ``pred = uncond + w_cfg (cond - uncond)`` while the
    momentum buffer accumulates ``d = cond - uncond``. After it: APG with ``w_apg``, the momentum-averaged ``d``
    clipped to norm ``r`` and ``pred = uncond + w_apg (d_orth + eta d_par)``.

    Args:
        guidance_scale: ``w_cfg``.
        guidance_rescale: Mix of the std-rescaled prediction.
        adaptive_projected_guidance_scale: ``w_apg``.
        adaptive_projected_guidance_momentum: Momentum of the running ``d``; None for none.
        adaptive_projected_guidance_rescale: ``r``.
        eta: Weight of the parallel component.
        use_original_formulation: Use ``cond`` as the base.
        start: Fraction of the steps after which guidance starts.
        stop: Fraction of the steps after which guidance stops.
        adaptive_projected_guidance_start_step: Last step that uses CFG.
        enabled: False runs only the conditional branch.
    """

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 3.5,
        guidance_rescale: float = 0.0,
        adaptive_projected_guidance_scale: float = 10.0,
        adaptive_projected_guidance_momentum: float | None = -0.5,
        adaptive_projected_guidance_rescale: float = 10.0,
        eta: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        adaptive_projected_guidance_start_step: int = 5,
        enabled: bool = True,
    ):
        self.guidance_scale = guidance_scale
        self.guidance_rescale = guidance_rescale
        self.adaptive_projected_guidance_scale = adaptive_projected_guidance_scale
        self.adaptive_projected_guidance_momentum = adaptive_projected_guidance_momentum
        self.adaptive_projected_guidance_rescale = adaptive_projected_guidance_rescale
        self.eta = eta
        self.use_original_formulation = use_original_formulation
        self.adaptive_projected_guidance_start_step = adaptive_projected_guidance_start_step
        super().__init__(start, stop, enabled)

    def _reset_state(self) -> None:
        momentum = self.adaptive_projected_guidance_momentum
        self.momentum_buffer = MomentumBuffer(momentum) if momentum is not None else None

    def _apg_active(self) -> bool:
        identity = 0.0 if self.use_original_formulation else 1.0
        return (
            self._active()
            and self._step is not None
            and self._step > self.adaptive_projected_guidance_start_step
            and not math.isclose(self.adaptive_projected_guidance_scale, identity)
        )

    def _combine(self, preds: Mapping[str, torch.Tensor]) -> GuiderOutput:
        pred_cond, pred_uncond = preds[COND], preds.get(UNCOND)
        pred = pred_cond
        if pred_uncond is not None and self._active():
            diff = pred_cond - pred_uncond
            if self.momentum_buffer is not None:
                diff = self.momentum_buffer.update(diff)
            if self._apg_active():
                pred = apg(
                    pred_cond,
                    pred_uncond,
                    diff,
                    self.adaptive_projected_guidance_scale,
                    self.eta,
                    self.adaptive_projected_guidance_rescale,
                    self.use_original_formulation,
                )
            else:
                pred = cfg(pred_cond, pred_uncond, self.guidance_scale, self.use_original_formulation)
        if self.guidance_rescale > 0.0:
            pred = rescale_noise_cfg(pred, pred_cond, self.guidance_rescale)
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=pred_uncond)
