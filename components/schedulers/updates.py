"""Single-step sampler updates as pure tensor functions (Euler, ancestral Euler, DDIM, DDPM, LCM).

Each function takes the quantities of one step and returns the new tensors; it keeps no state. Scheduler
classes look up the schedule values for their step index and call these. The arithmetic is written in the
same order as the diffusers reference so that results agree to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _bad_prediction(owner: str, prediction_type: str, allowed=PREDICTION_TYPES) -> ConfigError:
    return ConfigError.bad_value(owner, "prediction_type", f"one of {', '.join(allowed)}", prediction_type)


def karras_denoised(
    prediction_type: str, model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor, sigma_hat=None
) -> torch.Tensor:
    """The x0 estimate of a VE-parameterised sample ``x = x0 + sigma * eps`` (Karras et al. 2022, eq. 7).

    Args:
        prediction_type: ``epsilon`` (x0 = x - sigma_hat eps), ``v_prediction`` (Salimans & Ho, *Progressive
            Distillation*, 2022: x0 = -sigma/sqrt(sigma^2+1) v + x/(sigma^2+1)) or ``sample``.
        sigma_hat: the (possibly churned) noise level the epsilon estimate is applied at; defaults to sigma.

    Raises:
        ConfigError: unknown prediction type.
    """
    sigma_hat = sigma if sigma_hat is None else sigma_hat
    if prediction_type in ("sample", "original_sample"):
        return model_output
    if prediction_type == "epsilon":
        return sample - sigma_hat * model_output
    if prediction_type == "v_prediction":
        return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))
    raise _bad_prediction("EulerDiscreteScheduler", prediction_type)


def euler_update(sample: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, sigma_next) -> torch.Tensor:
    """One Euler step of the probability-flow ODE ``dx/dsigma = (x - x0) / sigma`` (Karras et al. 2022, Alg. 1)."""
    derivative = (sample - denoised) / sigma
    return sample + derivative * (sigma_next - sigma)


def ancestral_sigmas(sigma_from: torch.Tensor, sigma_to: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a step sigma_from -> sigma_to into a deterministic part and fresh noise (k-diffusion, eta=1).

    ``sigma_up = sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2)``,
    ``sigma_down = sqrt(sigma_to^2 - sigma_up^2)``; the Euler step goes to sigma_down and noise of standard
    deviation sigma_up is added (Song et al., *Score-Based Generative Modeling through SDEs*, 2021).

    Returns:
        ``(sigma_up, sigma_down)``.
    """
    sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_up, sigma_down


