"""KDPM2DiscreteScheduler and KDPM2AncestralDiscreteScheduler: k-diffusion's DPM2 and DPM2 ancestral samplers
(Karras et al. 2022's second-order sampler with its midpoint in log sigma), A1111's "DPM2" and "DPM2 a", ComfyUI's
``dpm_2`` and ``dpm_2_ancestral``."""

from __future__ import annotations

import numpy as np
import torch

from ..noise import randn_tensor
from .base import KarrasSchedulerMixin, register_scheduler_config
from .euler import init_k_sampler, spaced_sigmas
from .schedules import training_sigmas
from .updates import karras_denoised


def _timesteps_of(sigmas: torch.Tensor, log_sigmas: np.ndarray) -> torch.Tensor:
    """The fractional training timesteps of ``sigmas`` (``schedules.sigma_to_t``) in float32 throughout, as the
    reference computes its DPM2 midpoints' (numpy's logarithm, torch's arithmetic): their timesteps are the
    model's input, so they must be its to the bit."""
    log_sigma = torch.from_numpy(np.log(np.maximum(sigmas.numpy(), np.float32(1e-10))))
    table = torch.from_numpy(log_sigmas)
    low_idx = torch.cumsum(log_sigma - table[:, None] >= 0, dim=0).argmax(dim=0).clip(max=len(table) - 2)
    high_idx = low_idx + 1
    low, high = table[low_idx], table[high_idx]
    weight = ((low - log_sigma) / (low - high)).clip(0, 1)
    return (1 - weight) * low_idx + weight * high_idx


class KDPM2DiscreteScheduler(KarrasSchedulerMixin):
    """DPM2: from each sigma, an Euler step to the geometric mean of it and the next, then the whole step with the
    slope the model gives there; the last step, to zero, is Euler's. ``timesteps`` holds ``2 * steps - 1`` entries
    (each step's sigma, then its midpoint's): the model runs that many times. Config keys as diffusers' class of
    the same name.
    """

    order = 2
    ancestral = False

    @register_scheduler_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "linear",
        trained_betas=None,
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ):
        init_k_sampler(self, ("epsilon", "v_prediction"))
        self.set_timesteps(num_train_timesteps)

    @property
    def state_in_first_order(self) -> bool:
        """Whether the next ``step`` starts a step (else it ends the one begun, from its midpoint)."""
        return self._sample is None

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None) -> None:
        """The schedule of ``num_inference_steps`` sigmas (or of custom ``timesteps``) and their midpoints."""
        if timesteps is not None:
            num_inference_steps = len(timesteps)
        self.num_inference_steps = num_inference_steps
        timesteps, sigmas = spaced_sigmas(self, num_inference_steps, timesteps, round_karras=True)
        levels = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        self._levels = levels  # each step's sigma, then zero
        self._set_midpoints(levels)
        self.sigmas = torch.cat([levels[:1], levels[1:].repeat_interleave(2), levels[-1:]])  # read on the host
        timesteps = torch.from_numpy(np.asarray(timesteps))
        between = _timesteps_of(self._midpoints[:-1], np.log(training_sigmas(self.alphas_cumprod))).to(timesteps.dtype)
        pairs = torch.stack([between, timesteps[1:]], dim=-1).flatten()  # each midpoint, then the next sigma
        self.timesteps = torch.cat([timesteps[:1], pairs]).to(device)
        self._sample = None
        self._reset_step_index()

    def _set_midpoints(self, levels: torch.Tensor) -> None:
        """``_midpoints[k]``: where step ``k`` evaluates the model the second time, the geometric mean of its sigma
        and the next (the last, to zero: zero, an Euler step)."""
        midpoints = levels[1:].log().lerp(levels[:-1].log(), 0.5).exp()
        midpoints[-1] = 0.0
        self._midpoints = midpoints
        self._targets = levels[1:]  # where each step ends

    def _model_sigma(self) -> torch.Tensor:
        pair = self._step_index // 2
        return self._levels[pair] if self.state_in_first_order else self._midpoints[pair]

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        """Divide the sample by ``sqrt(sigma^2 + 1)`` at the sigma the model is evaluated at (the midpoint's on
        the second call of a step)."""
        if self._step_index is None:
            self._init_step_index(timestep)
        self.is_scale_input_called = True
        return sample / ((self._model_sigma() ** 2 + 1) ** 0.5)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True):
        """The Euler half of a step, to its midpoint, or its end with the midpoint's slope (DPM2 ancestral: then
        ``sigma_up`` times fresh noise from ``generator``).

        Returns:
            :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``) or that pair as a tuple.

        Raises:
            ConfigError: an integer loop index was passed instead of a timestep value.
        """
        self._begin_step(timestep)
        pair, first = self._step_index // 2, self.state_in_first_order
        sigma, at = self._levels[pair], self._model_sigma()
        denoised = karras_denoised(self.config.prediction_type, model_output, sample, at)
        derivative = (sample - denoised) / at
        if first:
            prev_sample = sample + derivative * (self._midpoints[pair] - sigma)
            self._sample = sample
        else:
            prev_sample = self._sample + derivative * (self._targets[pair] - sigma)
            self._sample = None
            if self.ancestral:
                noise = randn_tensor(model_output.shape, dtype=model_output.dtype, device=model_output.device,
                                     generator=generator)
                prev_sample = prev_sample + noise * self._ups[pair]
        self._step_index += 1
        return self._output(prev_sample, denoised, return_dict)


class KDPM2AncestralDiscreteScheduler(KDPM2DiscreteScheduler):
    """DPM2 ancestral: each step ends at ``sigma_down`` (its midpoint the geometric mean of its sigma and that),
    then adds ``sigma_up`` times fresh noise, drawn through :func:`~diffblocks.components.noise.randn_tensor` from
    the step's ``generator``. Config keys as diffusers' class of the same name.
    """

    ancestral = True

    def _set_midpoints(self, levels: torch.Tensor) -> None:
        following = torch.cat([levels[1:], levels.new_zeros(1)])
        ups = (following**2 * (levels**2 - following**2) / levels**2) ** 0.5
        downs = (following**2 - ups**2) ** 0.5
        midpoints = levels.log().lerp(downs.log(), 0.5).exp()
        midpoints[-2:] = 0.0  # the last step: Euler's, to zero
        self._midpoints, self._targets, self._ups = midpoints[:-1], downs[:-1], ups[:-1]
