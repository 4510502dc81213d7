"""Seeded Gaussian noise that consumes generators exactly like diffusers' ``randn_tensor``.

Pipelines and stochastic schedulers draw all their noise through :func:`randn_tensor`, so a run seeded with
the same generator(s) produces the same latents and the same per-step noise as the diffusers pipeline.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .errors import DeviceError


def _generator_device_type(generator: torch.Generator | Sequence[torch.Generator]) -> str:
    first = generator[0] if isinstance(generator, (list, tuple)) else generator
    return first.device.type


def _draw_device(device: torch.device | None, target: torch.device, generator) -> torch.device | str | None:
    """Where to draw: on the CPU for a CPU generator (or a Neuron target), else on the requested device."""
    gen_type = _generator_device_type(generator) if generator is not None else target.type
    if gen_type != target.type and gen_type == "cuda":
        raise DeviceError.generator(str(target), gen_type)
    if gen_type != target.type and gen_type == "cpu":
        return "cpu"
    return torch.device("cpu") if target.type == "neuron" else device


def randn_tensor(
    shape: Sequence[int],
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout | None = None,
) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device``.

    A CPU generator with a GPU ``device`` draws on the CPU and moves the result, so CPU-seeded runs are
    reproducible across devices. A list of generators draws each batch element (``shape[0]``) from its own
    generator, in order; a list of one is treated like a single generator.

    Args:
        shape: the tensor shape; ``shape[0]`` is the batch size when ``generator`` is a list.
        generator: one generator, a list with one per batch element, or None for the global RNG.
        device: where the result lives (default: CPU).
        dtype: the result's dtype (noise is drawn directly in it).
        layout: tensor layout (default strided).

    Raises:
        DeviceError: a CUDA generator for a tensor on another device type (a ValueError).
    """
    if isinstance(device, str):
        device = torch.device(device)
    target = device or torch.device("cpu")
    rand_device = _draw_device(device, target, generator)
    layout = layout or torch.strided
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)) and len(generator) == 1:
        generator = generator[0]
    if isinstance(generator, (list, tuple)):
        one = (1,) + shape[1:]
        draws = [
            torch.randn(one, generator=generator[i], device=rand_device, dtype=dtype, layout=layout)
            for i in range(shape[0])
        ]
        return torch.cat(draws, dim=0).to(target)
    return torch.randn(shape, generator=generator, device=rand_device, dtype=dtype, layout=layout).to(target)
