"""Tangential classifier-free guidance."""

from __future__ import annotations

import torch

from ..components.config import register_to_config
from .cfg import _CFGLike
from .functional import cfg, tangential_uncond


class TangentialClassifierFreeGuidance(_CFGLike):
    """TCFG (Kwon et al. 2025, https://huggingface.co/papers/2503.18137).

    Per sample, stack ``[cond; uncond]`` as a 2 x D matrix, take its top right-singular vector ``v`` and
    replace ``uncond`` by its projection ``u' = (uncond . v) v``; then ``pred = u' + w (cond - u')``
    (or ``cond + w (cond - u')``).

    Args:
        guidance_scale: ``w``.
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

    def _update(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
        projected = tangential_uncond(pred_cond, pred_uncond)
        return cfg(pred_cond, projected, self.guidance_scale, self.use_original_formulation)
