"""DDPMScheduler: ancestral sampling of denoising diffusion probabilistic models (Ho et al. 2020)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..noise import randn_tensor
from .base import SchedulerMixin, register_scheduler_config
from .ddim import check_step_count
from .schedules import spaced_timesteps
from .updates import clip_or_threshold, ddpm_noise_term, ddpm_posterior_mean, ddpm_variance, vp_denoised

VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")


class DDPMScheduler(SchedulerMixin):
    """DDPM sampler: the posterior mean of q(x_{t-1} | x_t, x0) plus posterior noise (Ho et al. 2020, Alg. 2).

    Stochastic: every step but the last draws one noise tensor from ``generator``. Config keys as
    diffusers' class of the same name (also the ``sigmoid`` and ``laplace`` beta schedules).
    """

    beta_schedules = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace")

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ):
        self._check_choice("timestep_spacing", ("linspace", "leading", "trailing"))
        self._check_choice("variance_type", VARIANCE_TYPES)
        self._init_noise_schedule()
        self.one = torch.tensor(1.0)
        self.init_noise_sigma = 1.0
        self.custom_timesteps = False
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.arange(0, num_train_timesteps)[::-1].copy())
        self.variance_type = variance_type
        self._reset_step_index()

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """DDPM feeds the sample to the model unscaled."""
        return sample

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, sigmas=None) -> None:
        """Build the schedule from a step count, or use custom descending integer ``timesteps``.

        Raises:
            ConfigError: both or neither given, ``sigmas`` given, custom timesteps not strictly descending or
                not below ``num_train_timesteps``, or more steps than training timesteps.
        """
        owner, cfg = type(self).__name__, self.config
        if sigmas is not None or (num_inference_steps is None) == (timesteps is None):
            raise ConfigError(f"{owner}.set_timesteps needs exactly one of num_inference_steps or timesteps")
        if timesteps is not None:
            if any(timesteps[i] >= timesteps[i - 1] for i in range(1, len(timesteps))):
                raise ConfigError(f"{owner}: custom timesteps must be strictly descending, got {list(timesteps)}")
            if timesteps[0] >= cfg.num_train_timesteps:
                raise ConfigError(f"{owner}: custom timesteps must start below {cfg.num_train_timesteps}")
            steps = np.array(timesteps, dtype=np.int64)
            self.custom_timesteps = True
        else:
            check_step_count(owner, num_inference_steps, cfg.num_train_timesteps)
            self.num_inference_steps = num_inference_steps
            self.custom_timesteps = False
            spaced = spaced_timesteps(
                cfg.timestep_spacing, cfg.num_train_timesteps, num_inference_steps, cfg.steps_offset
            )
            steps = spaced.astype(np.int64)
        self.timesteps = torch.from_numpy(steps).to(device)
        self._reset_step_index()

    def previous_timestep(self, timestep):
        """The timestep after ``timestep`` in the schedule (-1 after the last one)."""
        if self.custom_timesteps or self.num_inference_steps:
            index = (self.timesteps == timestep).nonzero(as_tuple=True)[0][0]
            if index == self.timesteps.shape[0] - 1:
                return torch.tensor(-1)
            return self.timesteps[index + 1]
        return timestep - 1

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """One ancestral DDPM step from ``timestep`` to the previous timestep of the schedule.

        Returns:
            :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``) or that pair as a tuple.
        """
        t = timestep
        prev_t = self.previous_timestep(t)
        learned = self.variance_type in ("learned", "learned_range")
        predicted_variance = None
        if learned and model_output.shape[1] == sample.shape[1] * 2:
            model_output, predicted_variance = torch.split(model_output, sample.shape[1], dim=1)
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        cfg = self.config
        x0, _ = vp_denoised(cfg.prediction_type, model_output, sample, alpha_prod_t, type(self).__name__)
        x0 = clip_or_threshold(x0, cfg)
        prev_sample = ddpm_posterior_mean(x0, sample, alpha_prod_t, alpha_prod_t_prev)
        if t > 0:
            noise = randn_tensor(
                model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype
            )
            variance = ddpm_variance(alpha_prod_t, alpha_prod_t_prev, self.variance_type, predicted_variance)
            prev_sample = prev_sample + ddpm_noise_term(variance, self.variance_type, noise)
        return self._output(prev_sample, x0, return_dict)
