"""EulerDiscreteScheduler: Euler steps of the probability-flow ODE in sigma (Karras et al. 2022, Alg. 2)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..noise import randn_tensor
from .base import KarrasSchedulerMixin, register_scheduler_config
from .schedules import (
    beta_sigmas,
    exponential_sigmas,
    karras_sigmas,
    sigma_to_t,
    spaced_timesteps,
    training_sigmas,
)
from .updates import euler_update, karras_denoised

SIGMA_SCHEDULES = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


def check_one_sigma_schedule(owner: str, config) -> None:
    """At most one of ``use_karras_sigmas`` / ``use_exponential_sigmas`` / ``use_beta_sigmas``."""
    chosen = [k for k in SIGMA_SCHEDULES if config.get(k)]
    if len(chosen) > 1:
        raise ConfigError(f"{owner}: only one of {', '.join(SIGMA_SCHEDULES)} can be set, got {', '.join(chosen)}")


def init_k_sampler(scheduler, predictions: tuple[str, ...]) -> None:
    """What the k-diffusion samplers' ``__init__`` does first (Heun, LMS, DPM2): check the sigma spacing, timestep
    spacing and ``predictions`` (the prediction types they take), then build the training noise schedule."""
    check_one_sigma_schedule(type(scheduler).__name__, scheduler._config)
    scheduler._check_choice("timestep_spacing", ("linspace", "leading", "trailing"))
    scheduler._check_choice("prediction_type", predictions)
    scheduler._init_noise_schedule()
    scheduler.num_inference_steps = None


def convert_sigmas(config, sigmas: np.ndarray, num_steps: int) -> np.ndarray | None:
    """Karras / exponential / beta sigmas between ``config.sigma_min/max`` (or the ends of ``sigmas``).

    Returns None when the config asks for none of them.
    """
    sigma_min = config.get("sigma_min")
    sigma_max = config.get("sigma_max")
    sigma_min = sigma_min if sigma_min is not None else sigmas[-1].item()
    sigma_max = sigma_max if sigma_max is not None else sigmas[0].item()
    if config.get("use_karras_sigmas"):
        return karras_sigmas(sigma_min, sigma_max, num_steps)
    if config.get("use_exponential_sigmas"):
        return exponential_sigmas(sigma_min, sigma_max, num_steps)
    if config.get("use_beta_sigmas"):
        return beta_sigmas(sigma_min, sigma_max, num_steps)
    return None


def spaced_sigmas(scheduler, num_steps: int, timesteps=None,
                  round_karras: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(timesteps, sigmas)`` of ``num_steps`` steps with ``scheduler``'s spacing (or at custom ``timesteps``),
    its training sigmas interpolated there, or its Karras / exponential / beta sigmas and their timesteps when its
    config asks (the final zero sigma not added; Karras sigmas' timesteps rounded with ``round_karras``, as the DPM2
    samplers have them): the schedule of the k-diffusion samplers (Heun, LMS, DPM2)."""
    cfg = scheduler.config
    if timesteps is None:
        timesteps = spaced_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, num_steps, cfg.steps_offset,
                                     integer=False)
    timesteps = np.asarray(timesteps, dtype=np.float32)
    train = training_sigmas(scheduler.alphas_cumprod)
    sigmas = np.interp(timesteps, np.arange(0, len(train)), train)
    converted = convert_sigmas(cfg, sigmas, num_steps)
    if converted is None:
        return timesteps, sigmas
    timesteps = sigma_to_t(converted, np.log(train))
    return (timesteps.round() if round_karras and cfg.use_karras_sigmas else timesteps), converted


