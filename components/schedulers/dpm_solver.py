"""DPMSolverMultistepScheduler: multistep DPM-Solver / DPM-Solver++ (Lu et al. 2022), "DPM++ 2M"."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..noise import randn_tensor
from .base import SigmaSchedulerMixin, register_scheduler_config
from .euler import check_one_sigma_schedule, convert_sigmas
from .multistep import DPM_ALGORITHMS, dpm_solver_first_order, dpm_solver_second_order, dpm_solver_third_order
from .schedules import flow_sigmas, lu_lambdas, sigma_to_alpha_sigma_t, sigma_to_t, spaced_timesteps, training_sigmas
from .updates import maybe_threshold, threshold_sample


class DPMSolverMultistepScheduler(SigmaSchedulerMixin):
    """Multistep DPM-Solver of order 1-3 in the data (``dpmsolver++``) or noise (``dpmsolver``) form.

    Each step converts the model output to x0 (or epsilon), keeps the last ``solver_order`` of them and
    takes one exponential-integrator step in log-SNR time; the ``sde-`` algorithms add noise from
    ``generator``. Also Karras / exponential / beta / Lu-lambda / flow sigmas. Config keys as diffusers'.
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
        algorithm_type: str = "dpmsolver++",
        solver_type: str = "midpoint",
        lower_order_final: bool = True,
        euler_at_final: bool = False,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_lu_lambdas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        final_sigmas_type: str = "zero",
        lambda_min_clipped: float = -float("inf"),
        variance_type: str | None = None,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ):
        self._normalise_config()
        self._init_noise_schedule()
        self.alpha_t = torch.sqrt(self.alphas_cumprod)
        self.sigma_t = torch.sqrt(1 - self.alphas_cumprod)
        self.lambda_t = torch.log(self.alpha_t) - torch.log(self.sigma_t)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(
            np.linspace(0, num_train_timesteps - 1, num_train_timesteps, dtype=np.float32)[::-1].copy()
        )
        self._reset_solver_state()

    def _normalise_config(self) -> None:
        """Validate the config; map the aliases diffusers accepts (``deis`` solver, UniPC solver types)."""
        owner, cfg = type(self).__name__, self._config
        check_one_sigma_schedule(owner, cfg)
        if cfg["algorithm_type"] == "deis":
            self.register_to_config(algorithm_type="dpmsolver++")
        if cfg["solver_type"] in ("logrho", "bh1", "bh2"):
            self.register_to_config(solver_type="midpoint")
        self._check_choice("algorithm_type", DPM_ALGORITHMS)
        self._check_choice("solver_type", ("midpoint", "heun"))
        self._check_choice("solver_order", (1, 2, 3))
        self._check_choice("timestep_spacing", ("linspace", "leading", "trailing"))
        self._check_choice("final_sigmas_type", ("zero", "sigma_min"))
        if cfg["algorithm_type"] not in ("dpmsolver++", "sde-dpmsolver++") and cfg["final_sigmas_type"] == "zero":
            raise ConfigError(
                f"{owner}: final_sigmas_type='zero' needs a data-prediction algorithm (dpmsolver++ or "
                f"sde-dpmsolver++); with algorithm_type={cfg['algorithm_type']!r} use final_sigmas_type='sigma_min'"
            )

    def _reset_solver_state(self) -> None:
        self.model_outputs: list[torch.Tensor | None] = [None] * self.config.solver_order
        self.lower_order_nums = 0
        self._reset_step_index()

    def scale_model_input(self, sample: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """DPM-Solver feeds the sample to the model unscaled."""
        return sample

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, sigmas=None, mu=None) -> None:
        """Build the schedule from a step count or custom integer ``timesteps``.

        Args:
            mu: resolution shift for ``use_dynamic_shifting`` flow schedules (sets ``flow_shift = e^mu``).

        Raises:
            ConfigError: not exactly one of ``num_inference_steps``/``timesteps``, custom ``sigmas``, or custom
                timesteps combined with a Karras/Lu/exponential/beta/flow schedule (which would replace them).
        """
        owner = type(self).__name__
        if mu is not None:
            self.register_to_config(flow_shift=float(np.exp(mu)))
        if sigmas is not None or (num_inference_steps is None) == (timesteps is None):
            raise ConfigError(f"{owner}.set_timesteps needs exactly one of num_inference_steps or timesteps")
        special = [
            k
            for k in ("use_karras_sigmas", "use_lu_lambdas", "use_exponential_sigmas", "use_beta_sigmas",
                      "use_flow_sigmas")
            if self.config[k]
        ]
        if timesteps is not None and special:
            raise ConfigError(f"{owner}: custom timesteps cannot be combined with {special[0]}=True")
        if timesteps is not None:
            timesteps = np.array(timesteps).astype(np.int64)
            num_inference_steps = len(timesteps)
        else:
            timesteps = self._spaced(num_inference_steps)
        timesteps, sigmas = self._sigmas_for(timesteps, num_inference_steps)
        self.sigmas = torch.from_numpy(sigmas)
        self.timesteps = torch.from_numpy(timesteps).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(timesteps)
        self._reset_solver_state()
        self.sigmas = self.sigmas.to("cpu")  # stepping reads sigmas on the host

    def _spaced(self, num_steps: int) -> np.ndarray:
        cfg = self.config
        clipped_idx = torch.searchsorted(torch.flip(self.lambda_t, [0]), cfg.lambda_min_clipped)
        last_timestep = (cfg.num_train_timesteps - clipped_idx).numpy().item()
        steps = spaced_timesteps(
            cfg.timestep_spacing,
            cfg.num_train_timesteps,
            num_steps,
            cfg.steps_offset,
            drop_last=True,
            last_timestep=last_timestep,
        )
        return steps.astype(np.int64)

    def _sigmas_for(self, timesteps: np.ndarray, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        train = training_sigmas(self.alphas_cumprod)
        log_sigmas = np.log(train)
        rounded = cfg.beta_schedule != "squaredcos_cap_v2"
        converted = convert_sigmas(cfg, np.flip(train).copy(), num_steps)
        if converted is not None:
            sigmas = converted
            timesteps = sigma_to_t(sigmas, log_sigmas)
            if cfg.use_karras_sigmas and rounded:
                timesteps = timesteps.round()
        elif cfg.use_lu_lambdas:
            lambdas = np.flip(log_sigmas.copy())
            sigmas = np.exp(lu_lambdas(lambdas[-1].item(), lambdas[0].item(), num_steps))
            timesteps = sigma_to_t(sigmas, log_sigmas)
            timesteps = timesteps.round() if rounded else timesteps
        elif cfg.use_flow_sigmas:
            sigmas = flow_sigmas(cfg.num_train_timesteps, num_steps, cfg.flow_shift)
            timesteps = (sigmas * cfg.num_train_timesteps).copy()
        else:
            sigmas = np.interp(timesteps, np.arange(0, len(train)), train)
        if cfg.final_sigmas_type == "sigma_min":
            sigma_last = ((1 - self.alphas_cumprod[0]) / self.alphas_cumprod[0]) ** 0.5
        else:
            sigma_last = 0
        return timesteps, np.concatenate([sigmas, [sigma_last]]).astype(np.float32)

    def _noise_scales(self, sigma):
        return sigma_to_alpha_sigma_t(sigma, flow=self.config.use_flow_sigmas)

    def convert_model_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The model output as x0 (``++`` algorithms) or epsilon (``dpmsolver``), with optional thresholding."""
        cfg = self.config
        if cfg.prediction_type == "epsilon" and cfg.variance_type in ("learned", "learned_range"):
            model_output = model_output[:, :3]
        sigma = self.sigmas[self._step_index]
        alpha_t, sigma_t = self._noise_scales(sigma)
        if cfg.algorithm_type in ("dpmsolver++", "sde-dpmsolver++"):
            x0 = self._to_x0(model_output, sample, sigma, alpha_t, sigma_t)
            return maybe_threshold(x0, cfg)
        if cfg.prediction_type == "epsilon":
            epsilon = model_output
        elif cfg.prediction_type == "sample":
            epsilon = (sample - alpha_t * model_output) / sigma_t
        elif cfg.prediction_type == "v_prediction":
            epsilon = alpha_t * model_output + sigma_t * sample
        else:
            raise ConfigError.bad_value(
                type(self).__name__, "prediction_type", "epsilon, sample or v_prediction", cfg.prediction_type
            )
        if cfg.thresholding:
            x0 = threshold_sample(
                (sample - sigma_t * epsilon) / alpha_t, cfg.dynamic_thresholding_ratio, cfg.sample_max_value
            )
            epsilon = (sample - alpha_t * x0) / sigma_t
        return epsilon

    def _to_x0(self, model_output, sample, sigma, alpha_t, sigma_t):
        prediction_type = self.config.prediction_type
        if prediction_type == "epsilon":
            return (sample - sigma_t * model_output) / alpha_t
        if prediction_type == "sample":
            return model_output
        if prediction_type == "v_prediction":
            return alpha_t * sample - sigma_t * model_output
        if prediction_type == "flow_prediction":
            return sample - sigma * model_output
        raise ConfigError.bad_value(
            type(self).__name__, "prediction_type", "epsilon, sample, v_prediction or flow_prediction", prediction_type
        )

    def _solver_order_now(self) -> int:
        cfg, n, i = self.config, len(self.timesteps), self._step_index
        final = i == n - 1 and (
            cfg.euler_at_final or (cfg.lower_order_final and n < 15) or cfg.final_sigmas_type == "zero"
        )
        second = i == n - 2 and cfg.lower_order_final and n < 15
        if cfg.solver_order == 1 or self.lower_order_nums < 1 or final:
            return 1
        if cfg.solver_order == 2 or self.lower_order_nums < 2 or second:
            return 2
        return 3

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        *,
        variance_noise: torch.Tensor | None = None,
    ):
        """One multistep DPM-Solver step from ``timestep`` to the next timestep.

        Args:
            variance_noise: noise for the ``sde-`` algorithms instead of drawing it from ``generator``.

        Returns:
            :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``) or that pair as a tuple.

        Raises:
            ConfigError: ``set_timesteps`` was not called.
        """
        if self.num_inference_steps is None:
            raise ConfigError(f"{type(self).__name__}: call set_timesteps before step")
        if self._step_index is None:
            self._init_step_index(timestep)
        order = self._solver_order_now()
        converted = self.convert_model_output(model_output, sample=sample)
        self.model_outputs = self.model_outputs[1:] + [converted]
        sample = sample.to(torch.float32)
        noise = self._sde_noise(model_output, generator, variance_noise)
        prev_sample = self._update(order, sample, noise)
        if self.lower_order_nums < self.config.solver_order:
            self.lower_order_nums += 1
        x0 = converted if self.config.algorithm_type.endswith("++") else self._x0_from_epsilon(converted, sample)
        self._step_index += 1
        return self._output(prev_sample.to(model_output.dtype), x0, return_dict)

    def _sde_noise(self, model_output, generator, variance_noise):
        if not self.config.algorithm_type.startswith("sde-"):
            return None
        if variance_noise is not None:
            return variance_noise.to(device=model_output.device, dtype=torch.float32)
        return randn_tensor(model_output.shape, generator=generator, device=model_output.device, dtype=torch.float32)

    def _update(self, order: int, sample: torch.Tensor, noise) -> torch.Tensor:
        cfg, i = self.config, self._step_index
        points = [self._noise_scales(self.sigmas[i + 1 - k]) for k in range(order + 1)]
        alphas, sigmas = [p[0] for p in points], [p[1] for p in points]
        if order == 1:
            return dpm_solver_first_order(
                cfg.algorithm_type, sample, self.model_outputs[-1], alphas[0], sigmas[0], alphas[1], sigmas[1], noise
            )
        if order == 2:
            return dpm_solver_second_order(
                cfg.algorithm_type, cfg.solver_type, sample, self.model_outputs, alphas, sigmas, noise
            )
        return dpm_solver_third_order(cfg.algorithm_type, sample, self.model_outputs, alphas, sigmas, noise)

    def _x0_from_epsilon(self, epsilon: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        alpha_t, sigma_t = self._noise_scales(self.sigmas[self._step_index])
        return (sample - sigma_t * epsilon) / alpha_t
