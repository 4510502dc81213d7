"""Noise schedules as pure functions: betas, cumulative alphas, sigmas and timestep grids.

Dtypes follow the diffusers reference on purpose (training schedules are float32 torch tensors, inference
grids are built in float64 numpy and cast at the end), so that a schedule computed here and one computed
by diffusers from the same config are bit-for-bit equal.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")


def _alpha_bar_fn(kind: str):
    if kind == "cosine":
        return lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    if kind == "laplace":

        def laplace(t):
            lmb = -0.5 * math.copysign(1, 0.5 - t) * math.log(1 - 2 * math.fabs(0.5 - t) + 1e-6)
            snr = math.exp(lmb)
            return math.sqrt(snr / (1 + snr))

        return laplace
    if kind == "exp":
        return lambda t: math.exp(t * -12.0)
    raise ConfigError.bad_value("betas_for_alpha_bar", "alpha_transform_type", "cosine, laplace or exp", kind)


def betas_for_alpha_bar(num_steps: int, max_beta: float = 0.999, kind: str = "cosine") -> torch.Tensor:
    """Betas that discretise a continuous cumulative-alpha curve ``alpha_bar(t)``, t in [0, 1].

    ``beta_i = min(1 - alpha_bar((i+1)/N) / alpha_bar(i/N), max_beta)``. The cosine curve is the
    "squaredcos_cap_v2" schedule of Nichol & Dhariwal, *Improved Denoising Diffusion Probabilistic Models*
    (2021), eq. 17.

    Args:
        num_steps: number of training timesteps N.
        max_beta: upper clamp that keeps the last steps from being singular.
        kind: ``"cosine"``, ``"laplace"`` or ``"exp"``.

    Returns:
        float32 tensor of N betas.
    """
    alpha_bar = _alpha_bar_fn(kind)
    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float32)


def make_betas(
    num_train_timesteps: int,
    beta_start: float,
    beta_end: float,
    beta_schedule: str,
    trained_betas: Sequence[float] | np.ndarray | None = None,
    allowed: Sequence[str] = BETA_SCHEDULES,
    owner: str = "scheduler",
) -> torch.Tensor:
    """The float32 training betas for a diffusers-style schedule config.

    ``linear`` and ``scaled_linear`` (linear in sqrt(beta), Stable Diffusion's schedule) follow Ho et al.,
    *Denoising Diffusion Probabilistic Models* (2020); ``squaredcos_cap_v2`` is :func:`betas_for_alpha_bar`;
    ``sigmoid`` and ``laplace`` are extra DDPM variants. ``trained_betas`` overrides everything.

    Raises:
        ConfigError: the schedule name is not one of ``allowed``.
    """
    if trained_betas is not None:
        return torch.tensor(trained_betas, dtype=torch.float32)
    if beta_schedule not in allowed:
        raise ConfigError.bad_value(owner, "beta_schedule", f"one of {', '.join(allowed)}", beta_schedule)
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    if beta_schedule == "squaredcos_cap_v2":
        return betas_for_alpha_bar(num_train_timesteps)
    if beta_schedule == "laplace":
        return betas_for_alpha_bar(num_train_timesteps, kind="laplace")
    # sigmoid
    return torch.sigmoid(torch.linspace(-6, 6, num_train_timesteps)) * (beta_end - beta_start) + beta_start


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Rescale betas so that the last timestep has zero signal-to-noise ratio.

    Lin et al., *Common Diffusion Noise Schedules and Sample Steps are Flawed* (2023), Algorithm 1: shift
    and scale sqrt(alpha_bar) so that it ends at exactly 0 while keeping its first value.
    """
    sqrt_bar = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_bar[0].clone(), sqrt_bar[-1].clone()
    sqrt_bar = (sqrt_bar - last) * (first / (first - last))
    alphas_bar = sqrt_bar**2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


def alphas_cumprod_from_betas(betas: torch.Tensor, zero_snr_floor: bool = False) -> torch.Tensor:
    """``alpha_bar_t = prod_{s<=t} (1 - beta_s)``.

    With ``zero_snr_floor`` the last value, exactly 0 after :func:`rescale_zero_terminal_snr`, is set to
    2**-24 so that sigma = sqrt((1 - alpha_bar) / alpha_bar) stays finite (the sigma-based samplers need it).
    """
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    if zero_snr_floor:
        alphas_cumprod[-1] = 2**-24
    return alphas_cumprod


def training_sigmas(alphas_cumprod: torch.Tensor) -> np.ndarray:
    """Karras-style noise levels ``sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)`` (ascending in t).

    Karras et al., *Elucidating the Design Space of Diffusion-Based Generative Models* (2022), eq. 9:
    a VP model at timestep t is a VE model at noise level sigma_t. Computed in float32 like the reference.
    """
    return np.array(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5)


def spaced_timesteps(
    spacing: str,
    num_train_timesteps: int,
    num_inference_steps: int,
    steps_offset: int = 0,
    *,
    integer: bool = True,
    drop_last: bool = False,
    last_timestep: int | None = None,
) -> np.ndarray:
    """Descending inference timesteps picked from ``[0, num_train_timesteps)``, as float64.

    The three spacings of Lin et al. (2023), Table 2: ``linspace`` (evenly spaced including 0 and T-1),
    ``leading`` (multiples of T // n, shifted by ``steps_offset``) and ``trailing`` (counting down from T-1).

    Args:
        integer: round linspace points (DDIM/DDPM/DPM-Solver do, Euler keeps fractional timesteps).
        drop_last: build n+1 points and drop the smallest (the multistep solvers' grids).
        last_timestep: upper end used instead of T (DPM-Solver's ``lambda_min_clipped``).

    Raises:
        ConfigError: unknown spacing.
    """
    top = num_train_timesteps if last_timestep is None else last_timestep
    points = num_inference_steps + 1 if drop_last else num_inference_steps
    if spacing == "linspace":
        steps = np.linspace(0, top - 1, points)
        steps = (steps.round() if integer else steps)[::-1]
        return (steps[:-1] if drop_last else steps).copy()
    if spacing == "leading":
        steps = (np.arange(0, points) * (top // points)).round()[::-1]
        return (steps[:-1] if drop_last else steps) + steps_offset
    if spacing == "trailing":
        return np.arange(top, 0, -num_train_timesteps / num_inference_steps).round() - 1
    raise ConfigError.bad_value("scheduler", "timestep_spacing", "one of linspace, leading, trailing", spacing)


def karras_sigmas(sigma_min: float, sigma_max: float, num_steps: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. (2022), eq. 5: ``(sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``."""
    ramp = np.linspace(0, 1, num_steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def exponential_sigmas(sigma_min: float, sigma_max: float, num_steps: int) -> np.ndarray:
    """Sigmas evenly spaced in log space from ``sigma_max`` down to ``sigma_min``."""
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), num_steps))


def beta_sigmas(
    sigma_min: float, sigma_max: float, num_steps: int, alpha: float = 0.6, beta: float = 0.6
) -> np.ndarray:
    """Lee et al., *Beta Sampling is All You Need* (2024): sigmas at Beta(alpha, beta) quantiles (needs scipy)."""
    try:
        import scipy.stats
    except ImportError as err:  # scipy is optional; only this schedule needs it
        raise ConfigError("use_beta_sigmas=True needs scipy; install it with `pip install scipy`") from err
    quantiles = [scipy.stats.beta.ppf(t, alpha, beta) for t in 1 - np.linspace(0, 1, num_steps)]
    return np.array([sigma_min + q * (sigma_max - sigma_min) for q in quantiles])


def lu_lambdas(lambda_min: float, lambda_max: float, num_steps: int) -> np.ndarray:
    """Lu et al., *DPM-Solver++* (2022): log-SNR values ``lambda`` evenly spaced from max to min."""
    ramp = np.linspace(0, 1, num_steps)
    return lambda_max + ramp * (lambda_min - lambda_max)


def sigma_to_t(sigmas: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timesteps of ``sigmas``, by linear interpolation in log-sigma.

    Args:
        sigmas: noise levels (any shape).
        log_sigmas: log of the ascending training sigmas (one per training timestep).
    """
    sigmas = np.asarray(sigmas)
    log_sigma = np.log(np.maximum(sigmas, 1e-10)).reshape(-1)
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low_idx = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high_idx = low_idx + 1
    low, high = log_sigmas[low_idx], log_sigmas[high_idx]
    w = np.clip((low - log_sigma) / (low - high), 0, 1)
    return ((1 - w) * low_idx + w * high_idx).reshape(sigmas.shape)


def flow_sigmas(num_train_timesteps: int, num_inference_steps: int, shift: float) -> np.ndarray:
    """Rectified-flow noise levels ``1 - alpha`` on an even grid, shifted by ``shift`` and descending.

    Esser et al., *Scaling Rectified Flow Transformers* (2024), eq. 23: ``s * t / (1 + (s - 1) t)``.
    """
    alphas = np.linspace(1, 1 / num_train_timesteps, num_inference_steps + 1)
    sigmas = 1.0 - alphas
    return np.flip(shift * sigmas / (1 + (shift - 1) * sigmas))[:-1].copy()


def shift_flow_sigmas(sigmas: np.ndarray, shift: float) -> np.ndarray:
    """Esser et al. (2024), eq. 23 applied to given sigmas: ``s * t / (1 + (s - 1) t)``."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def time_shift_exponential(mu: float, power: float, t: np.ndarray) -> np.ndarray:
    """Resolution-dependent shift ``e^mu / (e^mu + (1/t - 1)^power)`` (Esser et al. 2024, sec. 5.3.2)."""
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** power)


def stretch_to_terminal(t: np.ndarray, shift_terminal: float) -> np.ndarray:
    """Rescale a flow schedule so that its last value is exactly ``shift_terminal``."""
    one_minus = 1 - t
    return 1 - one_minus / (one_minus[-1] / (1 - shift_terminal))


def sigma_to_alpha_sigma_t(sigma: torch.Tensor, flow: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """VE noise level to the VP pair ``(alpha_t, sigma_t)`` with ``x_t = alpha_t x_0 + sigma_t eps``.

    ``alpha_t = 1 / sqrt(sigma^2 + 1)``, ``sigma_t = sigma * alpha_t`` (Karras et al. 2022, eq. 9); for
    rectified flow ``alpha_t = 1 - sigma``, ``sigma_t = sigma``.
    """
    if flow:
        return 1 - sigma, sigma
    alpha_t = 1 / ((sigma**2 + 1) ** 0.5)
    return alpha_t, sigma * alpha_t
