"""Each guider's branches and combine step against diffusers' guider of the same name.

Predictions are random (2, 4, 16, 16) float32 tensors, fresh each step, over 10 steps that cross every
start/stop window in the cases below. Tolerance: 1e-6 absolute and relative.
"""


import pytest
import torch

import diffblocks.guiders as ours
from diffblocks.guiders import fdg as our_fdg

TOL = dict(atol=1e-6, rtol=1e-6)
STEPS = 10
NAMES = ("pred_cond", "pred_uncond", "pred_cond_skip", "pred_cond_seg")

CASES = [
    ("ClassifierFreeGuidance", {}),
    ("ClassifierFreeGuidance", {"guidance_scale": 5.0, "start": 0.2, "stop": 0.7}),
    ("ClassifierFreeGuidance", {"guidance_scale": 5.0, "guidance_rescale": 0.7}),
    ("ClassifierFreeGuidance", {"guidance_scale": 3.0, "use_original_formulation": True, "stop": 0.5}),
    ("ClassifierFreeGuidance", {"guidance_scale": 1.0}),
    ("ClassifierFreeZeroStarGuidance", {"guidance_scale": 4.0, "zero_init_steps": 2, "stop": 0.8}),
    ("ClassifierFreeZeroStarGuidance", {"use_original_formulation": True, "start": 0.3}),
    ("AdaptiveProjectedGuidance", {"guidance_scale": 6.0, "adaptive_projected_guidance_momentum": -0.5, "start": 0.1, "stop": 0.9}),
    ("AdaptiveProjectedGuidance", {"eta": 0.5, "adaptive_projected_guidance_rescale": 0.5, "adaptive_projected_guidance_norm_dim": (-1, -2)}),
    ("AdaptiveProjectedGuidance", {"adaptive_projected_guidance_rescale": 0.0, "guidance_rescale": 0.3, "use_original_formulation": True}),
    ("AdaptiveProjectedMixGuidance", {}),
    ("AdaptiveProjectedMixGuidance", {"stop": 0.8, "adaptive_projected_guidance_start_step": 3, "eta": 0.3}),
    ("AdaptiveProjectedMixGuidance", {"adaptive_projected_guidance_momentum": None, "guidance_rescale": 0.5}),
    ("TangentialClassifierFreeGuidance", {"guidance_scale": 5.0, "stop": 0.6}),
    ("TangentialClassifierFreeGuidance", {"use_original_formulation": True, "guidance_rescale": 0.2}),
    ("FrequencyDecoupledGuidance", {}),
    ("FrequencyDecoupledGuidance", {"guidance_scales": [10.0, 5.0, 2.0], "start": 0.2, "stop": 0.8,
                                    "parallel_weights": [0.5, 1.0, 0.8], "guidance_rescale": 0.4}),
    ("FrequencyDecoupledGuidance", {"guidance_rescale": [0.3, 0.6], "guidance_rescale_space": "freq", "use_original_formulation": True}),
    ("MagnitudeAwareGuidance", {}),
    ("MagnitudeAwareGuidance", {"alpha": 2.0, "use_original_formulation": True, "stop": 0.7}),
    ("PerturbedAttentionGuidance", {"perturbed_guidance_layers": [0]}),
    ("PerturbedAttentionGuidance", {"perturbed_guidance_layers": [0], "perturbed_guidance_start": 0.1,
                                    "perturbed_guidance_stop": 0.6, "stop": 0.8, "guidance_rescale": 0.5}),
    ("PerturbedAttentionGuidance", {"perturbed_guidance_layers": [0], "guidance_scale": 1.0, "perturbed_guidance_stop": 0.7}),
    ("PerturbedAttentionGuidance", {"perturbed_guidance_layers": [0], "use_original_formulation": True, "perturbed_guidance_stop": 0.7}),
    ("SkipLayerGuidance", {"skip_layer_guidance_layers": [0], "skip_layer_guidance_stop": 0.5, "start": 0.2}),
    ("SkipLayerGuidance", {"skip_layer_guidance_layers": [0], "guidance_scale": 1.0, "skip_layer_guidance_stop": 0.6}),
    ("SmoothedEnergyGuidance", {"seg_guidance_layers": [0], "seg_guidance_start": 0.2, "seg_guidance_stop": 0.7, "guidance_scale": 4.0}),
    ("SmoothedEnergyGuidance", {"seg_guidance_layers": [0], "guidance_scale": 1.0, "use_original_formulation": False}),
    ("AutoGuidance", {"auto_guidance_layers": [0], "dropout": 0.1, "stop": 0.5}),
    ("AutoGuidance", {"auto_guidance_layers": [0], "dropout": 0.1, "use_original_formulation": True, "guidance_rescale": 0.3}),
    # scales at or next to a formulation's identity scale (1, or 0 with use_original_formulation)
    ("FrequencyDecoupledGuidance", {"guidance_scales": [1.0, 1.0], "use_original_formulation": True}),
    ("FrequencyDecoupledGuidance", {"guidance_scales": [0.0, 3.0]}),
    ("FrequencyDecoupledGuidance", {"guidance_scales": [0.0, 0.0]}),
    ("FrequencyDecoupledGuidance", {"guidance_scales": [2.0, 2.0], "parallel_weights": [2.0, 0.5]}),
    ("AdaptiveProjectedMixGuidance", {"adaptive_projected_guidance_scale": 1.0, "use_original_formulation": True,
                                      "adaptive_projected_guidance_start_step": 3}),
    ("AdaptiveProjectedMixGuidance", {"adaptive_projected_guidance_scale": 0.0, "adaptive_projected_guidance_start_step": 3}),
    ("AdaptiveProjectedMixGuidance", {"adaptive_projected_guidance_scale": 2.0, "adaptive_projected_guidance_start_step": 3}),
    ("AdaptiveProjectedGuidance", {"adaptive_projected_guidance_norm_dim": -1, "adaptive_projected_guidance_rescale": 0.5}),
    ("PerturbedAttentionGuidance", {"perturbed_guidance_layers": [0], "guidance_scale": 1.0, "use_original_formulation": True}),
    ("PerturbedAttentionGuidance", {"perturbed_guidance_layers": [0], "perturbed_guidance_scale": 1.0}),
]


