"""EulerAncestralDiscreteScheduler: Euler steps plus fresh noise each step (k-diffusion ``sample_euler_ancestral``)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..noise import randn_tensor
from .base import KarrasSchedulerMixin, register_scheduler_config
from .schedules import spaced_timesteps, training_sigmas
from .updates import ancestral_sigmas, euler_update, karras_denoised


class EulerAncestralDiscreteScheduler(KarrasSchedulerMixin):
    """Ancestral Euler sampler: step to ``sigma_down`` deterministically, then add noise of ``sigma_up``.

    Stochastic: each step draws one noise tensor through :func:`~diffblocks.components.noise.randn_tensor`
    from ``generator``. Config keys as diffusers' class of the same name.
    """

    zero_snr_floor = True

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ):
        self._check_choice("timestep_spacing", ("linspace", "leading", "trailing"))
        self._init_noise_schedule()
        sigmas = training_sigmas(self.alphas_cumprod)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas[::-1], [0.0]]).astype(np.float32))
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.linspace(0, num_train_timesteps - 1, num_train_timesteps)[::-1].copy())
        self.is_scale_input_called = False
        self._reset_step_index()

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, sigmas=None) -> None:
        """Build the schedule for ``num_inference_steps`` steps with the configured spacing.

        Raises:
            ConfigError: ``timesteps`` or ``sigmas`` given (this sampler, like diffusers', takes only a count).
        """
        if timesteps is not None or sigmas is not None or num_inference_steps is None:
            raise ConfigError(
                f"{type(self).__name__}.set_timesteps takes num_inference_steps only (no custom timesteps or sigmas)"
            )
        cfg = self.config
        self.num_inference_steps = num_inference_steps
        timesteps = spaced_timesteps(
            cfg.timestep_spacing, cfg.num_train_timesteps, num_inference_steps, cfg.steps_offset, integer=False
        ).astype(np.float32)
        train = training_sigmas(self.alphas_cumprod)
        sigmas = np.interp(timesteps, np.arange(0, len(train)), train)
        sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
        self.timesteps = torch.from_numpy(timesteps).to(device=device)
        self.sigmas = torch.from_numpy(sigmas)  # stepping reads sigmas on the host
        self._reset_step_index()

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """One ancestral step: Euler to ``sigma_down``, then add ``sigma_up`` times fresh noise.

        Returns:
            :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``) or that pair as a tuple.

        Raises:
            ConfigError: an integer loop index was passed instead of a timestep value.
        """
        self._begin_step(timestep)
        sigma = self.sigmas[self._step_index]
        sample = sample.to(torch.float32)
        denoised = karras_denoised(self.config.prediction_type, model_output, sample, sigma)
        sigma_up, sigma_down = ancestral_sigmas(sigma, self.sigmas[self._step_index + 1])
        prev_sample = euler_update(sample, denoised, sigma, sigma_down)
        noise = randn_tensor(
            model_output.shape, dtype=model_output.dtype, device=model_output.device, generator=generator
        )
        prev_sample = (prev_sample + noise * sigma_up).to(model_output.dtype)
        self._step_index += 1
        return self._output(prev_sample, denoised, return_dict)
