"""The VAE posterior; its samples draw noise the way diffusers does (so seeded runs match)."""

from __future__ import annotations

from typing import Sequence

import torch

from ..noise import randn_tensor


class DiagonalGaussianDistribution:
    """A Gaussian with diagonal covariance whose mean and log-variance are the two channel halves of
    ``parameters`` (the log-variance clamped to [-30, 20]).

    Attributes:
        mean, logvar, std, var: Tensors of half the channels of ``parameters``.
    """

    def __init__(self, parameters: torch.Tensor, deterministic: bool = False):
        self.parameters = parameters
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.deterministic = deterministic
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)
        if deterministic:
            self.var = self.std = torch.zeros_like(self.mean)

    def sample(self, generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """``mean + std * eps`` with ``eps`` from :func:`randn_tensor` (same draws as diffusers for a seed)."""
        noise = randn_tensor(self.mean.shape, generator=generator, device=self.parameters.device, dtype=self.parameters.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        """The mean."""
        return self.mean

    def kl(self, other: "DiagonalGaussianDistribution | None" = None) -> torch.Tensor:
        """KL divergence to ``other`` (default the standard normal), summed over channels and pixels."""
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device)
        if other is None:
            return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=[1, 2, 3])
        terms = (self.mean - other.mean).pow(2) / other.var + self.var / other.var - 1.0 - self.logvar + other.logvar
        return 0.5 * torch.sum(terms, dim=[1, 2, 3])
