"""BaseGuidance for shared use: per-call copies (for_call), finite scales, and check_model before step 0."""

import math

import pytest
import torch

import diffblocks.guiders as gd
from diffblocks.guiders import dispatch
from diffblocks.modular_pipelines.errors import ConfigError, GuiderError

MID = "mid_block.attentions.0.transformer_blocks"
# The least each guider needs, valid on the tiny UNet of conftest.py (2 blocks in MID).
NEEDS = {
    "PerturbedAttentionGuidance": {"perturbed_guidance_layers": [0, 1]},
    "SkipLayerGuidance": {"skip_layer_guidance_layers": 1},
    "SmoothedEnergyGuidance": {"seg_guidance_config": {"indices": [0], "fqn": MID}, "seg_blur_sigma": 0.5},
    "AutoGuidance": {"auto_guidance_layers": [1], "dropout": 0.1},
    "FrequencyDecoupledGuidance": {"guidance_scales": (8.0, 4.0), "start": [0.0, 0.1]},
    "AdaptiveProjectedGuidance": {"adaptive_projected_guidance_momentum": 0.5},
}


def _guider(name, **kwargs):
    return gd.GUIDERS[name](**{**NEEDS.get(name, {}), **kwargs})


def _preds(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pred_cond": torch.randn(2, 4, 8, 8, generator=g), "pred_uncond": torch.randn(2, 4, 8, 8, generator=g)}


# --- for_call ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(gd.GUIDERS))
def test_for_call_copies_config_and_later_settings_with_fresh_state(name):
    guider = _guider(name)
    guider.enabled = False  # set after construction: the copy keeps it
    guider.set_state(3, 10)
    call = guider.for_call()
    assert type(call) is type(guider) and call is not guider
    assert dict(call.config) == dict(guider.config)
    assert call.enabled is False and call.config["enabled"] is False
    assert call._step is None and guider._step == 3
    call.enabled = True
    call.set_state(0, 10)
    assert guider.enabled is False and guider.config["enabled"] is False and guider._step == 3
    fresh = _guider(name)
    fresh.set_state(0, 10)
    assert call.batch_slices(1) == fresh.batch_slices(1)


@pytest.mark.parametrize("name", ["AdaptiveProjectedGuidance", "AdaptiveProjectedMixGuidance"])
def test_a_call_copy_has_its_own_momentum(name):
    guider = _guider(name, adaptive_projected_guidance_momentum=0.5)
    guider.reset()
    for step in range(7):
        guider.set_state(step, 10)
        guider.combine(_preds(step))
    before = guider.momentum_buffer.average.clone()

    call = guider.for_call()
    assert call.momentum_buffer is not guider.momentum_buffer and call.momentum_buffer.average is None
    fresh = _guider(name, adaptive_projected_guidance_momentum=0.5)
    for step in range(7):  # a copy steps exactly like a new guider, and leaves the original alone
        for g in (call, fresh):
            g.set_state(step, 10)
        assert torch.equal(call.combine(_preds(step)).pred, fresh.combine(_preds(step)).pred)
    assert torch.equal(guider.momentum_buffer.average, before) and guider._step == 6


def test_for_call_shares_models_and_copies_containers(unet):
    guider = gd.FrequencyDecoupledGuidance()
    guider.reference_model = unet
    guider.extras = {"models": [unet], "weights": [1.0]}
    call = guider.for_call()
    assert call.reference_model is unet and call.extras["models"][0] is unet
    assert call.extras is not guider.extras and call.guidance_scales is not guider.guidance_scales
    call.extras["weights"].append(2.0)
    call.guidance_scales[0] = 1.0
    assert guider.extras["weights"] == [1.0] and guider.guidance_scales == [10.0, 5.0]


# --- finite numbers ---------------------------------------------------------------------------------------


def _float_params(cls):
    return [(key, str(p.annotation)) for key, p in cls.init_params().items() if "float" in str(p.annotation)]


NUMBER_CASES = [
    (name, key, bad, annotation)
    for name, cls in sorted(gd.GUIDERS.items())
    for key, annotation in _float_params(cls)
    for bad in (math.nan, math.inf, -math.inf)
]


@pytest.mark.parametrize("name,key,bad,annotation", NUMBER_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in NUMBER_CASES])
def test_every_guider_refuses_nan_and_infinite_numbers(name, key, bad, annotation):
    listed = annotation.startswith("list")  # FDG's guidance_scales: one per level
    value = [1.0, bad] if listed else bad
    with pytest.raises(ConfigError) as err:
        _guider(name, **{key: value})
    expected = "finite numbers" if listed else "a finite number"
    assert str(err.value) == f"{name}: config '{key}' expects {expected}, got {'[1.0, ' + repr(bad) + ']' if listed else repr(bad)}"


