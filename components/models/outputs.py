"""What the models' ``forward``, ``encode`` and ``decode`` return (the same fields as diffusers' outputs)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch


class ModelOutput:
    """Fields by attribute (``out.sample``), by name (``out["sample"]``) or by position (``out[0]``)."""

    def to_tuple(self) -> tuple[Any, ...]:
        """The field values in declaration order."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def __getitem__(self, key: int | str) -> Any:
        return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]

    def __iter__(self):
        return iter(self.to_tuple())


@dataclass
class UNet2DConditionOutput(ModelOutput):
    """``sample``: the predicted noise (or v / x0), ``(batch, channels, height, width)``."""

    sample: torch.Tensor


@dataclass
class UNet2DOutput(ModelOutput):
    """``sample``: the model output of the unconditional UNet, ``(batch, channels, height, width)``."""

    sample: torch.Tensor


@dataclass
class DecoderOutput(ModelOutput):
    """``sample``: the decoded images, ``(batch, channels, height, width)``, about in [-1, 1]."""

    sample: torch.Tensor


@dataclass
class AutoencoderKLOutput(ModelOutput):
    """``latent_dist``: the posterior over latents, a :class:`DiagonalGaussianDistribution`."""

    latent_dist: Any
