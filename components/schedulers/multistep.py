"""Multistep solver updates as pure tensor functions: DPM-Solver(++) and UniPC.

Both solvers work in log-SNR time ``lambda = log(alpha_t / sigma_t)`` of the VP process
``x_t = alpha_t x_0 + sigma_t eps`` and reuse the model outputs of earlier steps (newest last in every
list argument here). The arithmetic follows the diffusers reference term by term so that results agree
to float32 rounding.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ConfigError

DPM_ALGORITHMS = ("dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver")


def log_snr(alpha_t: torch.Tensor, sigma_t: torch.Tensor) -> torch.Tensor:
    """``lambda = log(alpha_t) - log(sigma_t)`` (half the log signal-to-noise ratio)."""
    return torch.log(alpha_t) - torch.log(sigma_t)


def dpm_solver_first_order(
    algorithm: str, x: torch.Tensor, m0: torch.Tensor, alpha_t, sigma_t, alpha_s, sigma_s, noise=None
) -> torch.Tensor:
    """DPM-Solver-1 (equal to DDIM) from s to t.

    Lu et al., *DPM-Solver* (2022), eq. 3.7 (noise prediction, ``dpmsolver``); Lu et al., *DPM-Solver++*
    (2022), eq. 5 (data prediction, ``dpmsolver++``); the ``sde-`` variants add the exact noise term of the
    SDE solvers in DPM-Solver++ sec. 4.

    Args:
        m0: the converted model output at s (x0 for ``++`` algorithms, epsilon otherwise).
        noise: unit Gaussian noise, needed by the ``sde-`` algorithms.
    """
    h = log_snr(alpha_t, sigma_t) - log_snr(alpha_s, sigma_s)
    if algorithm == "dpmsolver++":
        return (sigma_t / sigma_s) * x - (alpha_t * (torch.exp(-h) - 1.0)) * m0
    if algorithm == "dpmsolver":
        return (alpha_t / alpha_s) * x - (sigma_t * (torch.exp(h) - 1.0)) * m0
    if algorithm == "sde-dpmsolver++":
        return (
            (sigma_t / sigma_s * torch.exp(-h)) * x
            + (alpha_t * (1 - torch.exp(-2.0 * h))) * m0
            + sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h)) * noise
        )
    if algorithm == "sde-dpmsolver":
        return (
            (alpha_t / alpha_s) * x
            - 2.0 * (sigma_t * (torch.exp(h) - 1.0)) * m0
            + sigma_t * torch.sqrt(torch.exp(2 * h) - 1.0) * noise
        )
    raise ConfigError.bad_value("DPMSolverMultistepScheduler", "algorithm_type", ", ".join(DPM_ALGORITHMS), algorithm)


def _second_order_data(algorithm, solver_type, x, d0, d1, alpha_t, sigma_t, sigma_s0, h, noise):
    if algorithm == "dpmsolver++":
        base = (sigma_t / sigma_s0) * x - (alpha_t * (torch.exp(-h) - 1.0)) * d0
        if solver_type == "midpoint":
            return base - 0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * d1
        return base + (alpha_t * ((torch.exp(-h) - 1.0) / h + 1.0)) * d1
    base = (sigma_t / sigma_s0 * torch.exp(-h)) * x + (alpha_t * (1 - torch.exp(-2.0 * h))) * d0
    if solver_type == "midpoint":
        base = base + 0.5 * (alpha_t * (1 - torch.exp(-2.0 * h))) * d1
    else:
        base = base + (alpha_t * ((1.0 - torch.exp(-2.0 * h)) / (-2.0 * h) + 1.0)) * d1
    return base + sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h)) * noise


def _second_order_noise(algorithm, solver_type, x, d0, d1, alpha_t, sigma_t, alpha_s0, h, noise):
    if algorithm == "dpmsolver":
        base = (alpha_t / alpha_s0) * x - (sigma_t * (torch.exp(h) - 1.0)) * d0
        if solver_type == "midpoint":
            return base - 0.5 * (sigma_t * (torch.exp(h) - 1.0)) * d1
        return base - (sigma_t * ((torch.exp(h) - 1.0) / h - 1.0)) * d1
    base = (alpha_t / alpha_s0) * x - 2.0 * (sigma_t * (torch.exp(h) - 1.0)) * d0
    if solver_type == "midpoint":
        base = base - (sigma_t * (torch.exp(h) - 1.0)) * d1
    else:
        base = base - 2.0 * (sigma_t * ((torch.exp(h) - 1.0) / h - 1.0)) * d1
    return base + sigma_t * torch.sqrt(torch.exp(2 * h) - 1.0) * noise


def dpm_solver_second_order(
    algorithm: str,
    solver_type: str,
    x: torch.Tensor,
    outputs: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    sigmas: Sequence[torch.Tensor],
    noise=None,
) -> torch.Tensor:
    """Multistep DPM-Solver-2 (DPM-Solver++ (2022), Algorithm 2, "2M").

    Args:
        outputs: converted model outputs ``[m_{s1}, m_{s0}]`` (newest last).
        alphas, sigmas: VP coefficients at ``[t, s0, s1]``.
        solver_type: ``midpoint`` or ``heun`` form of the first-derivative correction.
    """
    (alpha_t, alpha_s0, alpha_s1), (sigma_t, sigma_s0, sigma_s1) = alphas, sigmas
    lambda_t, lambda_s0, lambda_s1 = log_snr(alpha_t, sigma_t), log_snr(alpha_s0, sigma_s0), log_snr(alpha_s1, sigma_s1)
    m0, m1 = outputs[-1], outputs[-2]
    h, h_0 = lambda_t - lambda_s0, lambda_s0 - lambda_s1
    r0 = h_0 / h
    d0, d1 = m0, (1.0 / r0) * (m0 - m1)
    if algorithm in ("dpmsolver++", "sde-dpmsolver++"):
        return _second_order_data(algorithm, solver_type, x, d0, d1, alpha_t, sigma_t, sigma_s0, h, noise)
    return _second_order_noise(algorithm, solver_type, x, d0, d1, alpha_t, sigma_t, alpha_s0, h, noise)


def _third_order_differences(lambdas, m0, m1, m2):
    h, h_0, h_1 = lambdas[0] - lambdas[1], lambdas[1] - lambdas[2], lambdas[2] - lambdas[3]
    r0, r1 = h_0 / h, h_1 / h
    d1_0, d1_1 = (1.0 / r0) * (m0 - m1), (1.0 / r1) * (m1 - m2)
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (1.0 / (r0 + r1)) * (d1_0 - d1_1)
    return h, d1, d2


def dpm_solver_third_order(
    algorithm: str,
    x: torch.Tensor,
    outputs: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    sigmas: Sequence[torch.Tensor],
    noise=None,
) -> torch.Tensor:
    """Multistep DPM-Solver-3 (DPM-Solver (2022), Algorithm 3 / DPM-Solver++ appendix).

    Args:
        outputs: converted model outputs ``[m_{s2}, m_{s1}, m_{s0}]`` (newest last).
        alphas, sigmas: VP coefficients at ``[t, s0, s1, s2]``.
    """
    (alpha_t, alpha_s0), (sigma_t, sigma_s0), m0 = alphas[:2], sigmas[:2], outputs[-1]
    h, d1, d2 = _third_order_differences([log_snr(a, s) for a, s in zip(alphas, sigmas)], m0, outputs[-2], outputs[-3])
    if algorithm == "dpmsolver++":
        return (
            (sigma_t / sigma_s0) * x
            - (alpha_t * (torch.exp(-h) - 1.0)) * m0
            + (alpha_t * ((torch.exp(-h) - 1.0) / h + 1.0)) * d1
            - (alpha_t * ((torch.exp(-h) - 1.0 + h) / h**2 - 0.5)) * d2
        )
    if algorithm == "dpmsolver":
        return (
            (alpha_t / alpha_s0) * x
            - (sigma_t * (torch.exp(h) - 1.0)) * m0
            - (sigma_t * ((torch.exp(h) - 1.0) / h - 1.0)) * d1
            - (sigma_t * ((torch.exp(h) - 1.0 - h) / h**2 - 0.5)) * d2
        )
    if algorithm != "sde-dpmsolver++":
        expected = "dpmsolver++, dpmsolver or sde-dpmsolver++ for solver_order=3"
        raise ConfigError.bad_value("DPMSolverMultistepScheduler", "algorithm_type", expected, algorithm)
    return (
        (sigma_t / sigma_s0 * torch.exp(-h)) * x
        + (alpha_t * (1.0 - torch.exp(-2.0 * h))) * m0
        + (alpha_t * ((1.0 - torch.exp(-2.0 * h)) / (-2.0 * h) + 1.0)) * d1
        + (alpha_t * ((1.0 - torch.exp(-2.0 * h) - 2.0 * h) / (2.0 * h) ** 2 - 0.5)) * d2
        + sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h)) * noise
    )


def unipc_coefficients(
    h: torch.Tensor, rks: Sequence[torch.Tensor], order: int, predict_x0: bool, solver_type: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The linear system of UniPC (Zhao et al., *UniPC*, 2023, Algorithm 1/2, variants B1 and B2).

    Row i of ``R`` holds ``r_k^(i-1)``; ``b_i = i! phi_{i+1}(hh) / B(h)`` with ``B(h) = hh`` (bh1) or
    ``e^hh - 1`` (bh2), ``hh = -h`` for data prediction.

    Returns:
        ``(R, b, h_phi_1, B_h)``.
    """
    rks = torch.stack(list(rks) + [torch.ones((), device=h.device)])
    hh = -h if predict_x0 else h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    if solver_type not in ("bh1", "bh2"):
        raise ConfigError.bad_value("UniPCMultistepScheduler", "solver_type", "bh1 or bh2", solver_type)
    b_h = hh if solver_type == "bh1" else torch.expm1(hh)
    rows, rhs, factorial_i = [], [], 1
    for i in range(1, order + 1):
        rows.append(torch.pow(rks, i - 1))
        rhs.append(h_phi_k * factorial_i / b_h)
        factorial_i *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial_i
    return torch.stack(rows), torch.stack(rhs), h_phi_1, b_h


