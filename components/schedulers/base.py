"""Plumbing shared by every scheduler: config handling, step-index tracking and ``add_noise``.

Config semantics follow diffusers so that schedulers can be swapped with
``NewScheduler.from_config(old.config)``: keys the old scheduler only had as defaults are not carried
over (the new class keeps its own defaults), keys the new class does not take are kept in its config for
the next switch, and ``config_name`` is ``scheduler_config.json``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

import torch

from ..errors import ConfigError
from ..config import ConfigMixin, FrozenConfig, register_to_config
from .schedules import alphas_cumprod_from_betas, make_betas, rescale_zero_terminal_snr


SchedulerConfig = FrozenConfig  # what a scheduler's ``config`` is


@dataclass
class SchedulerOutput:
    """What ``step`` returns: the next sample and the current estimate of the clean sample.

    Attributes:
        prev_sample: x at the next (less noisy) timestep; feed it to the next model call.
        pred_original_sample: the x0 estimate of this step (LCM: its consistency-model output).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None

    @property
    def denoised(self) -> torch.Tensor | None:
        """LCM's name for ``pred_original_sample``."""
        return self.pred_original_sample

    def to_tuple(self) -> tuple:
        return (self.prev_sample, self.pred_original_sample)

    def __getitem__(self, index: int):
        return self.to_tuple()[index]


def register_scheduler_config(init):
    """``register_to_config`` that also remembers which init arguments were left at their defaults."""
    registered = register_to_config(init)
    names = [n for n in inspect.signature(init).parameters if n != "self"]
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        explicit = set(signature.bind(self, *args, **kwargs).arguments) - {"self"}
        self._defaulted = frozenset(n for n in names if n not in explicit)
        registered(self, *args, **kwargs)

    wrapper._registers_config = True
    return wrapper


