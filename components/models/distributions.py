"""The VAE posterior, and seeded noise drawn the way diffusers draws it (so seeded runs match)."""

from __future__ import annotations

from typing import Sequence

import torch


def randn_tensor(
    shape: Sequence[int],
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device``, consuming ``generator`` exactly as diffusers does.

    A CPU generator draws on the CPU and the result is moved to ``device``; a list of generators draws one
    batch element from each.

    Raises:
        ValueError: a CUDA generator was given for a tensor on another device.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)) and len(generator) == 1:
        generator = generator[0]
    first = generator[0] if isinstance(generator, (list, tuple)) else generator
    rand_device = device
    if first is not None and first.device.type != device.type:
        if first.device.type != "cpu":
            raise ValueError(f"cannot draw a {device} tensor from a generator on {first.device}")
        rand_device = torch.device("cpu")
    if isinstance(generator, (list, tuple)):
        if len(generator) < shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}; pass one per batch element")
        parts = [torch.randn((1,) + shape[1:], generator=generator[i], device=rand_device, dtype=dtype) for i in range(shape[0])]
        return torch.cat(parts, dim=0).to(device)
    return torch.randn(shape, generator=generator, device=rand_device, dtype=dtype).to(device)


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