@pytest.fixture
def diffusers_fdg():
    """diffusers' FDG builds its pyramid with kornia: without kornia there is no reference to compare with
    (substituting our pyramid would compare it with itself), so the FDG comparisons are skipped."""
    pytest.importorskip("kornia")


def _pair(name, kwargs):
    import diffusers.guiders as ref_mod

    return getattr(ours, name)(**kwargs), getattr(ref_mod, name)(**kwargs)


PERTURBED_STARTS = ("perturbed_guidance_start", "skip_layer_guidance_start", "seg_guidance_start")


def _perturbed_from_zero(kwargs) -> bool:
    scales = [v for k, v in kwargs.items() if k in ("perturbed_guidance_scale", "skip_layer_guidance_scale", "seg_guidance_scale")]
    return any(kwargs.get(k) == 0.0 for k in PERTURBED_STARTS) and not any(v == 0 for v in scales)


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_combine_matches_diffusers(name, kwargs, request):
    if name == "FrequencyDecoupledGuidance":
        request.getfixturevalue("diffusers_fdg")
    guider, ref = _pair(name, kwargs)
    g = torch.Generator().manual_seed(0)
    guider.reset()
    # diffusers' MAMBO takes a Frobenius norm over dims 1.. and so only runs on 3-D (packed) predictions.
    shape = (2, 64, 16) if name == "MagnitudeAwareGuidance" else (2, 4, 16, 16)
    for step in range(STEPS):
        t = torch.tensor(999 - 100 * step)
        guider.set_state(step, STEPS, t)
        ref.set_state(step, STEPS, t)
        ref.prepare_inputs({})  # diffusers starts APG momentum here, on step 0
        branches = guider.branches
        if step == 0 and _perturbed_from_zero(dict(guider.config)):
            # our fix: a perturbed window starting at 0 includes step 0 (diffusers skips it)
            assert len(branches) == guider.num_conditions == ref.num_conditions + 1
            continue
        assert len(branches) == guider.num_conditions == ref.num_conditions, f"step {step}"
        assert branches[0].name == "pred_cond"
        preds = {n: torch.randn(*shape, generator=g) for n in NAMES}
        given = {b.name: preds[b.name] for b in branches}
        got = guider.combine(given)
        want = ref.forward(**given)
        perturbed = [b.name for b in branches if b.perturbations]
        if perturbed and "pred_uncond" not in given and not guider.use_original_formulation:
            # our fix: without CFG the base is pred_cond (cond + s (cond - perturbed), the papers' and the
            # classic PAG pipelines' formula); diffusers' modular guiders use perturbed + s (cond - perturbed)
            want = type(want)(pred=want.pred + given["pred_cond"] - given[perturbed[0]])
        torch.testing.assert_close(got.pred, want.pred, **TOL, msg=lambda m: f"step {step}: {m}")
        assert got.pred_cond is given["pred_cond"] and got.pred_uncond is given.get("pred_uncond")


