"""Driving the scheduler: set its schedule, cut it for image-to-image or base+refiner, ask what ``step`` takes.

:func:`set_scheduler_timesteps` and :func:`strength_timesteps` change the (per-call) scheduler they are given
(its timesteps, its begin index); :func:`denoising_end_timesteps` and :func:`step_kwargs` only read it.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..components.errors import ConfigError


def set_scheduler_timesteps(scheduler, num_inference_steps=None, device=None, timesteps=None, sigmas=None):
    """Set the schedule from a step count or custom ``timesteps`` / ``sigmas``; returns (timesteps, n).

    Raises:
        ConfigError: both custom timesteps and sigmas, or custom ones the scheduler does not take.
    """
    params = inspect.signature(scheduler.set_timesteps).parameters
    custom = {"timesteps": timesteps, "sigmas": sigmas}
    given = {name: value for name, value in custom.items() if value is not None}
    if len(given) > 1 or any(name not in params for name in given):
        raise ConfigError.custom_schedule(type(scheduler).__name__, timesteps is not None, sigmas is not None)
    if given:
        scheduler.set_timesteps(**given, device=device)
    else:
        scheduler.set_timesteps(num_inference_steps, device=device)
    return scheduler.timesteps, len(scheduler.timesteps)


def schedule_steps(scheduler) -> int:
    """The steps of the scheduler's schedule: its timesteps, a second-order scheduler's counted once per pair
    (Heun's ``2 * steps - 1`` timesteps are ``steps`` steps)."""
    order = getattr(scheduler, "order", 1)
    return (len(scheduler.timesteps) + order - 1) // order


def strength_timesteps(scheduler, num_inference_steps: int, strength: float, denoising_start: float | None = None):
    """The tail of the schedule img2img runs: by ``strength``, or from ``denoising_start`` (base+refiner).

    Returns ``(timesteps, the loop's length)`` and sets the scheduler's begin index to where the tail starts.
    """
    order = getattr(scheduler, "order", 1)
    if denoising_start is None:
        init = min(int(num_inference_steps * strength), num_inference_steps)
        t_start = max(num_inference_steps - init, 0)
        begin, num_steps = t_start * order, num_inference_steps - t_start
    else:
        cutoff = int(round(scheduler.config.num_train_timesteps - denoising_start * scheduler.config.num_train_timesteps))
        num_steps = int((scheduler.timesteps < cutoff).sum().item())
        if order == 2 and num_steps % 2 == 0:
            num_steps += 1  # a 2nd-order scheduler must start on its first-order half step
        begin = len(scheduler.timesteps) - num_steps
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    tail = scheduler.timesteps[begin:]
    return tail, len(tail) if num_steps > 0 else 0  # the model calls the loop makes (a 2nd-order pair: two)


def denoising_end_timesteps(scheduler, timesteps, num_inference_steps: int, denoising_end: float | None):
    """Cut the schedule where the base model of a base+refiner pair stops."""
    if denoising_end is None or not 0 < denoising_end < 1:
        return timesteps, num_inference_steps
    cutoff = int(round(scheduler.config.num_train_timesteps - denoising_end * scheduler.config.num_train_timesteps))
    keep = len([t for t in timesteps if t >= cutoff])
    return timesteps[:keep], keep


def step_kwargs(scheduler, generator, eta: float | None) -> dict[str, Any]:
    """``eta`` and ``generator`` for schedulers whose ``step`` takes them."""
    params = inspect.signature(scheduler.step).parameters
    kwargs = {}
    if "eta" in params and eta is not None:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs
