"""The guidance formulas as pure tensor functions; guider classes only pick which one runs when.

All predictions are ``(B, ...)`` with the batch first; reductions are per sample over the other dims.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def _sample_dims(x: torch.Tensor) -> list[int]:
    return list(range(1, x.ndim))


def guide(base: torch.Tensor, *terms: tuple[float | torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``base + sum(scale * shift)``, the shape of every CFG-like update."""
    out = base
    for scale, shift in terms:
        out = out + scale * shift
    return out


def cfg(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, scale: float, original: bool = False) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + w (cond - uncond)`` (Imagen form) or ``cond + w (cond - uncond)``."""
    return guide(pred_cond if original else pred_uncond, (scale, pred_cond - pred_uncond))


def rescale_noise_cfg(pred: torch.Tensor, pred_cond: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    """Lin et al. 2023, §3.4: give ``pred`` the per-sample std of ``pred_cond``, mixed in by ``guidance_rescale``."""
    dims = _sample_dims(pred_cond)
    ratio = pred_cond.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True)
    return guidance_rescale * (pred * ratio) + (1 - guidance_rescale) * pred


def _wide(x: torch.Tensor) -> torch.Tensor:
    # float64 where the device has it (MPS does not: compute there on the CPU).
    return x.cpu().double() if x.device.type in {"mps", "npu"} else x.double()


def project(
    v: torch.Tensor, onto: torch.Tensor, dims: Sequence[int] | None = None, upcast: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``v`` into its components parallel and orthogonal to ``onto`` (per sample, over ``dims``)."""
    dims = list(dims) if dims is not None else _sample_dims(v)
    a, b = (_wide(v), _wide(onto)) if upcast else (v, onto)
    unit = F.normalize(b, dim=dims)
    parallel = (a * unit).sum(dim=dims, keepdim=True) * unit
    orthogonal = a - parallel
    return parallel.to(v.device, v.dtype), orthogonal.to(v.device, v.dtype)


def apg(
    pred_cond: torch.Tensor,
    pred_uncond: torch.Tensor,
    diff: torch.Tensor,
    scale: float,
    eta: float = 1.0,
    norm_threshold: float = 0.0,
    original: bool = False,
    dims: Sequence[int] | None = None,
) -> torch.Tensor:
    """Adaptive projected guidance (Sadat et al. 2024) of a (momentum-averaged) ``diff = cond - uncond``.

    ``diff`` is clipped to norm ``norm_threshold`` (when > 0), split against ``pred_cond`` into a parallel and
    an orthogonal part, and the update ``orthogonal + eta * parallel`` is added with ``scale``.
    """
    dims = list(dims) if dims is not None else [-i for i in range(1, diff.ndim)]
    if norm_threshold > 0:
        norm = torch.linalg.vector_norm(diff, dim=dims, keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(diff), norm_threshold / norm)
    parallel, orthogonal = project(diff, pred_cond, dims)
    return guide(pred_cond if original else pred_uncond, (scale, orthogonal + eta * parallel))


def zero_star_alpha(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """CFG-Zero* optimal scale ``<cond, uncond> / ||uncond||^2`` per sample, shaped to broadcast."""
    c = pred_cond.flatten(1).float()
    u = pred_uncond.flatten(1).float()
    alpha = (c * u).sum(dim=1) / ((u * u).sum(dim=1) + eps)
    return alpha.to(pred_cond.dtype).view(-1, *([1] * (pred_cond.ndim - 1)))


def tangential_uncond(pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
    """TCFG (Kwon et al. 2025): keep only the component of ``uncond`` along the top singular direction of
    ``[cond; uncond]`` (per sample), dropping the tangential part that pulls away from the data manifold."""
    batch = pred_cond.shape[0]
    stacked = torch.stack([pred_cond, pred_uncond], dim=1).flatten(2).float()
    _, _, vh = torch.linalg.svd(stacked, full_matrices=False)
    top = vh[:, :1]  # (B, 1, D)
    u = pred_uncond.reshape(batch, 1, -1).float()
    kept = (u @ top.transpose(-2, -1)) @ top
    return kept.reshape(pred_uncond.shape).to(pred_cond.dtype)


def magnitude_aware(
    pred_cond: torch.Tensor, pred_uncond: torch.Tensor, scale: float, alpha: float, original: bool = False
) -> torch.Tensor:
    """MAMBO-G: damp the CFG scale by ``exp(-alpha * ||cond - uncond|| / ||uncond||)`` per sample."""
    dims = _sample_dims(pred_cond)
    diff = pred_cond - pred_uncond
    norm = torch.linalg.vector_norm
    ratio = norm(diff, dim=dims, keepdim=True) / norm(pred_uncond, dim=dims, keepdim=True)
    decay = torch.exp(-alpha * ratio)
    effective = scale * decay if original else 1.0 + (scale - 1.0) * decay
    return guide(pred_cond if original else pred_uncond, (effective, diff))