def _unipc_base(x, m0, alpha_t, sigma_t, alpha_s0, sigma_s0, h_phi_1, predict_x0):
    if predict_x0:
        return sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m0
    return alpha_t / alpha_s0 * x - sigma_t * h_phi_1 * m0


def _differences(lambda_s0, h, prev_lambdas, m0, prev_outputs):
    rks = [(lam - lambda_s0) / h for lam in prev_lambdas]
    d1s = [(m - m0) / rk for m, rk in zip(prev_outputs, rks)]
    return rks, (torch.stack(d1s, dim=1) if d1s else None)


def unipc_predict(
    x: torch.Tensor,
    outputs: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    sigmas: Sequence[torch.Tensor],
    predict_x0: bool,
    solver_type: str,
) -> torch.Tensor:
    """UniP-p predictor from s0 to t (Zhao et al. 2023, Algorithm 2), of order ``len(outputs)``.

    Args:
        outputs: converted model outputs ``[m_{s0}, m_{s1}, ...]`` (newest first).
        alphas, sigmas: VP coefficients at ``[t, s0, s1, ...]``.
    """
    order = len(outputs)
    lambdas = [log_snr(a, s) for a, s in zip(alphas, sigmas)]
    h = lambdas[0] - lambdas[1]
    rks, d1s = _differences(lambdas[1], h, lambdas[2:], outputs[0], outputs[1:])
    R, b, h_phi_1, b_h = unipc_coefficients(h, rks, order, predict_x0, solver_type)
    x_t = _unipc_base(x, outputs[0], alphas[0], sigmas[0], alphas[1], sigmas[1], h_phi_1, predict_x0)
    if d1s is None:
        # first order: no correction term. Skipping it (rather than adding B(h) * 0) keeps a final step to
        # sigma = 0 finite with bh1, where B(h) = -inf; the reference gives NaN there.
        return x_t.to(x.dtype)
    if order == 2:
        rhos_p = torch.ones(1, dtype=x.dtype, device=x.device) * 0.5
    else:
        rhos_p = torch.linalg.solve(R[:-1, :-1], b[:-1]).to(x.device).to(x.dtype)
    pred_res = torch.einsum("k,bkc...->bc...", rhos_p, d1s)
    scale = alphas[0] if predict_x0 else sigmas[0]
    return (x_t - scale * b_h * pred_res).to(x.dtype)