@pytest.mark.usefixtures("diffusers_fdg")
def test_fdg_levels_outside_their_window_keep_cond():
    """diffusers puts a stale level (or raises) there; the reference below is diffusers with those levels'
    scale set to 1 (which gives cond_l up to rounding)."""
    import diffusers.guiders as ref_mod

    kwargs = {"guidance_scales": [10.0, 5.0, 2.0], "start": [0.0, 0.2, 0.1], "stop": [0.8, 1.0, 0.5],
              "parallel_weights": [0.5, 1.0, 0.8], "guidance_rescale": 0.4}
    guider = ours.FrequencyDecoupledGuidance(**kwargs)
    g = torch.Generator().manual_seed(0)
    for step in range(STEPS):
        guider.set_state(step, STEPS, None)
        # a level is guided in steps int(start * n) <= step < int(stop * n) (none of the scales is 1)
        active = [int(a * STEPS) <= step < int(b * STEPS) for a, b in zip(kwargs["start"], kwargs["stop"])]
        assert active == [guider._level_active(level) for level in range(3)]
        scales = [s if a else 1.0 + 1e-8 for s, a in zip(kwargs["guidance_scales"], active)]
        weights = [w if a else 1.0 for w, a in zip(kwargs["parallel_weights"], active)]
        ref = ref_mod.FrequencyDecoupledGuidance(guidance_scales=scales, parallel_weights=weights, guidance_rescale=0.4)
        ref.set_state(step, STEPS, None)
        preds = {n: torch.randn(2, 4, 16, 16, generator=g) for n in NAMES[:2]}
        assert len(guider.branches) == (2 if any(active) else 1)
        if any(active):
            torch.testing.assert_close(guider.combine(preds).pred, ref.forward(**preds).pred, **TOL)


def test_magnitude_aware_takes_4d_predictions():
    guider = ours.MagnitudeAwareGuidance(alpha=2.0)
    cond, uncond = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    flat = guider.combine({"pred_cond": cond.flatten(1)[:, None], "pred_uncond": uncond.flatten(1)[:, None]}).pred
    torch.testing.assert_close(guider.combine({"pred_cond": cond, "pred_uncond": uncond}).pred, flat.reshape(cond.shape))


def test_cfg_branch_windows():
    guider = ours.ClassifierFreeGuidance(guidance_scale=5.0, start=0.2, stop=0.7)
    counts = []
    for step in range(STEPS):
        guider.set_state(step, STEPS, None)
        counts.append(len(guider.branches))
    assert counts == [1, 1, 2, 2, 2, 2, 2, 1, 1, 1]
    guider.set_state(3, STEPS, None)
    assert [(b.name, b.conditional) for b in guider.branches] == [("pred_cond", True), ("pred_uncond", False)]