def test_a_list_with_one_nan_is_refused():
    with pytest.raises(ConfigError, match=r"FrequencyDecoupledGuidance: config 'parallel_weights' expects finite numbers, got \[1.0, nan\]"):
        gd.FrequencyDecoupledGuidance(parallel_weights=[1.0, math.nan])


@pytest.mark.parametrize("key", ["blur_sigma", "blur_threshold_inf"])
def test_seg_config_refuses_non_finite_blur(key):
    with pytest.raises(ConfigError, match=f"SmoothedEnergyGuidanceConfig: config '{key}' expects a finite"):
        gd.SmoothedEnergyGuidanceConfig([0], **{key: math.nan})


# --- check_model ------------------------------------------------------------------------------------------


def _pag_config(fqn, index=0):
    return gd.LayerSkipConfig(index, fqn=fqn, skip_attention=False, skip_attention_scores=True, skip_ff=False)


BAD_MODELS = {
    "pag index": (
        lambda: gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[99]),
        f"PerturbedAttentionGuidance perturbed_guidance_layers: '{MID}' has 2 blocks (indices 0..1); got indices [99]",
    ),
    "pag not attention": (
        lambda: gd.PerturbedAttentionGuidance(perturbed_guidance_config=_pag_config("down_blocks.0.resnets")),
        "PerturbedAttentionGuidance perturbed_guidance_config: block 'down_blocks.0.resnets.0' (ResnetBlock2D) has no "
        "self-attention module",
    ),
    "slg index": (
        lambda: gd.SkipLayerGuidance(skip_layer_guidance_layers=[1, -3]),
        f"SkipLayerGuidance skip_layer_guidance_layers: '{MID}' has 2 blocks (indices 0..1); got indices [-3]",
    ),
    "slg no feed-forward": (
        lambda: gd.SkipLayerGuidance(skip_layer_config=gd.LayerSkipConfig(0, fqn="down_blocks.0.resnets", skip_attention=False)),
        "SkipLayerGuidance skip_layer_config: block 'down_blocks.0.resnets.0' (ResnetBlock2D) has no feed-forward module",
    ),
    "seg fqn typo": (
        lambda: gd.SmoothedEnergyGuidance(seg_guidance_config={"indices": [0], "fqn": MID[:-1]}),
        f"SmoothedEnergyGuidance seg_guidance_config: '{MID[:-1]}' is not a module list of UNet2DConditionModel "
        f"(did you mean {MID}?)",
    ),
    "seg index": (
        lambda: gd.SmoothedEnergyGuidance(seg_guidance_layers=[2]),
        f"SmoothedEnergyGuidance seg_guidance_layers: '{MID}' has 2 blocks",
    ),
    "autoguidance index": (
        lambda: gd.AutoGuidance(auto_guidance_layers=[0, 7], dropout=0.1),
        f"AutoGuidance auto_guidance_layers: '{MID}' has 2 blocks (indices 0..1); got indices [7]",
    ),
    # a window that never opens, or a disabled guider, still may apply it (later steps, re-enabled)
    "pag outside its window": (
        lambda: gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[5], perturbed_guidance_start=0.5,
                                              perturbed_guidance_stop=0.6, perturbed_guidance_scale=0.0),
        "PerturbedAttentionGuidance perturbed_guidance_layers: ",
    ),
    "disabled slg": (
        lambda: gd.SkipLayerGuidance(skip_layer_guidance_layers=[5], enabled=False),
        "SkipLayerGuidance skip_layer_guidance_layers: ",
    ),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_check_model_names_the_guider_key_and_missing_module(unet, case):
    make, message = BAD_MODELS[case]
    guider = make()
    with pytest.raises(GuiderError) as err:
        guider.check_model(unet)
    assert str(err.value).startswith(message), str(err.value)
    assert isinstance(err.value.__cause__, GuiderError) and str(err.value).endswith(str(err.value.__cause__))
    assert _clean(unet)


