"""LMSDiscreteScheduler: linear multistep steps of the probability-flow ODE in sigma (k-diffusion ``sample_lms``),
A1111's and ComfyUI's "LMS"."""

from __future__ import annotations

import numpy as np
import torch
from numpy.polynomial import polynomial

from .base import KarrasSchedulerMixin, register_scheduler_config
from .euler import init_k_sampler, spaced_sigmas
from .schedules import training_sigmas
from .updates import karras_denoised


def lms_coefficient(sigmas: torch.Tensor, index: int, order: int, which: int) -> float:
    """The weight of the slope ``which`` steps back in an ``order``-step Adams-Bashforth step from ``sigmas[index]``
    to ``sigmas[index + 1]``: the integral over that interval of the Lagrange polynomial that is 1 at
    ``sigmas[index - which]`` and 0 at the other ``order - 1`` nodes (a polynomial: integrated exactly)."""
    nodes = [float(sigmas[index - k]) for k in range(order)]
    others = [node for k, node in enumerate(nodes) if k != which]
    basis = polynomial.polyfromroots(others) / np.prod([nodes[which] - node for node in others])
    antiderivative = polynomial.polyint(basis)
    return float(polynomial.polyval(float(sigmas[index + 1]), antiderivative)
                 - polynomial.polyval(float(sigmas[index]), antiderivative))


class LMSDiscreteScheduler(KarrasSchedulerMixin):
    """Linear multistep sampler: each step combines the slopes ``(x - x0) / sigma`` of the last (up to) ``order``
    steps, each weighted by the integral of its Lagrange polynomial over the step. Deterministic. Config keys as
    diffusers' class of the same name."""

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ):
        init_k_sampler(self, ("epsilon", "v_prediction", "sample"))
        sigmas = training_sigmas(self.alphas_cumprod)[::-1].copy()
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(np.linspace(0, num_train_timesteps - 1, num_train_timesteps)[::-1].copy())
        self.derivatives: list[torch.Tensor] = []
        self.is_scale_input_called = False
        self._reset_step_index()

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        """The schedule of ``num_inference_steps`` sigmas with the configured spacing (and Karras / exponential /
        beta sigmas when the config asks)."""
        self.num_inference_steps = num_inference_steps
        timesteps, sigmas = spaced_sigmas(self, num_inference_steps)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))  # read on the host
        self.timesteps = torch.from_numpy(np.asarray(timesteps)).to(device=device, dtype=torch.float32)
        self.derivatives = []
        self._reset_step_index()

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, order: int = 4, generator=None,
             return_dict: bool = True):
        """One linear multistep step to the next sigma, with the slopes of the last ``order`` steps (fewer at the
        start); deterministic (``generator`` is taken, as every scheduler's step takes it, and not used).

        Returns:
            :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``) or that pair as a tuple.

        Raises:
            ConfigError: an integer loop index was passed instead of a timestep value.
        """
        self._begin_step(timestep)
        sigma = self.sigmas[self._step_index]
        denoised = karras_denoised(self.config.prediction_type, model_output, sample, sigma)
        self.derivatives = [*self.derivatives, (sample - denoised) / sigma][-order:]
        order = min(self._step_index + 1, order)
        weights = [lms_coefficient(self.sigmas, self._step_index, order, k) for k in range(order)]
        prev_sample = sample + sum(weight * slope for weight, slope in zip(weights, reversed(self.derivatives)))
        self._step_index += 1
        return self._output(prev_sample, denoised, return_dict)