def test_fractional_windows_truncate_like_diffusers():
    """A window bound that falls between steps is truncated: the first step is ``int(start * n)`` and the
    first step without guidance ``int(stop * n)`` (rounding would move both, here to 2 and 4 for n = 10)."""
    import diffusers.guiders as ref_mod

    kwargs = {"guidance_scale": 5.0, "start": 0.15, "stop": 0.35}
    guider, ref = ours.ClassifierFreeGuidance(**kwargs), ref_mod.ClassifierFreeGuidance(**kwargs)
    pag = ours.PerturbedAttentionGuidance(perturbed_guidance_layers=[0], perturbed_guidance_start=0.15,
                                          perturbed_guidance_stop=0.35)
    counts, ref_counts, perturbed = [], [], []
    for step in range(STEPS):
        for g in (guider, ref, pag):
            g.set_state(step, STEPS, None)
        counts.append(len(guider.branches))
        ref_counts.append(ref.num_conditions)
        perturbed.append("pred_cond_skip" in [b.name for b in pag.branches])
    assert counts == ref_counts == [1, 2, 2] + [1] * 7  # guided on steps 1 and 2 (int(1.5), int(3.5))
    assert perturbed == [False, False, True] + [False] * 7  # PAG's perturbed window also excludes its start


@pytest.mark.parametrize("cls,kwargs,name", [
    (ours.PerturbedAttentionGuidance, {"perturbed_guidance_layers": 0}, "pred_cond_skip"),
    (ours.SkipLayerGuidance, {"skip_layer_guidance_layers": 0}, "pred_cond_skip"),
    (ours.SmoothedEnergyGuidance, {"seg_guidance_layers": 0}, "pred_cond_seg"),
])
def test_perturbed_branch_is_conditional_without_cfg(cls, kwargs, name):
    # diffusers feeds this branch the negative prompt and applies no hooks when CFG is off.
    guider = cls(guidance_scale=1.0, **kwargs)
    guider.set_state(1, STEPS, None)
    branches = guider.branches
    assert [b.name for b in branches] == ["pred_cond", name]
    assert branches[1].conditional and branches[1].perturbations


def test_pag_perturbed_window_is_exclusive_at_start():
    guider = ours.PerturbedAttentionGuidance(perturbed_guidance_layers=[0], perturbed_guidance_start=0.01, perturbed_guidance_stop=0.2)
    names = []
    for step in range(STEPS):
        guider.set_state(step, STEPS, None)
        names.append("pred_cond_skip" in [b.name for b in guider.branches])
    assert names == [False, True] + [False] * 8


def test_combine_leaves_out_absent_branches():
    guider = ours.PerturbedAttentionGuidance(perturbed_guidance_layers=[0])
    guider.set_state(1, STEPS, None)
    cond = torch.randn(1, 4, 8, 8)
    assert guider.combine({"pred_cond": cond}).pred is cond
    out = guider.combine({"pred_cond": cond, "pred_uncond": cond - 1})
    torch.testing.assert_close(out.pred, cond - 1 + 7.5)
    with pytest.raises(ours.base.GuiderError, match="needs 'pred_cond'"):
        guider.combine({"pred_uncond": cond})


def test_zero_star_rescale_on_zeroed_step_is_finite():
    guider = ours.ClassifierFreeZeroStarGuidance(guidance_rescale=0.7)
    guider.set_state(0, STEPS, None)
    cond = torch.randn(2, 4, 8, 8)
    uncond = torch.randn_like(cond)
    out = guider.combine({"pred_cond": cond, "pred_uncond": uncond})
    assert torch.equal(out.pred, torch.zeros_like(cond))
    assert out.pred_cond is cond and out.pred_uncond is uncond  # both branches stay visible to callbacks


