"""FlowMatchEulerDiscreteScheduler: Euler steps of a rectified-flow ODE (FLUX.1, SD3).

The sample is ``x_sigma = (1 - sigma) x0 + sigma eps`` and the model predicts the velocity ``eps - x0``,
so one Euler step is ``x_next = x + (sigma_next - sigma) v`` (Liu et al. 2022, "Flow Straight and Fast";
Esser et al. 2024, "Scaling Rectified Flow Transformers").
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..noise import randn_tensor
from .base import SchedulerMixin, _expand_to, register_scheduler_config
from .euler import check_one_sigma_schedule, convert_sigmas
from .schedules import shift_flow_sigmas, stretch_to_terminal, time_shift_exponential

_OWNER = "FlowMatchEulerDiscreteScheduler"


def time_shift_linear(mu: float, power: float, t: np.ndarray) -> np.ndarray:
    """The linear form of the resolution-dependent shift: ``mu / (mu + (1/t - 1)^power)``."""
    return mu / (mu + (1 / t - 1) ** power)


def flux_mu(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
            base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """FLUX.1's shift ``mu`` for an image of ``image_seq_len`` packed tokens: linear in the token count, from
    ``base_shift`` at ``base_seq_len`` to ``max_shift`` at ``max_seq_len`` (larger images are noised more)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * slope + (base_shift - slope * base_seq_len)


