"""UniPCMultistepScheduler: unified predictor-corrector sampling (Zhao et al., *UniPC*, 2023)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .base import SigmaSchedulerMixin, register_scheduler_config
from .euler import check_one_sigma_schedule, convert_sigmas
from .multistep import unipc_correct, unipc_predict
from .schedules import (
    shift_flow_sigmas,
    sigma_to_alpha_sigma_t,
    sigma_to_t,
    spaced_timesteps,
    stretch_to_terminal,
    time_shift_exponential,
    training_sigmas,
)
from .updates import maybe_threshold


class UniPCMultistepScheduler(SigmaSchedulerMixin):
    """UniPC with the B(h) variants ``bh1``/``bh2`` (default ``bh2``): each step first corrects the current
    sample with the new model output (UniC), then predicts the next one (UniP) from the last
    ``solver_order`` outputs. Deterministic. Config keys as diffusers' class of the same name.
    """

    zero_snr_floor = True
    _missing_timestep_is_last = True

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        predict_x0: bool = True,
        solver_type: str = "bh2",
        lower_order_final: bool = True,
        disable_corrector: list[int] = (),
        solver_p=None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        final_sigmas_type: str = "zero",
        rescale_betas_zero_snr: bool = False,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        shift_terminal: float | None = None,
    ):
        owner = type(self).__name__
        check_one_sigma_schedule(owner, self._config)
        if shift_terminal is not None and not use_flow_sigmas:
            raise ConfigError(f"{owner}: shift_terminal needs use_flow_sigmas=True")
        if solver_type in ("midpoint", "heun", "logrho"):
            self.register_to_config(solver_type="bh2")
        self._check_choice("solver_type", ("bh1", "bh2"))
        self._check_choice("timestep_spacing", ("linspace", "leading", "trailing"))
        self._check_choice("final_sigmas_type", ("zero", "sigma_min"))
        self._init_noise_schedule()
        self.alpha_t = torch.sqrt(self.alphas_cumprod)
        self.sigma_t = torch.sqrt(1 - self.alphas_cumprod)
        self.lambda_t = torch.log(self.alpha_t) - torch.log(self.sigma_t)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.init_noise_sigma = 1.0
        self.predict_x0 = predict_x0
        self.disable_corrector = list(disable_corrector)
        self.solver_p = solver_p
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(
            np.linspace(0, num_train_timesteps - 1, num_train_timesteps, dtype=np.float32)[::-1].copy()
        )
        self._reset_solver_state()

    def _reset_solver_state(self) -> None:
        order = self.config.solver_order
        self.model_outputs: list[torch.Tensor | None] = [None] * order
        self.timestep_list: list = [None] * order
        self.lower_order_nums = 0
        self.last_sample = None
        self.this_order = None
        self._reset_step_index()

    def scale_model_input(self, sample: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """UniPC feeds the sample to the model unscaled."""
        return sample

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, sigmas=None, mu=None) -> None:
        """Build the schedule for ``num_inference_steps`` steps (or custom flow ``sigmas``).

        Args:
            mu: resolution shift, required with ``use_dynamic_shifting``.

        Raises:
            ConfigError: custom ``timesteps``, ``sigmas`` without ``use_flow_sigmas``, or a missing ``mu``.
        """
        owner, cfg = type(self).__name__, self.config
        if timesteps is not None:
            raise ConfigError(f"{owner}.set_timesteps does not take custom timesteps")
        if cfg.use_dynamic_shifting and mu is None:
            raise ConfigError(f"{owner}: pass mu to set_timesteps when use_dynamic_shifting=True")
        if sigmas is not None:
            if not cfg.use_flow_sigmas:
                raise ConfigError(f"{owner}: custom sigmas need use_flow_sigmas=True")
            num_inference_steps = len(sigmas)
        if num_inference_steps is None:
            raise ConfigError(f"{owner}.set_timesteps needs num_inference_steps (or flow sigmas)")
        steps = spaced_timesteps(
            cfg.timestep_spacing, cfg.num_train_timesteps, num_inference_steps, cfg.steps_offset, drop_last=True
        ).astype(np.int64)
        steps, sigmas = self._sigmas_for(steps, num_inference_steps, sigmas, mu)
        self.sigmas = torch.from_numpy(sigmas)
        self.timesteps = torch.from_numpy(steps).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(steps)
        self._reset_solver_state()
        if self.solver_p:
            self.solver_p.set_timesteps(self.num_inference_steps, device=device)
        self.sigmas = self.sigmas.to("cpu")  # stepping reads sigmas on the host

    def _sigmas_for(self, timesteps, num_steps, sigmas, mu) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if cfg.use_flow_sigmas and not (cfg.use_karras_sigmas or cfg.use_exponential_sigmas or cfg.use_beta_sigmas):
            return self._flow_schedule(num_steps, sigmas, mu)
        base = training_sigmas(self.alphas_cumprod) if sigmas is None else np.asarray(sigmas)
        converted = convert_sigmas(cfg, np.flip(base).copy(), num_steps)
        if converted is None:
            sigmas = np.interp(timesteps, np.arange(0, len(base)), base)
            last = ((1 - self.alphas_cumprod[0]) / self.alphas_cumprod[0]) ** 0.5
            return timesteps, self._append_last(sigmas, last)
        sigmas = converted
        if cfg.use_karras_sigmas and cfg.use_flow_sigmas:
            sigmas = sigmas / (sigmas + 1)
            timesteps = (sigmas * cfg.num_train_timesteps).copy()
        else:
            timesteps = sigma_to_t(sigmas, np.log(base))
            timesteps = timesteps.round() if cfg.use_karras_sigmas else timesteps
        return timesteps, self._append_last(sigmas, sigmas[-1])

    def _flow_schedule(self, num_steps, sigmas, mu) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if sigmas is None:
            sigmas = np.linspace(1, 1 / cfg.num_train_timesteps, num_steps + 1)[:-1]
        if cfg.use_dynamic_shifting:
            if cfg.time_shift_type == "exponential":
                sigmas = time_shift_exponential(mu, 1.0, sigmas)
            else:
                sigmas = mu / (mu + (1 / sigmas - 1) ** 1.0)
        else:
            sigmas = shift_flow_sigmas(sigmas, cfg.flow_shift)
        if cfg.shift_terminal:
            sigmas = stretch_to_terminal(sigmas, cfg.shift_terminal)
        if np.fabs(sigmas[0] - 1) < 1e-6:
            sigmas[0] -= 1e-6  # keep alpha_t = 1 - sigma strictly positive
        timesteps = (sigmas * cfg.num_train_timesteps).copy()
        return timesteps, self._append_last(sigmas, sigmas[-1])

    def _append_last(self, sigmas: np.ndarray, sigma_min) -> np.ndarray:
        last = sigma_min if self.config.final_sigmas_type == "sigma_min" else 0
        return np.concatenate([sigmas, [last]]).astype(np.float32)

    def _noise_scales(self, sigma):
        return sigma_to_alpha_sigma_t(sigma, flow=self.config.use_flow_sigmas)

    def convert_model_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The model output as x0 (``predict_x0``, with optional thresholding) or as epsilon."""
        cfg = self.config
        sigma = self.sigmas[self._step_index]
        alpha_t, sigma_t = self._noise_scales(sigma)
        kind = cfg.prediction_type
        if self.predict_x0:
            if kind == "epsilon":
                x0 = (sample - sigma_t * model_output) / alpha_t
            elif kind == "sample":
                x0 = model_output
            elif kind == "v_prediction":
                x0 = alpha_t * sample - sigma_t * model_output
            elif kind == "flow_prediction":
                x0 = sample - sigma * model_output
            else:
                raise ConfigError.bad_value(type(self).__name__, "prediction_type", "a UniPC prediction type", kind)
            return maybe_threshold(x0, cfg)
        if kind == "epsilon":
            return model_output
        if kind == "sample":
            return (sample - alpha_t * model_output) / sigma_t
        if kind == "v_prediction":
            return alpha_t * model_output + sigma_t * sample
        raise ConfigError.bad_value(type(self).__name__, "prediction_type", "epsilon, sample or v_prediction", kind)

    def _points(self, index: int, order: int, device) -> tuple[list, list]:
        """VP ``(alpha, sigma)`` at schedule positions ``index, index-1, ..., index-order``."""
        pairs = [self._noise_scales(self.sigmas[index - k].to(device)) for k in range(order + 1)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """One UniPC step: correct the current sample (UniC), then predict the next one (UniP).

        Returns:
            :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``) or that pair as a tuple.

        Raises:
            ConfigError: ``set_timesteps`` was not called.
        """
        if self.num_inference_steps is None:
            raise ConfigError(f"{type(self).__name__}: call set_timesteps before step")
        if self._step_index is None:
            self._init_step_index(timestep)
        i = self._step_index
        use_corrector = i > 0 and (i - 1) not in self.disable_corrector and self.last_sample is not None
        converted = self.convert_model_output(model_output, sample=sample)
        x0 = converted if self.predict_x0 else self._x0_from_epsilon(converted, sample)
        if use_corrector:
            outputs = self.model_outputs[::-1][: self.this_order]
            alphas, sigmas = self._points(i, self.this_order, sample.device)
            sample = unipc_correct(
                self.last_sample, converted, outputs, alphas, sigmas, self.predict_x0, self.config.solver_type
            )
        self.model_outputs = self.model_outputs[1:] + [converted]
        self.timestep_list = self.timestep_list[1:] + [timestep]
        order = self.config.solver_order
        if self.config.lower_order_final:
            order = min(order, len(self.timesteps) - i)
        self.this_order = min(order, self.lower_order_nums + 1)
        self.last_sample = sample
        prev_sample = self._predict(model_output, sample)
        if self.lower_order_nums < self.config.solver_order:
            self.lower_order_nums += 1
        self._step_index += 1
        return self._output(prev_sample, x0, return_dict)

    def _predict(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        if self.solver_p:
            return self.solver_p.step(model_output, self.timestep_list[-1], sample).prev_sample
        outputs = self.model_outputs[::-1][: self.this_order]
        alphas, sigmas = self._points(self._step_index + 1, self.this_order, sample.device)
        return unipc_predict(sample, outputs, alphas, sigmas, self.predict_x0, self.config.solver_type)

    def _x0_from_epsilon(self, epsilon: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        alpha_t, sigma_t = self._noise_scales(self.sigmas[self._step_index])
        return (sample - sigma_t * epsilon) / alpha_t