class SchedulerMixin(ConfigMixin):
    """Base class of the schedulers: config, loading/saving and the step-index bookkeeping.

    Subclasses set ``beta_schedules`` (allowed ``beta_schedule`` names) and ``zero_snr_floor`` and call
    :meth:`_init_noise_schedule` from ``__init__``.
    """

    config_name: ClassVar[str] = "scheduler_config.json"
    order: ClassVar[int] = 1
    beta_schedules: ClassVar[tuple[str, ...]] = ("linear", "scaled_linear", "squaredcos_cap_v2")
    zero_snr_floor: ClassVar[bool] = False
    init_noise_sigma: Any = 1.0

    # --- config ------------------------------------------------------------------------------------------

    def register_to_config(self, **values: Any) -> None:
        """Record or change config values after init (they are saved with the config)."""
        self._defaulted = frozenset(getattr(self, "_defaulted", ())) - set(values)
        super().register_to_config(**values)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | ConfigMixin | None = None, **overrides: Any):
        """Build this scheduler from a config mapping or another scheduler's ``config``, like diffusers.

        Keys that were defaults in the source (``_use_default_values``) are skipped so this class keeps its
        own defaults; keys this class does not take are ignored but kept in the new config; ``overrides``
        win over the config.
        """
        if isinstance(config, ConfigMixin):
            config = config.config
        skipped = set(getattr(config, "defaulted", ()))
        config = dict(config or {})
        skipped |= set(config.pop("_use_default_values", ()))
        params = cls.init_params()
        kwargs = {k: v for k, v in config.items() if k in params and k not in skipped}
        kwargs.update({k: v for k, v in overrides.items() if k in params})
        scheduler = cls(**kwargs)
        hidden = {k: v for k, v in config.items() if k not in params and k not in skipped and not k.startswith("_")}
        if hidden:
            super(SchedulerMixin, scheduler).register_to_config(**hidden)
        return scheduler

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike,
        subfolder: str | None = None,
        revision: str | None = None,
        **overrides: Any,
    ):
        """Load ``scheduler_config.json`` from a folder or Hub repo (``subfolder="scheduler"`` for a pipeline)."""
        return cls.from_config(cls.load_config(path_or_repo, subfolder=subfolder, revision=revision), **overrides)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``scheduler_config.json`` into ``save_directory``; returns the file's path."""
        return self.save_config(save_directory)

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def for_call(self) -> "SchedulerMixin":
        """An independent copy for one pipeline call: ``set_timesteps`` and ``step`` on it (timesteps, step
        index, solver history) leave this scheduler, and every other call's copy, as they were."""
        return copy.deepcopy(self)

    # --- training noise schedule ---------------------------------------------------------------------------

    def _init_noise_schedule(self) -> None:
        """Set ``betas``, ``alphas`` and ``alphas_cumprod`` from the config."""
        cfg = self._config
        betas = make_betas(
            cfg["num_train_timesteps"],
            cfg["beta_start"],
            cfg["beta_end"],
            cfg["beta_schedule"],
            cfg["trained_betas"],
            allowed=self.beta_schedules,
            owner=type(self).__name__,
        )
        if cfg.get("rescale_betas_zero_snr", False):
            betas = rescale_zero_terminal_snr(betas)
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = alphas_cumprod_from_betas(
            betas, zero_snr_floor=self.zero_snr_floor and cfg.get("rescale_betas_zero_snr", False)
        )

    def _check_choice(self, key: str, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        if self._config[key] not in allowed:
            expected = f"one of {', '.join(map(str, allowed))}"
            raise ConfigError.bad_value(type(self).__name__, key, expected, self._config[key])

    # --- step index ----------------------------------------------------------------------------------------

    _step_index: int | None = None
    _begin_index: int | None = None

    @property
    def step_index(self) -> int | None:
        """Index of the current timestep in ``timesteps``; advances by one per ``step``."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """Index of the first timestep to run, set by img2img/inpaint pipelines with ``set_begin_index``."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the schedule at ``timesteps[begin_index]`` (call after ``set_timesteps``)."""
        self._begin_index = begin_index

    def _reset_step_index(self) -> None:
        self._step_index = None
        self._begin_index = None

    def index_for_timestep(self, timestep, schedule_timesteps: torch.Tensor | None = None) -> int:
        """Position of ``timestep`` in the schedule; the second match when it occurs twice.

        Raises:
            ConfigError: the timestep is not in the schedule (multistep solvers fall back to the last index).
        """
        schedule = self.timesteps if schedule_timesteps is None else schedule_timesteps
        matches = (schedule == timestep).nonzero()
        if len(matches) == 0:
            if self._missing_timestep_is_last:
                return len(self.timesteps) - 1
            raise ConfigError(
                f"{type(self).__name__}: timestep {float(timestep)} is not in this scheduler's timesteps; "
                f"pass one of scheduler.timesteps, not a loop index"
            )
        return matches[1 if len(matches) > 1 else 0].item()

    _missing_timestep_is_last: ClassVar[bool] = False

    def _reject_loop_index(self, timestep) -> None:
        """Sigma-indexed samplers take a value from ``timesteps``; an int is almost surely a loop index."""
        if isinstance(timestep, (int, torch.IntTensor, torch.LongTensor)):
            raise ConfigError(
                f"{type(self).__name__}.step takes one of scheduler.timesteps, not the loop index {timestep}"
            )

    def _begin_step(self, timestep) -> None:
        """What a sigma-indexed ``step`` does first: refuse a loop index, find the step index on the first step."""
        self._reject_loop_index(timestep)
        if self._step_index is None:
            self._init_step_index(timestep)

    def _init_step_index(self, timestep) -> None:
        if self._begin_index is None:
            if isinstance(timestep, torch.Tensor):
                timestep = timestep.to(self.timesteps.device)
            self._step_index = self.index_for_timestep(timestep)
        else:
            self._step_index = self._begin_index

    def _noise_indices(self, timesteps: torch.Tensor, device) -> list[int]:
        """Schedule positions ``add_noise`` uses: begin/step index when set (img2img, inpaint), else lookup."""
        if self._begin_index is None:
            schedule = self.timesteps.to(device)
            return [self.index_for_timestep(t, schedule) for t in timesteps.to(device)]
        index = self._step_index if self._step_index is not None else self._begin_index
        return [index] * timesteps.shape[0]

    # --- forward process -----------------------------------------------------------------------------------

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward diffusion ``q(x_t | x_0) = sqrt(a_t) x_0 + sqrt(1 - a_t) eps`` (Ho et al. 2020, eq. 4)."""
        self.alphas_cumprod = self.alphas_cumprod.to(device=original_samples.device)
        alphas_cumprod = self.alphas_cumprod.to(dtype=original_samples.dtype)
        timesteps = timesteps.to(original_samples.device)
        sqrt_alpha_prod = _expand_to(alphas_cumprod[timesteps] ** 0.5, original_samples)
        sqrt_one_minus = _expand_to((1 - alphas_cumprod[timesteps]) ** 0.5, original_samples)
        return sqrt_alpha_prod * original_samples + sqrt_one_minus * noise

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The v-prediction target ``sqrt(a_t) eps - sqrt(1 - a_t) x_0`` (Salimans & Ho 2022)."""
        alphas_cumprod = self.alphas_cumprod.to(device=sample.device, dtype=sample.dtype)
        timesteps = timesteps.to(sample.device)
        sqrt_alpha_prod = _expand_to(alphas_cumprod[timesteps] ** 0.5, sample)
        sqrt_one_minus = _expand_to((1 - alphas_cumprod[timesteps]) ** 0.5, sample)
        return sqrt_alpha_prod * noise - sqrt_one_minus * sample

    def _output(self, prev_sample, pred_original_sample, return_dict: bool):
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)


