"""Adaptive projected guidance."""

from __future__ import annotations

import torch

from ..components.config import register_to_config
from .cfg import _CFGLike
from .functional import apg


class MomentumBuffer:
    """Running sum ``avg <- update + momentum * avg`` of the guidance updates of one pipeline call."""

    def __init__(self, momentum: float):
        self.momentum = momentum
        self.average: torch.Tensor | None = None

    def update(self, value: torch.Tensor) -> torch.Tensor:
        self.average = value if self.average is None else value + self.momentum * self.average
        return self.average


class AdaptiveProjectedGuidance(_CFGLike):
    """APG (Sadat et al. 2024, https://huggingface.co/papers/2410.02416).

    ``d = cond - uncond``, optionally averaged with momentum ``beta`` over the steps (``d <- d + beta d_prev``)
    and clipped to norm ``r``; split ``d`` into ``d_par`` (along ``cond``) and ``d_orth``; then
    ``pred = uncond + w (d_orth + eta d_par)`` (or ``cond + ...``).

    Args:
        guidance_scale: ``w``.
        adaptive_projected_guidance_momentum: ``beta``; None for no momentum.
        adaptive_projected_guidance_rescale: ``r``, the norm threshold (0 disables clipping).
        adaptive_projected_guidance_norm_dim: Dim(s) for the norm and projection; all but the batch by default.
        eta: Weight of the parallel component.
        guidance_rescale: Mix of the std-rescaled prediction.
        use_original_formulation: Use ``cond`` as the base.
        start: Fraction of the steps after which guidance starts.
        stop: Fraction of the steps after which guidance stops.
        enabled: False runs only the conditional branch.
    """

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 7.5,
        adaptive_projected_guidance_momentum: float | None = None,
        adaptive_projected_guidance_rescale: float = 15.0,
        adaptive_projected_guidance_norm_dim: int | tuple[int, ...] | None = None,
        eta: float = 1.0,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ):
        self.guidance_scale = guidance_scale
        self.adaptive_projected_guidance_momentum = adaptive_projected_guidance_momentum
        self.adaptive_projected_guidance_rescale = adaptive_projected_guidance_rescale
        norm_dim = adaptive_projected_guidance_norm_dim
        if norm_dim is not None and not isinstance(norm_dim, int):
            norm_dim = list(norm_dim)
            self.register_to_config(adaptive_projected_guidance_norm_dim=norm_dim)
        self.adaptive_projected_guidance_norm_dim = norm_dim
        self.eta = eta
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation
        super().__init__(start, stop, enabled)

    def _reset_state(self) -> None:
        momentum = self.adaptive_projected_guidance_momentum
        self.momentum_buffer = MomentumBuffer(momentum) if momentum is not None else None

    def _update(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
        diff = pred_cond - pred_uncond
        if self.momentum_buffer is not None:
            diff = self.momentum_buffer.update(diff)
        norm_dim = self.adaptive_projected_guidance_norm_dim
        dims = [norm_dim] if isinstance(norm_dim, int) else norm_dim
        return apg(
            pred_cond,
            pred_uncond,
            diff,
            self.guidance_scale,
            self.eta,
            self.adaptive_projected_guidance_rescale,
            self.use_original_formulation,
            dims,
        )