def unipc_correct(
    x: torch.Tensor,
    model_t: torch.Tensor,
    outputs: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    sigmas: Sequence[torch.Tensor],
    predict_x0: bool,
    solver_type: str,
) -> torch.Tensor:
    """UniC corrector (Zhao et al. 2023, Algorithm 1): refine the sample at t using the new output there.

    Args:
        x: the sample at s0 that the predictor started from.
        model_t: the converted model output at t (evaluated on the predicted sample).
        outputs: converted outputs ``[m_{s0}, m_{s1}, ...]`` (newest first), ``len(outputs)`` = order.
        alphas, sigmas: VP coefficients at ``[t, s0, s1, ...]``.
    """
    order = len(outputs)
    lambdas = [log_snr(a, s) for a, s in zip(alphas, sigmas)]
    h = lambdas[0] - lambdas[1]
    m0 = outputs[0]
    rks, d1s = _differences(lambdas[1], h, lambdas[2:], m0, outputs[1:])
    R, b, h_phi_1, b_h = unipc_coefficients(h, rks, order, predict_x0, solver_type)
    x_t = _unipc_base(x, m0, alphas[0], sigmas[0], alphas[1], sigmas[1], h_phi_1, predict_x0)
    if order == 1:
        rhos_c = torch.ones(1, dtype=x.dtype, device=x.device) * 0.5
    else:
        rhos_c = torch.linalg.solve(R, b).to(x.device).to(x.dtype)
    corr_res = torch.einsum("k,bkc...->bc...", rhos_c[:-1], d1s) if d1s is not None else 0
    scale = alphas[0] if predict_x0 else sigmas[0]
    return (x_t - scale * b_h * (corr_res + rhos_c[-1] * (model_t - m0))).to(x.dtype)
