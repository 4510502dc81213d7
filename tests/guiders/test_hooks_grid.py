"""Smoothed-energy query blur over the true token grid, on NON-square latents.

diffusers' SEG hook lays the queries out on a square grid (sqrt of the token count), so it cannot be the
reference for a 4x6 grid. The reference here is scipy's ``gaussian_filter`` (``mode="mirror"`` is torch's
reflect padding) over the ``(h, w)`` grid the tokens come from (row-major, as diffusers' Transformer2DModel
flattens ``(B, C, H, W)``), with the kernel size the blur documents: ``ceil(6 sigma)`` rounded up to odd, at
most the grid's smaller side rounded up to odd. Tolerance 1e-5 (float32 model), 1e-6 on float64 queries (the kernel is computed in float32, as diffusers does).
"""

import copy
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

import diffblocks.guiders as gd
from diffblocks.guiders import dispatch, hooks

TOL = dict(atol=1e-5, rtol=1e-5)
MID = "mid_block.attentions.0.transformer_blocks"
DOWN = "down_blocks.0.attentions.0.transformer_blocks"


def _radius(sigma: float, h: int, w: int) -> int:
    size = math.ceil(6 * sigma)
    size += 1 - size % 2  # rounded up to odd
    side = min(h, w)
    return min(size, side + 1 - side % 2) // 2


def _reference_blur(tokens: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    """Blur ``(..., N, C)`` tokens channel by channel over their row-major ``(h, w)`` grid."""
    lead = tokens.shape[:-2]
    grid = tokens.reshape(*lead, h, w, tokens.shape[-1])
    r = _radius(sigma, h, w)
    axes_sigma = [0.0] * len(lead) + [sigma, sigma, 0.0]
    out = gaussian_filter(grid, sigma=axes_sigma, mode="mirror", truncate=r / sigma)
    return out.reshape(tokens.shape)


def _query_blur_hook(h, w, sigma):
    def hook(module, args, output):
        blurred = _reference_blur(output.detach().double().numpy(), h, w, sigma)
        return torch.from_numpy(blurred).to(output.dtype)

    return hook


@pytest.fixture(scope="module")
def wide_inputs(make_latent_inputs):
    """Latents of 8x12: token grids of 8x12 in the first down block and 4x6 in the mid block."""
    return make_latent_inputs(8, 12, seed=3)


def _forward(unet, inputs, embeds):
    with torch.no_grad():
        return unet(
            torch.cat([inputs["latents"]] * len(embeds)), inputs["timestep"], encoder_hidden_states=torch.cat(embeds)
        ).sample


@pytest.mark.parametrize("fqn,grid,index,sigma", [
    (MID, (4, 6), 1, 1.0),   # kernel 7 capped at 5 by the 4-row grid
    (DOWN, (8, 12), 0, 0.5),  # kernel 3
    (DOWN, (8, 12), 1, 1.0),  # kernel 7
])
def test_seg_finite_blur_uses_the_latent_grid_on_non_square_latents(unet, wide_inputs, fqn, grid, index, sigma):
    config = gd.SmoothedEnergyGuidanceConfig(index, fqn=fqn)
    guider = gd.SmoothedEnergyGuidance(seg_guidance_config=config, seg_blur_sigma=sigma, guidance_scale=1.0)
    guider.set_state(1, 10, None)
    assert [b.name for b in guider.branches] == ["pred_cond", "pred_cond_seg"]
    slices = guider.batch_slices(1)
    cond = wide_inputs["cond"]
    with guider.perturb(unet, slices):
        out = _forward(unet, wide_inputs, [cond, cond])
    assert torch._C._len_torch_function_stack() == 0 and dispatch.dispatched_modules() == 0

    plain = _forward(unet, wide_inputs, [cond])
    ref = copy.deepcopy(unet)
    ref.get_submodule(f"{fqn}.{index}.attn1.to_q").register_forward_hook(_query_blur_hook(*grid, sigma))
    want = _forward(ref, wide_inputs, [cond])
    torch.testing.assert_close(out[slices["pred_cond"]], plain, **TOL)
    torch.testing.assert_close(out[slices["pred_cond_seg"]], want, **TOL)
    assert (want - plain).abs().max() > 1e-4  # the blur shows in the output


@pytest.mark.parametrize("grid,tokens,sigma", [
    ((4, 6), 24, 1.0),
    ((6, 4), 24, 0.7),
    ((8, 12), 96, 0.5),
    ((8, 12), 96, 1.0),
    ((5, 7), 35, 2.0),
    (None, 16, 0.7),  # no grid seen: a square token count is laid out square
])
def test_blur_queries_is_a_gaussian_filter_over_the_grid(grid, tokens, sigma):
    config = gd.SmoothedEnergyGuidanceConfig(0, blur_sigma=sigma)
    assert not config.is_infinite
    g = torch.Generator().manual_seed(0)
    query = torch.randn(2, 3, tokens, 4, generator=g, dtype=torch.float64)  # (B, heads, N, d)
    got = hooks.blur_queries(query, config, grid)
    assert got.dtype == torch.float64 and got.shape == query.shape
    h, w = grid or (math.isqrt(tokens),) * 2
    want = _reference_blur(query.numpy(), h, w, sigma)  # per (sample, head) over N, per channel d
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6, rtol=1e-6)  # the kernel is float32


def test_blur_queries_refuses_a_grid_it_cannot_know():
    config = gd.SmoothedEnergyGuidanceConfig(0, blur_sigma=1.0)
    query = torch.randn(1, 1, 24, 2)
    for grid in (None, (5, 5), (3, 6)):  # nothing seen, or a grid of another size
        with pytest.raises(gd.base.GuiderError, match="cannot lay 24 attention tokens out on a grid"):
            hooks.blur_queries(query, config, grid)
    infinite = gd.SmoothedEnergyGuidanceConfig(0)
    torch.testing.assert_close(hooks.blur_queries(query, infinite, None), query.mean(dim=2, keepdim=True).expand_as(query))


def test_grid_probe_remembers_the_4d_input_by_position_or_keyword():
    module = torch.nn.Identity()
    x = torch.zeros(2, 8, 4, 6)
    for args, kwargs in [((x,), {}), ((), {"hidden_states": x}), ((torch.zeros(1),), {"hidden_states": x})]:
        probe, state = hooks._GridProbe(), dispatch.CallState()
        probe.before(module, args, kwargs, state)
        assert state.values == {probe: (4, 6)}
    for args, kwargs in [((), {}), ((torch.zeros(2, 24, 8),), {}), ((torch.zeros(1, 2, 3, 4, 5),), {})]:
        probe, state = hooks._GridProbe(), dispatch.CallState()
        probe.before(module, args, kwargs, state)  # no 4-D input: nothing remembered, no error
        assert state.values == {}