class FlowMatchEulerDiscreteScheduler(SchedulerMixin):
    """Euler sampler for flow-matching models, with a fixed ``shift`` or FLUX's resolution-dependent one.

    With ``use_dynamic_shifting`` the sigmas ``t`` become ``e^mu / (e^mu + (1/t - 1))`` for the ``mu`` given
    to :meth:`set_timesteps` (see :func:`flux_mu`); otherwise ``shift t / (1 + (shift - 1) t)``. Config keys
    as diffusers' class of the same name; timesteps are ``sigma * num_train_timesteps``.
    """

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        invert_sigmas: bool = False,
        shift_terminal: float | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        time_shift_type: str = "exponential",
        stochastic_sampling: bool = False,
    ):
        check_one_sigma_schedule(_OWNER, self._config)
        self._check_choice("time_shift_type", ("exponential", "linear"))
        timesteps = np.linspace(1, num_train_timesteps, num_train_timesteps, dtype=np.float32)[::-1].copy()
        sigmas = torch.from_numpy(timesteps) / num_train_timesteps
        if not use_dynamic_shifting:
            sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        self.timesteps = sigmas * num_train_timesteps
        self.sigmas = sigmas
        self._shift = shift
        self.sigma_min = self.sigmas[-1].item()
        self.sigma_max = self.sigmas[0].item()
        self.num_inference_steps = None
        self._reset_step_index()

    @property
    def shift(self) -> float:
        """The fixed shift (used without dynamic shifting)."""
        return self._shift

    def set_shift(self, shift: float) -> None:
        """Change the fixed shift for later ``set_timesteps`` calls."""
        self._shift = shift

    def time_shift(self, mu: float, power: float, t: np.ndarray) -> np.ndarray:
        """The resolution-dependent shift of the config's ``time_shift_type``."""
        if self.config.time_shift_type == "linear":
            return time_shift_linear(mu, power, t)
        return time_shift_exponential(mu, power, t)

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, sigmas=None,
                      mu: float | None = None, timesteps=None) -> None:
        """Choose the inference schedule.

        Args:
            num_inference_steps: Steps, evenly spaced in sigma from ``sigma_max`` to ``sigma_min`` (unless
                ``sigmas`` / ``timesteps`` are given).
            device: Where the timesteps go.
            sigmas: Custom sigmas (before shifting), one per step.
            mu: The dynamic shift (required with ``use_dynamic_shifting``).
            timesteps: Custom timesteps, one per step (used as given).

        Raises:
            ConfigError: ``mu`` missing with dynamic shifting, or custom lists of different lengths.
        """
        self._check_arguments(num_inference_steps, sigmas, mu, timesteps)
        given_timesteps = None if timesteps is None else np.array(timesteps).astype(np.float32)
        if sigmas is None:
            n = num_inference_steps if given_timesteps is None else len(given_timesteps)
            if given_timesteps is None:
                t_max, t_min = (s * self.config.num_train_timesteps for s in (self.sigma_max, self.sigma_min))
                given = np.linspace(t_max, t_min, n)
            else:
                given = given_timesteps
            sigmas = given / self.config.num_train_timesteps
        else:
            sigmas = np.array(sigmas).astype(np.float32)
        self.num_inference_steps = len(sigmas)
        sigmas = self._shifted(sigmas, mu)
        sigmas = torch.from_numpy(np.asarray(sigmas)).to(dtype=torch.float32, device=device)
        if given_timesteps is not None:
            timesteps = torch.from_numpy(given_timesteps).to(dtype=torch.float32, device=device)
        else:
            timesteps = sigmas * self.config.num_train_timesteps
        end = torch.zeros(1, device=sigmas.device)
        if self.config.invert_sigmas:
            sigmas = 1.0 - sigmas
            timesteps = sigmas * self.config.num_train_timesteps
            end = torch.ones(1, device=sigmas.device)
        self.timesteps = timesteps
        self.sigmas = torch.cat([sigmas, end])
        self._reset_step_index()

    def _check_arguments(self, num_inference_steps, sigmas, mu, timesteps) -> None:
        if self.config.use_dynamic_shifting and mu is None:
            raise ConfigError(f"{_OWNER}.set_timesteps needs mu when use_dynamic_shifting=True "
                              "(FLUX: flux_mu(image tokens), from the image size)")
        lengths = {name: len(v) for name, v in (("sigmas", sigmas), ("timesteps", timesteps)) if v is not None}
        if num_inference_steps is not None:
            lengths["num_inference_steps"] = num_inference_steps
        if not lengths:
            raise ConfigError(f"{_OWNER}.set_timesteps needs num_inference_steps, sigmas or timesteps")
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"{_OWNER}.set_timesteps: lengths differ: "
                              + ", ".join(f"{k}={v}" for k, v in lengths.items()))

    def _shifted(self, sigmas: np.ndarray, mu: float | None) -> np.ndarray:
        cfg = self.config
        if cfg.use_dynamic_shifting:
            sigmas = self.time_shift(mu, 1.0, sigmas)
        else:
            sigmas = shift_flow_sigmas(sigmas, self.shift)
        if cfg.shift_terminal:
            sigmas = stretch_to_terminal(sigmas, cfg.shift_terminal)
        converted = convert_sigmas(cfg, np.asarray(sigmas), len(sigmas))
        return sigmas if converted is None else converted

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """The model sees the sample as it is (flow matching needs no input scaling)."""
        return sample

    def scale_noise(self, sample: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The forward process ``sigma * noise + (1 - sigma) * sample`` at ``timestep`` (image-to-image).

        Inside a pipeline that called ``set_begin_index`` the level is the begin (or current) step's.
        """
        sigmas = self.sigmas.to(device=sample.device, dtype=sample.dtype)
        timestep = timestep.to(sample.device)
        indices = self._noise_indices(timestep.reshape(-1), sample.device)
        sigma = _expand_to(sigmas[indices], sample)
        return sigma * noise + (1.0 - sigma) * sample

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """:meth:`scale_noise` under the name the other schedulers use."""
        return self.scale_noise(original_samples, timesteps, noise)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: torch.Generator | None = None, return_dict: bool = True):
        """One Euler step from ``timestep`` to the next sigma: ``x + (sigma_next - sigma) v``; with
        ``stochastic_sampling``, re-noise the x0 estimate to the next sigma instead.

        Raises:
            ConfigError: an integer loop index was passed instead of a timestep value.
        """
        self._begin_step(timestep)
        sample = sample.to(torch.float32)
        sigma, sigma_next = self.sigmas[self._step_index], self.sigmas[self._step_index + 1]
        x0 = sample - sigma * model_output
        if self.config.stochastic_sampling:
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            prev_sample = (1.0 - sigma_next) * x0 + sigma_next * noise
        else:
            prev_sample = sample + (sigma_next - sigma) * model_output
        self._step_index += 1
        return self._output(prev_sample.to(model_output.dtype), x0, return_dict)

    def __len__(self) -> int:
        return self.config.num_train_timesteps


__all__ = ["FlowMatchEulerDiscreteScheduler", "flux_mu", "time_shift_linear"]