def vp_denoised(
    prediction_type: str, model_output: torch.Tensor, sample: torch.Tensor, alpha_prod_t: torch.Tensor, owner: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x0 and epsilon estimates of a VP sample ``x = sqrt(a) x0 + sqrt(1 - a) eps`` with ``a = alpha_bar_t``.

    Ho et al. (2020), eq. 15 for epsilon; Salimans & Ho (2022) for v-prediction.

    Returns:
        ``(pred_original_sample, pred_epsilon)``.

    Raises:
        ConfigError: unknown prediction type.
    """
    beta_prod_t = 1 - alpha_prod_t
    if prediction_type == "epsilon":
        return (sample - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5), model_output
    if prediction_type == "sample":
        return model_output, (sample - alpha_prod_t ** (0.5) * model_output) / beta_prod_t ** (0.5)
    if prediction_type == "v_prediction":
        x0 = (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
        return x0, (alpha_prod_t**0.5) * model_output + (beta_prod_t**0.5) * sample
    raise _bad_prediction(owner, prediction_type)


def threshold_sample(sample: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Dynamic thresholding (Saharia et al., *Imagen*, 2022, sec. 2.3).

    Per sample, s = the ``ratio`` quantile of |x0| clamped to [1, max_value]; x0 is clipped to [-s, s] and
    divided by s.
    """
    dtype = sample.dtype
    batch_size, channels, *rest = sample.shape
    if dtype not in (torch.float32, torch.float64):
        sample = sample.float()  # quantile and clamp need full precision on CPU
    flat = sample.reshape(batch_size, channels * int(np.prod(rest)))
    s = torch.quantile(flat.abs(), ratio, dim=1)
    s = torch.clamp(s, min=1, max=max_value).unsqueeze(1)
    flat = torch.clamp(flat, -s, s) / s
    return flat.reshape(batch_size, channels, *rest).to(dtype)


def maybe_threshold(x0: torch.Tensor, config) -> torch.Tensor:
    """Apply dynamic thresholding when the scheduler config sets ``thresholding``."""
    if config.get("thresholding", False):
        return threshold_sample(x0, config["dynamic_thresholding_ratio"], config["sample_max_value"])
    return x0


def clip_or_threshold(x0: torch.Tensor, config) -> torch.Tensor:
    """Apply ``thresholding`` or else ``clip_sample`` (with ``clip_sample_range``) from a DDIM/DDPM/LCM config."""
    if config.get("thresholding", False):
        return maybe_threshold(x0, config)
    if config.get("clip_sample", False):
        return x0.clamp(-config["clip_sample_range"], config["clip_sample_range"])
    return x0


def ddim_variance(alpha_prod_t: torch.Tensor, alpha_prod_t_prev: torch.Tensor) -> torch.Tensor:
    """sigma_t^2 / eta^2 of Song et al., *Denoising Diffusion Implicit Models* (2021), eq. 16."""
    beta_prod_t = 1 - alpha_prod_t
    beta_prod_t_prev = 1 - alpha_prod_t_prev
    return (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)


def ddim_update(
    pred_original_sample: torch.Tensor,
    pred_epsilon: torch.Tensor,
    alpha_prod_t_prev: torch.Tensor,
    std_dev_t,
) -> torch.Tensor:
    """DDIM (Song et al. 2021), eq. 12 without its noise term.

    ``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma_t^2) eps``; the caller adds ``sigma_t * noise``.
    """
    direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** (0.5) * pred_epsilon
    return alpha_prod_t_prev ** (0.5) * pred_original_sample + direction


def ddpm_posterior_mean(
    pred_original_sample: torch.Tensor,
    sample: torch.Tensor,
    alpha_prod_t: torch.Tensor,
    alpha_prod_t_prev: torch.Tensor,
) -> torch.Tensor:
    """Mean of q(x_{t-1} | x_t, x_0), Ho et al. (2020), eq. 7."""
    beta_prod_t = 1 - alpha_prod_t
    beta_prod_t_prev = 1 - alpha_prod_t_prev
    current_alpha_t = alpha_prod_t / alpha_prod_t_prev
    current_beta_t = 1 - current_alpha_t
    x0_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
    sample_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
    return x0_coeff * pred_original_sample + sample_coeff * sample


def ddpm_variance(
    alpha_prod_t: torch.Tensor,
    alpha_prod_t_prev: torch.Tensor,
    variance_type: str,
    predicted_variance: torch.Tensor | None = None,
) -> torch.Tensor:
    """Posterior variance of DDPM, Ho et al. (2020) eq. 7 (``fixed_small``) or beta_t (``fixed_large``).

    ``learned``/``learned_range`` use the model's own variance output (Nichol & Dhariwal 2021, eq. 15);
    the ``*_log`` variants return the log (``fixed_small_log`` returns the standard deviation).
    """
    current_beta_t = 1 - alpha_prod_t / alpha_prod_t_prev
    variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t
    variance = torch.clamp(variance, min=1e-20)
    if variance_type == "fixed_small":
        return variance
    if variance_type == "fixed_small_log":
        return torch.exp(0.5 * torch.log(variance))
    if variance_type == "fixed_large":
        return current_beta_t
    if variance_type == "fixed_large_log":
        return torch.log(current_beta_t)
    if variance_type == "learned":
        return predicted_variance
    if variance_type == "learned_range":
        frac = (predicted_variance + 1) / 2
        return frac * torch.log(current_beta_t) + (1 - frac) * torch.log(variance)
    raise ConfigError.bad_value("DDPMScheduler", "variance_type", "a DDPM variance type", variance_type)


def ddpm_noise_term(variance: torch.Tensor, variance_type: str, noise: torch.Tensor) -> torch.Tensor:
    """Scale unit noise by the DDPM variance returned by :func:`ddpm_variance`."""
    if variance_type == "fixed_small_log":
        return variance * noise
    if variance_type == "learned_range":
        return torch.exp(0.5 * variance) * noise
    return (variance**0.5) * noise


def lcm_boundary_scalings(timestep, timestep_scaling: float, sigma_data: float = 0.5):
    """Consistency-model boundary condition ``f(x, t) = c_skip x + c_out x0``.

    Song et al., *Consistency Models* (2023), eq. 8 as used by Luo et al., *Latent Consistency Models*
    (2023): ``c_skip = sd^2 / (t'^2 + sd^2)``, ``c_out = t' / sqrt(t'^2 + sd^2)``, ``t' = t * scaling``.

    Returns:
        ``(c_skip, c_out)``.
    """
    scaled = timestep * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip, c_out
