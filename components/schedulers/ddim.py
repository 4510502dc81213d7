"""DDIMScheduler: denoising diffusion implicit models (Song et al. 2021), deterministic at eta=0."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..noise import randn_tensor
from .base import SchedulerMixin, register_scheduler_config
from .schedules import spaced_timesteps
from .updates import clip_or_threshold, ddim_update, ddim_variance, vp_denoised


def check_step_count(owner: str, num_inference_steps: int, num_train_timesteps: int) -> None:
    """A schedule cannot have more inference steps than training timesteps."""
    if num_inference_steps > num_train_timesteps:
        raise ConfigError(
            f"{owner}: num_inference_steps={num_inference_steps} is more than the {num_train_timesteps} "
            f"training timesteps (config num_train_timesteps)"
        )


class DDIMScheduler(SchedulerMixin):
    """DDIM sampler, Song et al. (2021) eq. 12, with optional clipping or dynamic thresholding of x0.

    ``step(..., eta=...)`` interpolates between DDIM (0, deterministic) and DDPM-like sampling (1); with
    eta > 0 it draws one noise tensor per step from ``generator``. Config keys as diffusers' class.
    """

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        rescale_betas_zero_snr: bool = False,
    ):
        self._check_choice("timestep_spacing", ("linspace", "leading", "trailing"))
        self._init_noise_schedule()
        # alpha_bar "before" the first timestep: 1 (fully clean) or the first training value
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.arange(0, num_train_timesteps)[::-1].copy().astype(np.int64))
        self._reset_step_index()

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """DDIM feeds the sample to the model unscaled."""
        return sample

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, sigmas=None) -> None:
        """Build the integer schedule for ``num_inference_steps`` steps with the configured spacing.

        Raises:
            ConfigError: more steps than training timesteps, or custom ``timesteps``/``sigmas`` (not supported
                by DDIM, whose step size is fixed by the step count).
        """
        if timesteps is not None or sigmas is not None or num_inference_steps is None:
            raise ConfigError(f"{type(self).__name__}.set_timesteps takes num_inference_steps only")
        cfg = self.config
        check_step_count(type(self).__name__, num_inference_steps, cfg.num_train_timesteps)
        self.num_inference_steps = num_inference_steps
        steps = spaced_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, num_inference_steps, cfg.steps_offset)
        if len(steps) and steps.max() >= cfg.num_train_timesteps:  # diffusers fails later, with an IndexError
            raise ConfigError(
                f"{type(self).__name__}: {num_inference_steps} steps with steps_offset={cfg.steps_offset} and "
                f"'{cfg.timestep_spacing}' spacing reach timestep {int(steps.max())}, past the last training "
                f"timestep {cfg.num_train_timesteps - 1}; use fewer steps")
        self.timesteps = torch.from_numpy(steps.astype(np.int64)).to(device)
        self._reset_step_index()

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        *,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        variance_noise: torch.Tensor | None = None,
    ):
        """One DDIM step from ``timestep`` to ``timestep - T // num_inference_steps``.

        Args:
            eta: weight of the stochastic term (Song et al. 2021, eq. 16); 0 is deterministic.
            use_clipped_model_output: recompute epsilon from the clipped x0.
            variance_noise: noise to use instead of drawing it from ``generator``.

        Returns:
            :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``) or that pair as a tuple.

        Raises:
            ConfigError: ``set_timesteps`` was not called, or both ``generator`` and ``variance_noise`` given.
        """
        if self.num_inference_steps is None:
            raise ConfigError(f"{type(self).__name__}: call set_timesteps before step")
        cfg = self.config
        prev_timestep = timestep - cfg.num_train_timesteps // self.num_inference_steps
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        x0, eps = vp_denoised(cfg.prediction_type, model_output, sample, alpha_prod_t, type(self).__name__)
        x0 = clip_or_threshold(x0, cfg)
        std_dev_t = eta * ddim_variance(alpha_prod_t, alpha_prod_t_prev) ** (0.5)
        if use_clipped_model_output:
            eps = (sample - alpha_prod_t ** (0.5) * x0) / (1 - alpha_prod_t) ** (0.5)
        prev_sample = ddim_update(x0, eps, alpha_prod_t_prev, std_dev_t)
        if eta > 0:
            if variance_noise is not None and generator is not None:
                raise ConfigError(f"{type(self).__name__}.step: pass either generator or variance_noise, not both")
            if variance_noise is None:
                variance_noise = randn_tensor(
                    model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype
                )
            prev_sample = prev_sample + std_dev_t * variance_noise
        return self._output(prev_sample, x0, return_dict)
