"""HeunDiscreteScheduler: Heun's second-order steps of the probability-flow ODE in sigma (Karras et al. 2022,
Alg. 1), A1111's and ComfyUI's "Heun"."""

from __future__ import annotations

import numpy as np
import torch

from .base import KarrasSchedulerMixin, register_scheduler_config
from .euler import init_k_sampler, spaced_sigmas
from .updates import karras_denoised


class HeunDiscreteScheduler(KarrasSchedulerMixin):
    """Heun sampler: an Euler step to the next sigma, then a correction with the slope the model gives there (the
    mean of both slopes, from the first sample). Each sigma but the first is visited twice, so ``timesteps`` holds
    ``2 * steps - 1`` entries: the model runs that many times. Config keys as diffusers' class of the same name.
    """

    order = 2

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "linear",
        trained_betas=None,
        prediction_type: str = "epsilon",
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        clip_sample: bool | None = False,
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ):
        init_k_sampler(self, ("epsilon", "v_prediction", "sample"))
        self.set_timesteps(num_train_timesteps)

    @property
    def state_in_first_order(self) -> bool:
        """Whether the next ``step`` is an Euler step (else the correction of the one before)."""
        return self._dt is None

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None) -> None:
        """The schedule of ``num_inference_steps`` sigmas (or of custom ``timesteps``), each after the first twice."""
        if timesteps is not None:
            num_inference_steps = len(timesteps)
        self.num_inference_steps = num_inference_steps
        timesteps, sigmas = spaced_sigmas(self, num_inference_steps, timesteps)
        sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        self.sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])  # read on the host
        timesteps = torch.from_numpy(np.asarray(timesteps))
        self.timesteps = torch.cat([timesteps[:1], timesteps[1:].repeat_interleave(2)]).to(device, torch.float32)
        self._derivative = self._dt = self._sample = None
        self._reset_step_index()

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True):
        """An Euler step from this sigma to the next (first order), or the Heun correction of the step before;
        deterministic (``generator`` is taken, as every scheduler's step takes it, and not used).

        Returns:
            :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``) or that pair as a tuple.

        Raises:
            ConfigError: an integer loop index was passed instead of a timestep value.
        """
        self._begin_step(timestep)
        first = self.state_in_first_order
        if first:
            sigma, sigma_next = self.sigmas[self._step_index], self.sigmas[self._step_index + 1]
        else:
            sigma, sigma_next = self.sigmas[self._step_index - 1], self.sigmas[self._step_index]
        denoised = karras_denoised(self.config.prediction_type, model_output, sample, sigma if first else sigma_next)
        if self.config.clip_sample:
            denoised = denoised.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        if first:
            derivative, dt = (sample - denoised) / sigma, sigma_next - sigma
            self._derivative, self._dt, self._sample = derivative, dt, sample
        else:
            derivative = (self._derivative + (sample - denoised) / sigma_next) / 2
            dt, sample = self._dt, self._sample
            self._derivative = self._dt = self._sample = None
        prev_sample = sample + derivative * dt
        self._step_index += 1
        return self._output(prev_sample, denoised, return_dict)
