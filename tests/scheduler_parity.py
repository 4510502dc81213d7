"""Our scheduler next to diffusers' one of the same name: building the pair, a toy ideal denoiser, and stepping
both side by side with a per-step tolerance (the schedulers' parity tests share these)."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from diffblocks.components.schedulers import SCHEDULERS

ATOL = 1e-6  # max abs difference allowed per step (measured: 0.0, the updates are bit-for-bit equal)
# LMS: diffusers integrates each step's coefficients numerically (scipy's quad) over an integrand it evaluates in
# float32; ours are the exact integrals of the same polynomials, so the steps differ by that float32 rounding
ATOL_BY = {"LMSDiscreteScheduler": 2e-5}
STEPS = 30
SHAPE = (2, 4, 8, 8)
SD = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
ZSNR = {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "prediction_type": "v_prediction"}


def make_pair(name, config):
    """Our scheduler and diffusers' one, built from the same config."""
    import diffusers

    return SCHEDULERS[name](**config), getattr(diffusers, name)(**config)


def toy_model(x_in, t, reference, target, step):
    """Ideal model output for clean sample ``target`` at timestep ``t``, plus a little seeded noise."""
    cfg = reference.config
    wobble = 0.05 * torch.randn(x_in.shape, generator=torch.Generator().manual_seed(1000 + step)).to(x_in.device)
    if cfg.get("use_flow_sigmas"):
        sigma = float(t) / cfg.num_train_timesteps
        return (x_in - target) / max(sigma, 1e-3) + wobble
    acp = reference.alphas_cumprod.double().numpy()
    a = float(np.interp(float(t), np.arange(len(acp)), acp))
    eps = (x_in - a**0.5 * target) / (1 - a) ** 0.5
    kind = "sample" if cfg.prediction_type == "original_sample" else cfg.prediction_type
    out = {"epsilon": eps, "sample": target, "v_prediction": a**0.5 * eps - (1 - a) ** 0.5 * target}[kind]
    return (out + wobble).float()


def assert_close(ours, theirs, what, atol=ATOL):
    diff = (ours - theirs).abs().max().item()
    assert diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol}"


def assert_same_schedule(ours, theirs):
    assert ours.timesteps.dtype == theirs.timesteps.dtype
    assert torch.equal(ours.timesteps, theirs.timesteps), (ours.timesteps, theirs.timesteps)
    if hasattr(theirs, "sigmas"):
        assert torch.equal(ours.sigmas, theirs.sigmas)
    assert float(ours.init_noise_sigma) == float(theirs.init_noise_sigma)


def run_parity(ours, theirs, timesteps, sample, step_kw=None, seed=0):
    """Step both schedulers over ``timesteps`` from ``sample``; compare every step."""
    target = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7)).clamp(-1.5, 1.5).to(sample.device)
    x_ours, x_theirs = sample.clone(), sample.clone()
    gen_ours, gen_theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    takes_generator = "generator" in inspect.signature(theirs.step).parameters
    atol = ATOL_BY.get(type(ours).__name__, ATOL)
    for i, t in enumerate(timesteps):
        in_ours, in_theirs = ours.scale_model_input(x_ours, t), theirs.scale_model_input(x_theirs, t)
        assert_close(in_ours, in_theirs, f"scale_model_input at step {i}", atol)  # of the samples so far
        output = toy_model(in_theirs, t, theirs, target, i)
        extra = {"generator": gen_theirs} if takes_generator else {}
        res_theirs = theirs.step(output, t, x_theirs, **(step_kw or {}), **extra)
        res_ours = ours.step(output, t, x_ours, generator=gen_ours, **(step_kw or {}))
        assert torch.isfinite(res_theirs.prev_sample).all(), "the reference itself diverged; pick another config"
        assert_close(res_ours.prev_sample, res_theirs.prev_sample, f"prev_sample at step {i} (t={t})", atol)
        x0_theirs = getattr(res_theirs, "pred_original_sample", getattr(res_theirs, "denoised", None))
        if x0_theirs is not None:
            assert_close(res_ours.pred_original_sample, x0_theirs, f"pred_original_sample at step {i}", atol)
        x_ours, x_theirs = res_ours.prev_sample, res_theirs.prev_sample
    return x_ours