def test_disabled_guider_runs_only_the_conditional_branch():
    for guider in (ours.ClassifierFreeGuidance(enabled=False), ours.PerturbedAttentionGuidance(perturbed_guidance_layers=0)):
        guider.enabled = False
        guider.reset()
        guider.set_state(1, STEPS, None)
        assert [b.name for b in guider.branches] == ["pred_cond"]
        cond = torch.randn(1, 4, 8, 8)
        assert guider.combine({"pred_cond": cond, "pred_uncond": cond + 1}).pred is cond
        assert guider.config["enabled"] is False


def test_reset_starts_a_new_call():
    guider = ours.ClassifierFreeGuidance(stop=0.5)
    for step in range(STEPS):
        guider.set_state(step, STEPS, None)
    assert len(guider.branches) == 1
    guider.reset()
    guider.set_state(0, STEPS, None)
    assert len(guider.branches) == 2

    apg = ours.AdaptiveProjectedGuidance(adaptive_projected_guidance_momentum=0.5)
    g = torch.Generator().manual_seed(0)
    preds = [{n: torch.randn(1, 4, 8, 8, generator=g) for n in NAMES[:2]} for _ in range(3)]

    def run():
        apg.reset()
        out = []
        for step, p in enumerate(preds):
            apg.set_state(step, 3, None)
            out.append(apg.combine(p).pred)
        return out

    first, second = run(), run()
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_laplacian_pyramid_inverts_exactly_on_odd_sizes():
    x = torch.randn(2, 4, 13, 10)
    pyramid = our_fdg.laplacian_pyramid(x, 3)
    assert [p.shape[-2:] for p in pyramid] == [(13, 10), (6, 5), (3, 2)]
    torch.testing.assert_close(our_fdg.reconstruct(pyramid), x, atol=1e-5, rtol=0)


def test_fdg_with_equal_scales_is_cfg():
    fdg = ours.FrequencyDecoupledGuidance(guidance_scales=[4.0, 4.0])
    cfg = ours.ClassifierFreeGuidance(guidance_scale=4.0)
    preds = {"pred_cond": torch.randn(1, 4, 16, 16), "pred_uncond": torch.randn(1, 4, 16, 16)}
    torch.testing.assert_close(fdg.combine(preds).pred, cfg.combine(preds).pred, atol=1e-5, rtol=1e-5)


def test_laplacian_pyramid_matches_kornia():
    kornia = pytest.importorskip("kornia")
    x = torch.randn(2, 4, 32, 32)
    want = kornia.geometry.transform.build_laplacian_pyramid(x, 3)
    for got, ref in zip(our_fdg.laplacian_pyramid(x, 3), want):
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


def test_combined_outputs_keep_both_branches():
    cond, uncond = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    pag = ours.PerturbedAttentionGuidance(perturbed_guidance_layers=[0])
    pag.set_state(1, STEPS, None)
    out = pag.combine({"pred_cond": cond, "pred_uncond": uncond, "pred_cond_skip": cond - 1})
    assert out.pred_cond is cond and out.pred_uncond is uncond
    alone = ours.ClassifierFreeGuidance()
    alone.set_state(0, 1, None)  # one step is a valid run
    out = alone.combine({"pred_cond": cond})
    assert out.pred is cond and out.pred_cond is cond and out.pred_uncond is None


def test_layer_skip_config_bounds_and_index_types():
    assert ours.LayerSkipConfig(0, dropout=0.0).dropout == 0.0  # both ends of the probability are allowed
    with pytest.raises(ours.base.ConfigError, match="'indices' expects an int or a list of ints, got '3'"):
        ours.LayerSkipConfig("3")


