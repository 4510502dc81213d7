"""Frequency-decoupled guidance, with its Laplacian pyramid in plain torch."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..components.config import register_to_config
from ..components.errors import ConfigError
from .base import COND, UNCOND, GuiderOutput
from .cfg import _CFGLike
from .functional import guide, project, rescale_noise_cfg

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """5x5 binomial blur (Burt & Adelson) of every ``(H, W)`` plane, reflect-padded."""
    k1 = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device)
    kernel = torch.outer(k1, k1) / 256.0
    planes = x.reshape(-1, 1, *x.shape[-2:])
    out = F.conv2d(F.pad(planes, (2, 2, 2, 2), mode="reflect"), kernel[None, None])
    return out.reshape(x.shape)


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    planes = x.reshape(-1, 1, *x.shape[-2:])
    out = F.interpolate(planes, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*x.shape[:-2], *out.shape[-2:])


def _down(x: torch.Tensor) -> torch.Tensor:
    return _resize(_blur(x), (x.shape[-2] // 2, x.shape[-1] // 2))


def _up(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return _blur(_resize(x, size))


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels from fine to coarse; the last is the coarsest Gaussian level. Exactly inverted by
    :func:`reconstruct`, for any size (odd sides are upsampled back to their own size, never padded)."""
    gaussian = [x]
    for _ in range(levels - 1):
        gaussian.append(_down(gaussian[-1]))
    bands = [fine - _up(coarse, fine.shape[-2:]) for fine, coarse in zip(gaussian, gaussian[1:])]
    return bands + [gaussian[-1]]


def reconstruct(pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = _up(image, band.shape[-2:]) + band
    return image


def _per_level(owner: str, key: str, value, levels: int) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * levels
    values = list(value)
    if len(values) != levels:
        raise ConfigError.bad_value(owner, key, f"a number or {levels} numbers (one per guidance scale)", value)
    return values


class FrequencyDecoupledGuidance(_CFGLike):
    """FDG (Sadat et al. 2025, https://huggingface.co/papers/2506.19713).

    Split ``cond`` and ``uncond`` into Laplacian pyramids (levels from high to low frequency) and apply CFG
    per level with its own scale: ``p_l = uncond_l + w_l (cond_l - uncond_l)``, optionally weighting the
    part of the shift parallel to ``cond_l`` by ``parallel_weights[l]``; then rebuild the image from the
    guided pyramid. Levels outside their own window keep ``cond_l``. The authors suggest ``w = [10, 5]``
    for SDXL (high frequencies strongly guided, low ones gently).

    Args:
        guidance_scales: One scale per level, highest frequency first.
        guidance_rescale: One value, or one per level.
        parallel_weights: Weight of the parallel component per level (None: 1.0, plain CFG).
        use_original_formulation: Use ``cond_l`` as the base.
        start: One fraction, or one per level.
        stop: One fraction, or one per level.
        guidance_rescale_space: ``"data"`` rescales the rebuilt prediction with the first rescale value,
            ``"freq"`` each level with its own.
        upcast_to_double: Do the projection in float64.
        enabled: False runs only the conditional branch.
    """

    @register_to_config
    def __init__(
        self,
        guidance_scales: list[float] | tuple[float, ...] = (10.0, 5.0),
        guidance_rescale: float | list[float] = 0.0,
        parallel_weights: float | list[float] | None = None,
        use_original_formulation: bool = False,
        start: float | list[float] = 0.0,
        stop: float | list[float] = 1.0,
        guidance_rescale_space: str = "data",
        upcast_to_double: bool = True,
        enabled: bool = True,
    ):
        name = type(self).__name__
        self.guidance_scales = [float(s) for s in guidance_scales]
        levels = self.levels = len(self.guidance_scales)
        if not levels:
            raise ConfigError.bad_value(name, "guidance_scales", "at least one scale", guidance_scales)
        self.guidance_rescale_levels = _per_level(name, "guidance_rescale", guidance_rescale, levels)
        self.parallel_weights = _per_level(name, "parallel_weights", 1.0 if parallel_weights is None else parallel_weights, levels)
        self.guidance_start = _per_level(name, "start", start, levels)
        self.guidance_stop = _per_level(name, "stop", stop, levels)
        if guidance_rescale_space not in ("data", "freq"):
            raise ConfigError.bad_value(name, "guidance_rescale_space", "'data' or 'freq'", guidance_rescale_space)
        self.guidance_rescale_space = guidance_rescale_space
        self.use_original_formulation = use_original_formulation
        self.upcast_to_double = upcast_to_double
        given = {"guidance_scales": guidance_scales, "guidance_rescale": guidance_rescale,
                 "parallel_weights": parallel_weights, "start": start, "stop": stop}
        # Lists, however they were given, so that a config survives a JSON round trip unchanged.
        self.register_to_config(**{k: list(v) for k, v in given.items() if isinstance(v, (list, tuple))})
        super().__init__(min(self.guidance_start), max(self.guidance_stop), enabled)

    @property
    def guidance_rescale(self) -> float:
        return self.guidance_rescale_levels[0] if self.guidance_rescale_space == "data" else 0.0

    def _level_active(self, level: int) -> bool:
        identity = 0.0 if self.use_original_formulation else 1.0
        in_window = self.in_window(self.guidance_start[level], self.guidance_stop[level])
        return in_window and not math.isclose(self.guidance_scales[level], identity)

    def _active(self) -> bool:
        identity = 0.0 if self.use_original_formulation else 1.0
        guided = not all(math.isclose(s, identity) for s in self.guidance_scales)
        return self.in_window(self._start, self._stop) and guided

    def _guide_level(self, level: int, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        shift = cond - uncond
        weight = self.parallel_weights[level]
        if not math.isclose(weight, 1.0):
            parallel, orthogonal = project(shift, cond, upcast=self.upcast_to_double)
            shift = weight * parallel + orthogonal
        pred = guide(cond if self.use_original_formulation else uncond, (self.guidance_scales[level], shift))
        rescale = self.guidance_rescale_levels[level]
        if self.guidance_rescale_space == "freq" and rescale > 0.0:
            pred = rescale_noise_cfg(pred, cond, rescale)
        return pred

    def _update(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
        conds = laplacian_pyramid(pred_cond, self.levels)
        unconds = laplacian_pyramid(pred_uncond, self.levels)
        guided = [
            self._guide_level(level, c, u) if self._level_active(level) else c
            for level, (c, u) in enumerate(zip(conds, unconds))
        ]
        return reconstruct(guided)

    def _combine(self, preds: Mapping[str, torch.Tensor]) -> GuiderOutput:
        pred_cond, pred_uncond = preds[COND], preds.get(UNCOND)
        if pred_uncond is None or not self._active():
            return GuiderOutput(pred=pred_cond, pred_cond=pred_cond, pred_uncond=pred_uncond)
        return super()._combine(preds)