class EulerDiscreteScheduler(KarrasSchedulerMixin):
    """Euler sampler over Karras sigmas, the k-diffusion ``sample_euler`` (with optional churn).

    Model input is scaled by ``1 / sqrt(sigma^2 + 1)``; each step moves x along ``(x - x0) / sigma`` to the
    next sigma. Config keys as diffusers' class of the same name.
    """

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        prediction_type: str = "epsilon",
        interpolation_type: str = "linear",
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        timestep_spacing: str = "linspace",
        timestep_type: str = "discrete",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        final_sigmas_type: str = "zero",
    ):
        check_one_sigma_schedule(type(self).__name__, self._config)
        self._check_choice("timestep_spacing", ("linspace", "leading", "trailing"))
        self._check_choice("interpolation_type", ("linear", "log_linear"))
        self._check_choice("final_sigmas_type", ("zero", "sigma_min"))
        self._init_noise_schedule()
        sigmas = torch.from_numpy(training_sigmas(self.alphas_cumprod)).flip(0)
        self.num_inference_steps = None
        timesteps = torch.from_numpy(np.linspace(0, num_train_timesteps - 1, num_train_timesteps)[::-1].copy())
        self.timesteps = self._continuous_timesteps(sigmas) if self._continuous else timesteps.float()
        self.sigmas = torch.cat([sigmas, torch.zeros(1)])
        self.is_scale_input_called = False
        self._reset_step_index()

    zero_snr_floor = True

    @property
    def _continuous(self) -> bool:
        return self._config["timestep_type"] == "continuous" and self._config["prediction_type"] == "v_prediction"

    @staticmethod
    def _continuous_timesteps(sigmas: torch.Tensor) -> torch.Tensor:
        return torch.Tensor([0.25 * sigma.log() for sigma in sigmas])

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, sigmas=None) -> None:
        """Choose the inference schedule: a step count, or custom ``timesteps``, or custom ``sigmas``.

        Raises:
            ConfigError: not exactly one of the three given, or custom timesteps with a sigma schedule.
        """
        self._check_set_timesteps_args(num_inference_steps, timesteps, sigmas)
        if num_inference_steps is None:
            num_inference_steps = len(timesteps) if timesteps is not None else len(sigmas) - 1
        self.num_inference_steps = num_inference_steps
        if sigmas is not None:
            log_sigmas = np.log(training_sigmas(self.alphas_cumprod))
            sigmas = np.array(sigmas).astype(np.float32)
            timesteps = sigma_to_t(sigmas[:-1], log_sigmas)
        else:
            timesteps, sigmas = self._schedule(num_inference_steps, timesteps)
        sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32, device=device)
        if self._continuous:
            self.timesteps = self._continuous_timesteps(sigmas[:-1]).to(device=device)
        else:
            self.timesteps = torch.from_numpy(timesteps.astype(np.float32)).to(device=device)
        self._reset_step_index()
        self.sigmas = sigmas.to("cpu")  # stepping reads sigmas on the host

    def _check_set_timesteps_args(self, num_inference_steps, timesteps, sigmas) -> None:
        owner = type(self).__name__
        given = [
            n
            for n, v in (("num_inference_steps", num_inference_steps), ("timesteps", timesteps), ("sigmas", sigmas))
            if v is not None
        ]
        if len(given) != 1:
            raise ConfigError(
                f"{owner}.set_timesteps needs exactly one of num_inference_steps, timesteps, sigmas; "
                f"got {', '.join(given) or 'none'}"
            )
        chosen = [k for k in SIGMA_SCHEDULES if self.config.get(k)]
        if timesteps is not None and chosen:
            raise ConfigError(f"{owner}: custom timesteps cannot be combined with {chosen[0]}=True")
        if timesteps is not None and self._continuous:
            raise ConfigError(f"{owner}: custom timesteps cannot be used with continuous v-prediction timesteps")

    def _schedule(self, num_steps: int, timesteps) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if timesteps is not None:
            timesteps = np.array(timesteps).astype(np.float32)
        else:
            timesteps = spaced_timesteps(
                cfg.timestep_spacing, cfg.num_train_timesteps, num_steps, cfg.steps_offset, integer=False
            ).astype(np.float32)
        train = training_sigmas(self.alphas_cumprod)
        log_sigmas = np.log(train)
        if cfg.interpolation_type == "linear":
            sigmas = np.interp(timesteps, np.arange(0, len(train)), train)
        else:
            sigmas = torch.linspace(np.log(train[-1]), np.log(train[0]), num_steps + 1).exp().numpy()
        converted = convert_sigmas(cfg, sigmas, num_steps)
        if converted is not None:
            sigmas = converted
            timesteps = sigma_to_t(sigmas, log_sigmas)
        if cfg.final_sigmas_type == "sigma_min":
            sigma_last = ((1 - self.alphas_cumprod[0]) / self.alphas_cumprod[0]) ** 0.5
        else:
            sigma_last = 0
        return timesteps, np.concatenate([sigmas, [sigma_last]]).astype(np.float32)

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        *,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
    ):
        """One Euler step from ``timestep`` to the next sigma.

        Args:
            s_churn, s_tmin, s_tmax, s_noise: Karras et al. (2022) Alg. 2 stochastic churn; with the
                defaults (no churn) the step is deterministic and draws no noise.

        Returns:
            :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``) or that pair as a tuple.

        Raises:
            ConfigError: an integer loop index was passed instead of a timestep value.
        """
        self._begin_step(timestep)
        sample = sample.to(torch.float32)
        sigma = self.sigmas[self._step_index]
        gamma = min(s_churn / (len(self.sigmas) - 1), 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:
            noise = randn_tensor(
                model_output.shape, dtype=model_output.dtype, device=model_output.device, generator=generator
            )
            sample = sample + noise * s_noise * (sigma_hat**2 - sigma**2) ** 0.5
        denoised = karras_denoised(self.config.prediction_type, model_output, sample, sigma, sigma_hat)
        prev_sample = euler_update(sample, denoised, sigma_hat, self.sigmas[self._step_index + 1])
        self._step_index += 1
        return self._output(prev_sample.to(model_output.dtype), denoised, return_dict)
