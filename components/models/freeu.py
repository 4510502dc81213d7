"""FreeU (Si et al., 2023, https://arxiv.org/abs/2309.11497): at the UNet's two deepest decoder stages, amplify the
backbone's features (``b1``, ``b2``, on the first half of the channels) and damp the low frequencies of the skip
connections (``s1``, ``s2``) before they are concatenated. No weights, no training; a setting of the UNet's up
blocks (:meth:`UNet2DConditionModel.enable_freeu`).

The stages are the first two up blocks, as diffusers counts them (its ``enable_freeu`` gives the same numbers);
FreeU's own code and ComfyUI's nodes pick them by channel width instead, which differs in the first resnet of each
stage. ``version=2`` is ComfyUI's ``FreeU_V2``: the backbone factor is weighed, pixel by pixel, by the normalised
channel mean of the features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ModelInputError

VERSIONS = (1, 2)


@dataclass(frozen=True)
class FreeU:
    """FreeU's factors: ``b1``/``b2`` scale the backbone features of stages 1 and 2, ``s1``/``s2`` the low
    frequencies of their skip connections; ``version`` 1 (the paper's, diffusers') or 2 (ComfyUI's FreeU_V2).
    The paper's values: SD 1.x b1=1.5, b2=1.6, s1=0.9, s2=0.2; SDXL b1=1.3, b2=1.4, s1=0.9, s2=0.2."""

    b1: float
    b2: float
    s1: float
    s2: float
    version: int = 1

    def __post_init__(self):
        for name in ("b1", "b2", "s1", "s2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ModelInputError(f"FreeU: {name} must be a finite number, got {value!r}")
        if self.version not in VERSIONS:
            raise ModelInputError(f"FreeU: version must be 1 or 2, got {self.version!r}")

    def apply(self, stage: int | None, hidden: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden, skip)`` for an up block's resnet at ``stage`` (its up block's index; stages past 1 are
        left as they are). New tensors: the inputs are not changed."""
        if stage not in (0, 1):
            return hidden, skip
        backbone, low = (self.b1, self.s1) if stage == 0 else (self.b2, self.s2)
        half = hidden.shape[1] // 2
        if self.version == 2:
            backbone = (backbone - 1) * _normalised_mean(hidden) + 1
        hidden = torch.cat([hidden[:, :half] * backbone, hidden[:, half:]], dim=1)
        return hidden, fourier_filter(skip, threshold=1, scale=low)


def _normalised_mean(hidden: torch.Tensor) -> torch.Tensor:
    """The channel mean of ``hidden`` (B, 1, H, W), scaled to [0, 1] per image."""
    mean = hidden.mean(1, keepdim=True)
    flat = mean.flatten(1)
    low = flat.min(dim=-1, keepdim=True).values[:, :, None, None]
    high = flat.max(dim=-1, keepdim=True).values[:, :, None, None]
    return (mean - low) / (high - low)


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """``x`` with its lowest spatial frequencies (the centred ``2*threshold`` square of its 2-D spectrum)
    multiplied by ``scale``. Computed in float32 when a side is not a power of two or ``x`` is bfloat16 (the FFTs'
    half-precision limits), returned in ``x``'s dtype."""
    height, width = x.shape[-2:]
    power_of_two = height & (height - 1) == 0 and width & (width - 1) == 0
    signal = x if power_of_two and x.dtype != torch.bfloat16 else x.float()
    spectrum = torch.fft.fftshift(torch.fft.fftn(signal, dim=(-2, -1)), dim=(-2, -1))
    mask = torch.ones(x.shape, device=x.device)
    row, col = height // 2, width // 2
    mask[..., row - threshold : row + threshold, col - threshold : col + threshold] = scale
    spectrum = torch.fft.ifftshift(spectrum * mask, dim=(-2, -1))
    return torch.fft.ifftn(spectrum, dim=(-2, -1)).real.to(x.dtype)
