"""LCMScheduler: multistep consistency sampling of latent consistency models (Luo et al. 2023)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..errors import ConfigError
from ..noise import randn_tensor
from .base import SchedulerMixin, register_scheduler_config
from .ddim import check_step_count
from .updates import clip_or_threshold, lcm_boundary_scalings, vp_denoised

logger = logging.getLogger(__name__)


def lcm_origin_timesteps(num_train_timesteps: int, original_steps: int, strength: float = 1.0) -> np.ndarray:
    """The distillation grid ``k, 2k, ..., - 1`` with ``k = T // original_steps`` (ascending), cut by ``strength``."""
    k = num_train_timesteps // original_steps
    return np.asarray(list(range(1, int(original_steps * strength) + 1))) * k - 1


class LCMScheduler(SchedulerMixin):
    """Multistep LCM sampling (Luo et al., *Latent Consistency Models*, 2023, Algorithm 3).

    Each step maps the sample to the consistency-model output ``c_skip x + c_out x0`` and, except at the
    last step, re-noises it to the next timestep with noise drawn from ``generator``. Config keys as diffusers'.
    """

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "scaled_linear",
        trained_betas=None,
        original_inference_steps: int = 50,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        timestep_scaling: float = 10.0,
        rescale_betas_zero_snr: bool = False,
    ):
        self._init_noise_schedule()
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.arange(0, num_train_timesteps)[::-1].copy().astype(np.int64))
        self.custom_timesteps = False
        self._reset_step_index()

    _missing_timestep_is_last = False

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """LCM feeds the sample to the model unscaled."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps=None,
        device=None,
        timesteps=None,
        sigmas=None,
        original_inference_steps: int | None = None,
        strength: float = 1.0,
    ) -> None:
        """Pick ``num_inference_steps`` timesteps from the distillation grid, or use custom ``timesteps``.

        Args:
            original_inference_steps: size of the distillation grid (default: the config's).
            strength: img2img strength; only the first ``strength`` fraction of the grid is used.

        Raises:
            ConfigError: not exactly one of ``num_inference_steps``/``timesteps``, ``sigmas`` given, or a step
                count the distillation grid cannot provide.
        """
        owner, cfg = type(self).__name__, self.config
        if sigmas is not None or (num_inference_steps is None) == (timesteps is None):
            raise ConfigError(f"{owner}.set_timesteps needs exactly one of num_inference_steps or timesteps")
        original_steps = original_inference_steps or cfg.original_inference_steps
        check_step_count(owner, original_steps, cfg.num_train_timesteps)
        origin = lcm_origin_timesteps(cfg.num_train_timesteps, original_steps, strength)
        if timesteps is not None:
            steps = self._custom_timesteps(timesteps, origin, original_steps, strength)
        else:
            steps = self._picked_timesteps(num_inference_steps, origin, original_steps, strength)
        self.timesteps = torch.from_numpy(steps).to(device=device, dtype=torch.long)
        self._reset_step_index()

    def _custom_timesteps(self, timesteps, origin, original_steps, strength) -> np.ndarray:
        owner, cfg = type(self).__name__, self.config
        if any(timesteps[i] >= timesteps[i - 1] for i in range(1, len(timesteps))):
            raise ConfigError(f"{owner}: custom timesteps must be strictly descending, got {list(timesteps)}")
        if timesteps[0] >= cfg.num_train_timesteps:
            raise ConfigError(f"{owner}: custom timesteps must start below {cfg.num_train_timesteps}")
        off_grid = [t for t in timesteps[1:] if t not in set(origin)]
        if off_grid:
            logger.warning("%s: timesteps %s are not on the distillation grid; results may degrade", owner, off_grid)
        steps = np.array(timesteps, dtype=np.int64)
        self.num_inference_steps = len(steps)
        self.custom_timesteps = True
        init_timestep = min(int(self.num_inference_steps * strength), self.num_inference_steps)
        t_start = max(self.num_inference_steps - init_timestep, 0)
        return steps[t_start * self.order :]

    def _picked_timesteps(self, num_steps: int, origin, original_steps, strength) -> np.ndarray:
        owner, cfg = type(self).__name__, self.config
        check_step_count(owner, num_steps, cfg.num_train_timesteps)
        if len(origin) // num_steps < 1:
            raise ConfigError(
                f"{owner}: original_inference_steps x strength = {original_steps} x {strength} gives fewer "
                f"than num_inference_steps={num_steps} timesteps; lower the steps or raise the strength"
            )
        if num_steps > original_steps:
            raise ConfigError(
                f"{owner}: num_inference_steps={num_steps} is more than original_inference_steps={original_steps}"
            )
        self.num_inference_steps = num_steps
        origin = origin[::-1].copy()
        picked = np.floor(np.linspace(0, len(origin), num=num_steps, endpoint=False)).astype(np.int64)
        return origin[picked]

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """One LCM step: the consistency output at ``timestep``, re-noised to the next timestep.

        Returns:
            :class:`SchedulerOutput` with ``prev_sample`` and ``pred_original_sample`` (= ``denoised``, the
            consistency-model output), or that pair as a tuple.

        Raises:
            ConfigError: ``set_timesteps`` was not called.
        """
        if self.num_inference_steps is None:
            raise ConfigError(f"{type(self).__name__}: call set_timesteps before step")
        if self._step_index is None:
            self._init_step_index(timestep)
        next_index = self._step_index + 1
        prev_timestep = self.timesteps[next_index] if next_index < len(self.timesteps) else timestep
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        c_skip, c_out = lcm_boundary_scalings(timestep, self.config.timestep_scaling)
        x0 = self._predict_x0(model_output, sample, alpha_prod_t)
        denoised = c_out * clip_or_threshold(x0, self.config) + c_skip * sample
        if self._step_index != self.num_inference_steps - 1:
            noise = randn_tensor(
                model_output.shape, generator=generator, device=model_output.device, dtype=denoised.dtype
            )
            prev_sample = alpha_prod_t_prev.sqrt() * denoised + (1 - alpha_prod_t_prev).sqrt() * noise
        else:
            prev_sample = denoised
        self._step_index += 1
        return self._output(prev_sample, denoised, return_dict)

    def _predict_x0(self, model_output, sample, alpha_prod_t):
        prediction_type = self.config.prediction_type
        beta_prod_t = 1 - alpha_prod_t
        if prediction_type == "epsilon":
            return (sample - beta_prod_t.sqrt() * model_output) / alpha_prod_t.sqrt()
        if prediction_type == "v_prediction":
            return alpha_prod_t.sqrt() * sample - beta_prod_t.sqrt() * model_output
        return vp_denoised(prediction_type, model_output, sample, alpha_prod_t, type(self).__name__)[0]