def test_laplacian_pyramid_of_video_latents_is_the_pyramid_of_each_frame():
    """(B, C, F, H, W) latents: every (H, W) plane on its own, as kornia builds it for (B, C, H, W)."""
    kornia = pytest.importorskip("kornia")
    x = torch.randn(1, 3, 3, 16, 8)  # 9 planes of 16x8
    frames = x.permute(0, 2, 1, 3, 4).reshape(3, 3, 16, 8)
    pyramid = our_fdg.laplacian_pyramid(x, 3)
    assert [tuple(p.shape) for p in pyramid] == [(1, 3, 3, 16, 8), (1, 3, 3, 8, 4), (1, 3, 3, 4, 2)]
    for got, want in zip(pyramid, kornia.geometry.transform.build_laplacian_pyramid(frames, 3)):
        torch.testing.assert_close(got.permute(0, 2, 1, 3, 4).reshape(want.shape), want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(our_fdg.reconstruct(pyramid), x, atol=1e-5, rtol=0)


def test_inactive_guiders_pass_cond_through_and_keep_uncond():
    cond, uncond = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    for guider in (ours.FrequencyDecoupledGuidance(stop=0.5), ours.AdaptiveProjectedMixGuidance(stop=0.5)):
        guider.reset()
        guider.set_state(8, STEPS, None)  # outside the window: a pred_uncond given anyway is not used
        out = guider.combine({"pred_cond": cond, "pred_uncond": uncond})
        assert out.pred is cond and out.pred_cond is cond and out.pred_uncond is uncond, type(guider).__name__
    mix = ours.AdaptiveProjectedMixGuidance()
    mix.reset()
    mix.set_state(1, STEPS, None)
    out = mix.combine({"pred_cond": cond, "pred_uncond": uncond})
    torch.testing.assert_close(out.pred, uncond + 3.5 * (cond - uncond))
    assert out.pred_uncond is uncond


def test_perturbed_combine_uses_only_the_active_terms():
    cond, uncond, skip = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    preds = {"pred_cond": cond, "pred_uncond": uncond, "pred_cond_skip": skip}
    no_cfg = ours.PerturbedAttentionGuidance(perturbed_guidance_layers=[0], guidance_scale=4.0, stop=0.5,
                                             perturbed_guidance_scale=2.0, perturbed_guidance_stop=1.0)
    no_cfg.set_state(8, STEPS, None)  # CFG's window is over, the perturbed one is not
    torch.testing.assert_close(no_cfg.combine(preds).pred, cond + 2.0 * (cond - skip))
    no_skip = ours.PerturbedAttentionGuidance(perturbed_guidance_layers=[0], guidance_scale=4.0, perturbed_guidance_stop=0.5)
    no_skip.set_state(8, STEPS, None)
    torch.testing.assert_close(no_skip.combine(preds).pred, uncond + 4.0 * (cond - uncond))


def test_branches_say_which_conditioning_they_get():
    pag = ours.PerturbedAttentionGuidance(perturbed_guidance_layers=[0])
    auto = ours.AutoGuidance(auto_guidance_layers=[0], dropout=0.1)
    for guider in (pag, auto):
        guider.set_state(1, STEPS, None)
    assert [(b.name, b.conditional) for b in pag.branches] == [("pred_cond", True), ("pred_uncond", False), ("pred_cond_skip", True)]
    assert [(b.name, b.conditional, b.perturbations) for b in auto.branches] == [
        ("pred_cond", True, ()), ("pred_uncond", False, (ours.LayerSkipConfig(0, dropout=0.1),)),
    ]
    assert all(type(b.conditional) is bool for b in pag.branches + auto.branches)


def test_zero_star_scale_matches_diffusers_for_a_near_zero_uncond():
    from diffusers.guiders.classifier_free_zero_star_guidance import cfg_zero_star_scale

    from diffblocks.guiders.functional import zero_star_alpha

    cond = torch.randn(3, 4)
    uncond = torch.tensor([[1e-4, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.5, -1.0, 2.0, 0.1]])  # |u|^2 ~ eps, 0, 5
    got = zero_star_alpha(cond, uncond)
    torch.testing.assert_close(got.flatten(), cfg_zero_star_scale(cond, uncond).flatten(), atol=1e-6, rtol=1e-6)
    assert got.abs().max() < 1e5