def test_check_model_with_auto_fqn_on_a_model_without_block_lists():
    with pytest.raises(GuiderError, match="PerturbedAttentionGuidance perturbed_guidance_layers: fqn='auto' found no block list in Linear"):
        gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[0]).check_model(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", sorted(gd.GUIDERS))
def test_check_model_accepts_a_model_that_has_every_module(unet, name):
    _guider(name).check_model(unet)
    assert _clean(unet)


PERTURBING = {"PerturbedAttentionGuidance", "SkipLayerGuidance", "SmoothedEnergyGuidance", "AutoGuidance"}


@pytest.mark.parametrize("name", sorted(set(gd.GUIDERS) - PERTURBING))
def test_guiders_without_perturbations_accept_any_model(name):
    _guider(name).check_model(torch.nn.Linear(2, 2))


def _clean(model):
    hooks = [m for m in model.modules() if m._forward_hooks or m._forward_pre_hooks]
    return not hooks and dispatch.dispatched_modules() == 0


def test_a_disabled_guider_passes_the_conditional_prediction_through():
    guider = gd.ClassifierFreeGuidance(guidance_scale=5.0)
    guider.enabled = False
    guider.set_state(0, 10, torch.tensor(999))
    cond, uncond = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    out = guider.combine({"pred_cond": cond, "pred_uncond": uncond})
    assert out.pred is cond and out.pred_cond is cond and out.pred_uncond is uncond
    assert [b.name for b in guider.branches] == ["pred_cond"]


@pytest.mark.parametrize("scale, original, branches", [
    (0.0, True, 1), (1.0, True, 2),  # the original formulation's identity scale is 0
    (1.0, False, 1), (0.0, False, 2),
])
def test_cfg_runs_the_unconditional_branch_unless_its_scale_is_the_formulations_identity(scale, original, branches):
    guider = gd.ClassifierFreeGuidance(guidance_scale=scale, use_original_formulation=original)
    guider.set_state(0, 10, torch.tensor(999))
    assert len(guider.branches) == branches


def test_before_any_step_a_guider_is_in_its_window():
    guider = gd.ClassifierFreeGuidance(guidance_scale=5.0, start=0.5)
    assert guider.num_conditions == 2  # no step set yet: in every window
    guider.set_state(0, 10, torch.tensor(999))
    assert guider.num_conditions == 1
    guider.reset()  # a new call: no step set again
    assert guider.num_conditions == 2


def test_a_per_call_copy_shares_the_models_it_reaches_copies_the_rest_and_survives_cycles():
    model = torch.nn.Linear(1, 1)
    cycle = []
    cycle.append(cycle)
    guider = gd.ClassifierFreeGuidance()
    from types import SimpleNamespace

    guider.extra = {"model": model, "nested": [("text", 3, None, torch.ones(1), model)], "cycle": cycle,
                    "holder": SimpleNamespace(only_here=torch.nn.Linear(1, 1)), "opaque": object()}  # no __dict__
    call = guider.for_call()
    assert call.extra["model"] is model and call.extra["nested"][0][4] is model  # shared, wherever it sits
    holder = guider.extra["holder"]
    assert call.extra["holder"].only_here is holder.only_here and call.extra["holder"] is not holder
    assert call.extra is not guider.extra and call.extra["nested"][0][3] is not guider.extra["nested"][0][3]
    assert call.extra["cycle"][0] is call.extra["cycle"] and call.extra["cycle"] is not cycle


def test_a_window_may_be_empty_but_not_reach_past_the_last_step():
    empty = gd.ClassifierFreeGuidance(guidance_scale=5.0, start=0.5, stop=0.5)
    empty.set_state(5, 10)
    assert empty.num_conditions == 1  # an empty window never guides
    with pytest.raises(ConfigError, match="stop"):
        gd.ClassifierFreeGuidance(stop=1.5)


@pytest.mark.parametrize("step, steps", [(-1, 10), (0, 0)])
def test_set_state_refuses_a_negative_step_or_no_steps(step, steps):
    with pytest.raises(GuiderError, match=f"got step={step}, num_inference_steps={steps}"):
        gd.ClassifierFreeGuidance().set_state(step, steps)