class SigmaSchedulerMixin(SchedulerMixin):
    """Schedulers that keep a ``sigmas`` array (one per timestep plus the final one) and index it by step."""

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        """Divide the sample by ``sqrt(sigma^2 + 1)`` so the model sees unit variance (Euler-type samplers)."""
        if self._step_index is None:
            self._init_step_index(timestep)
        sigma = self.sigmas[self._step_index]
        self.is_scale_input_called = True
        return sample / ((sigma**2 + 1) ** 0.5)

    def _noise_scales(self, sigma: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """``(alpha, sigma)`` multiplying x0 and the noise at VE noise level ``sigma``."""
        return 1.0, sigma

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Noise ``original_samples`` to the level of ``timesteps`` (``x0 + sigma eps`` or VP equivalent).

        Inside a pipeline that called ``set_begin_index`` the level is the begin (or current) step's, as
        diffusers does for img2img and inpainting.
        """
        sigmas = self.sigmas.to(device=original_samples.device, dtype=original_samples.dtype)
        sigma = _expand_to(sigmas[self._noise_indices(timesteps, original_samples.device)], original_samples)
        alpha_t, sigma_t = self._noise_scales(sigma)
        if isinstance(alpha_t, float):  # VE (Euler family): x0 + sigma * eps, in the reference's operand order
            return original_samples + noise * sigma_t
        return alpha_t * original_samples + sigma_t * noise


class KarrasSchedulerMixin(SigmaSchedulerMixin):
    """The k-diffusion samplers (Euler, Euler ancestral, Heun, LMS): their latents start at the largest sigma."""

    @property
    def init_noise_sigma(self):
        """Standard deviation of the initial latents: sigma_max (or sqrt(sigma_max^2 + 1) for leading)."""
        if self.config.timestep_spacing in ("linspace", "trailing"):
            return self.sigmas.max()
        return (self.sigmas.max() ** 2 + 1) ** 0.5


def _expand_to(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    values = values.flatten()
    while values.ndim < like.ndim:
        values = values.unsqueeze(-1)
    return values
