"""Guider perturbations on a tiny diffusers UNet, applied to one branch's rows of a batched forward.

References: diffusers' classic PAG processors (identity self-attention on the rows they own), diffusers'
layer-skip and smoothed-energy hooks on a separate single-branch forward. Tolerance 1e-5.
"""

import copy

import pytest
import torch
from diffusers.hooks import LayerSkipConfig as RefLayerSkipConfig
from diffusers.hooks.layer_skip import _apply_layer_skip_hook
from diffusers.hooks.smoothed_energy_guidance_utils import (
    SmoothedEnergyGuidanceConfig as RefSEGConfig,
    _apply_smoothed_energy_guidance_hook,
)
from diffusers.models.attention_processor import PAGCFGIdentitySelfAttnProcessor2_0, PAGIdentitySelfAttnProcessor2_0

import diffblocks.guiders as gd
from diffblocks.modular_pipelines.errors import GuiderError

TOL = dict(atol=1e-5, rtol=1e-5)
MID = "mid_block.attentions.0.transformer_blocks"


def _forward(unet, inputs, embeds):
    batch = len(embeds)
    with torch.no_grad():
        return unet(
            torch.cat([inputs["latents"]] * batch), inputs["timestep"], encoder_hidden_states=torch.cat(embeds)
        ).sample


def _embeds(guider, inputs):
    return [inputs["cond"] if b.conditional else inputs["uncond"] for b in guider.branches]


def _run(guider, unet, inputs):
    """One batched forward of the guider's current branches, as the denoise loop runs it."""
    slices = guider.batch_slices(1)
    with guider.perturb(unet, slices):
        out = _forward(unet, inputs, _embeds(guider, inputs))
    return {name: out[rows] for name, rows in slices.items()}


def _no_hooks_left(model):
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, type(module).__name__
    assert torch._C._len_torch_function_stack() == 0


def _mid_processors(unet, processor):
    ref = copy.deepcopy(unet)
    for block in ref.mid_block.attentions[0].transformer_blocks:
        block.attn1.set_processor(processor)
    return ref


@pytest.fixture
def inputs(unet_inputs):
    return unet_inputs


def test_pag_matches_classic_processor_on_its_rows_only(unet, inputs):
    guider = gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[0, 1])
    guider.reset()
    guider.set_state(1, 10, inputs["timestep"])
    assert [b.name for b in guider.branches] == ["pred_cond", "pred_uncond", "pred_cond_skip"]
    # The classic CFG+PAG pipeline batches [uncond, cond, perturbed] and perturbs the last third.
    slices = {"pred_uncond": slice(0, 1), "pred_cond": slice(1, 2), "pred_cond_skip": slice(2, 3)}
    embeds = [inputs["uncond"], inputs["cond"], inputs["cond"]]
    plain = _forward(unet, inputs, embeds)
    with guider.perturb(unet, slices):
        ours = _forward(unet, inputs, embeds)
    _no_hooks_left(unet)
    reference = _forward(_mid_processors(unet, PAGCFGIdentitySelfAttnProcessor2_0()), inputs, embeds)
    torch.testing.assert_close(ours, reference, **TOL)
    torch.testing.assert_close(ours[:2], plain[:2], atol=0, rtol=0)
    assert (ours[2] - plain[2]).abs().max() > 1e-3
    torch.testing.assert_close(_forward(unet, inputs, embeds), plain, atol=0, rtol=0)


def test_pag_with_cfg_off_still_perturbs_the_conditional_branch(unet, inputs):
    guider = gd.PerturbedAttentionGuidance(guidance_scale=1.0, perturbed_guidance_layers=[0, 1])
    guider.reset()
    guider.set_state(1, 10, None)
    preds = _run(guider, unet, inputs)
    assert list(preds) == ["pred_cond", "pred_cond_skip"]
    reference = _forward(_mid_processors(unet, PAGIdentitySelfAttnProcessor2_0()), inputs, [inputs["cond"]] * 2)
    torch.testing.assert_close(preds["pred_cond"], reference[:1], **TOL)
    torch.testing.assert_close(preds["pred_cond_skip"], reference[1:], **TOL)


def test_pag_config_on_one_block_matches_diffusers_hook(unet, inputs):
    config = gd.LayerSkipConfig(indices=[1], fqn=MID, skip_attention=False, skip_attention_scores=True, skip_ff=False)
    guider = gd.PerturbedAttentionGuidance(guidance_scale=5.0, perturbed_guidance_scale=2.5, perturbed_guidance_config=config)
    guider.set_state(1, 10, None)
    preds = _run(guider, unet, inputs)
    ref = copy.deepcopy(unet)
    _apply_layer_skip_hook(ref, RefLayerSkipConfig([1], fqn=MID, skip_attention=False, skip_attention_scores=True, skip_ff=False))
    torch.testing.assert_close(preds["pred_cond_skip"], _forward(ref, inputs, [inputs["cond"]]), **TOL)


@pytest.mark.parametrize("skip_attention,skip_ff", [(True, True), (True, False), (False, True)])
def test_skip_layer_matches_diffusers_hook(unet, inputs, skip_attention, skip_ff):
    config = gd.LayerSkipConfig(1, fqn=MID, skip_attention=skip_attention, skip_ff=skip_ff)
    guider = gd.SkipLayerGuidance(skip_layer_config=config)
    guider.set_state(1, 10, None)
    preds = _run(guider, unet, inputs)
    plain = _forward(unet, inputs, [inputs["cond"]])
    ref = copy.deepcopy(unet)
    _apply_layer_skip_hook(ref, RefLayerSkipConfig([1], fqn=MID, skip_attention=skip_attention, skip_ff=skip_ff))
    torch.testing.assert_close(preds["pred_cond_skip"], _forward(ref, inputs, [inputs["cond"]]), **TOL)
    torch.testing.assert_close(preds["pred_cond"], plain, **TOL)
    _no_hooks_left(unet)


def test_skip_layer_takes_a_plain_int(unet, inputs):
    guider = gd.SkipLayerGuidance(skip_layer_guidance_layers=1, guidance_scale=1.0)
    guider.set_state(1, 10, None)
    preds = _run(guider, unet, inputs)
    ref = copy.deepcopy(unet)
    _apply_layer_skip_hook(ref, RefLayerSkipConfig([1], fqn=MID))
    torch.testing.assert_close(preds["pred_cond_skip"], _forward(ref, inputs, [inputs["cond"]]), **TOL)
    assert (preds["pred_cond_skip"] - preds["pred_cond"]).abs().max() > 1e-3


def test_dropout_touches_only_its_rows(unet, inputs):
    guider = gd.AutoGuidance(guidance_scale=3.0, auto_guidance_config=gd.LayerSkipConfig(0, fqn=MID, dropout=0.5))
    guider.set_state(0, 10, None)
    assert [(b.name, bool(b.perturbations)) for b in guider.branches] == [("pred_cond", False), ("pred_uncond", True)]
    torch.manual_seed(0)
    preds = _run(guider, unet, inputs)
    plain = _forward(unet, inputs, [inputs["cond"], inputs["uncond"]])
    torch.testing.assert_close(preds["pred_cond"], plain[:1], **TOL)
    assert (preds["pred_uncond"] - plain[1:]).abs().max() > 1e-4


@pytest.mark.parametrize("sigma,threshold,ref_sigma", [
    (9999999.0, 9999.0, 1.0),       # infinite blur: every query the mean (diffusers does that for finite sigmas)
    (9999999.0, 1e8, 9999999.0),    # a finite, very wide Gaussian (diffusers' default path)
])
def test_smoothed_energy_matches_diffusers_query_blur(unet, inputs, sigma, threshold, ref_sigma):
    guider = gd.SmoothedEnergyGuidance(seg_guidance_layers=[0], seg_blur_sigma=sigma, seg_blur_threshold_inf=threshold)
    guider.set_state(1, 10, None)
    preds = _run(guider, unet, inputs)
    plain = _forward(unet, inputs, [inputs["cond"]])
    assert (preds["pred_cond_seg"] - plain).abs().max() > 1e-4
    torch.testing.assert_close(preds["pred_cond"], plain, **TOL)
    ref = copy.deepcopy(unet)
    _apply_smoothed_energy_guidance_hook(ref, RefSEGConfig([0], fqn=MID), ref_sigma)
    torch.testing.assert_close(preds["pred_cond_seg"], _forward(ref, inputs, [inputs["cond"]]), **TOL)


def test_smoothed_energy_finite_blur_changes_the_rows(unet, inputs):
    infinite = gd.SmoothedEnergyGuidance(seg_guidance_layers=[0])
    finite = gd.SmoothedEnergyGuidance(seg_guidance_layers=[0], seg_blur_sigma=0.5)
    outs = []
    for guider in (infinite, finite):
        guider.set_state(1, 10, None)
        outs.append(_run(guider, unet, inputs))
    plain = outs[0]["pred_cond"]
    assert (outs[1]["pred_cond_seg"] - plain).abs().max() > 1e-5
    assert (outs[1]["pred_cond_seg"] - outs[0]["pred_cond_seg"]).abs().max() > 1e-5


def test_hooks_are_removed_when_the_forward_raises(unet, inputs):
    guider = gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[0])
    guider.set_state(1, 10, None)

    def boom(module, args, output):
        raise RuntimeError("boom")

    failing = unet.mid_block.attentions[0].transformer_blocks[0].attn1.to_out[0].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with guider.perturb(unet, guider.batch_slices(1)):
                _forward(unet, inputs, _embeds(guider, inputs))
    finally:
        failing.remove()
    _no_hooks_left(unet)

    with pytest.raises(KeyError):
        with guider.perturb(unet, guider.batch_slices(1)):
            raise KeyError("inside")
    _no_hooks_left(unet)


def test_one_branch_per_forward(unet, inputs):
    guider = gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[0, 1])
    guider.set_state(1, 10, None)
    batched = _run(guider, unet, inputs)
    with guider.perturb(unet, {"pred_cond_skip": slice(0, 1)}):
        alone = _forward(unet, inputs, [inputs["cond"]])
    torch.testing.assert_close(alone, batched["pred_cond_skip"], **TOL)


def test_disabled_guider_applies_nothing(unet, inputs):
    guider = gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[0], enabled=False)
    guider.set_state(1, 10, None)
    assert guider.batch_slices(2) == {"pred_cond": slice(0, 2)}
    with pytest.raises(GuiderError, match="no branch pred_cond_skip"):
        with guider.perturb(unet, {"pred_cond_skip": slice(0, 1)}):
            pass


@pytest.mark.parametrize("config,message", [
    (gd.LayerSkipConfig(0, fqn="mid_block.attentions.0.transformer_block"), "did you mean mid_block.attentions.0.transformer_blocks"),
    (gd.LayerSkipConfig(5, fqn=MID), "has 2 blocks"),
])
def test_bad_block_address_is_a_guider_error(unet, inputs, config, message):
    guider = gd.SkipLayerGuidance(skip_layer_config=config)
    guider.set_state(1, 10, None)
    with pytest.raises(GuiderError, match=message):
        _run(guider, unet, inputs)
    _no_hooks_left(unet)


def test_auto_fqn():
    from diffblocks.guiders.hooks import resolve_fqn

    assert resolve_fqn(_UNetLike(), "auto") == MID
    with pytest.raises(GuiderError, match="found no block list"):
        resolve_fqn(torch.nn.Linear(2, 2), "auto")


def test_auto_fqn_names_the_block_lists_there_are():
    from diffblocks.guiders.hooks import resolve_fqn

    model = torch.nn.Module()
    model.stage = torch.nn.Module()
    model.stage.layers = torch.nn.ModuleList([torch.nn.Identity()])  # a block list: named so, a ModuleList
    model.extra = torch.nn.ModuleList([torch.nn.Identity()])  # a list, not named as blocks
    model.head_blocks = torch.nn.Sequential(torch.nn.Identity())  # named as blocks, not a list
    with pytest.raises(GuiderError) as err:
        resolve_fqn(model, "auto")
    assert str(err.value).endswith("name one with LayerSkipConfig(fqn=...), e.g. one of: stage.layers")


class _UNetLike(torch.nn.Module):
    def __init__(self):
        super().__init__()
        inner = torch.nn.Module()
        inner.transformer_blocks = torch.nn.ModuleList([torch.nn.Identity()])
        self.mid_block = torch.nn.Module()
        self.mid_block.attentions = torch.nn.ModuleList([inner])


def test_attention_without_sdpa_is_an_error_not_a_silent_no_op(unet, inputs):
    from diffusers.models.attention_processor import AttnProcessor

    model = _mid_processors(unet, AttnProcessor())
    guider = gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[0])
    guider.set_state(1, 10, None)
    with pytest.raises(GuiderError, match="did not call F.scaled_dot_product_attention"):
        _run(guider, model, inputs)
    _no_hooks_left(model)


@pytest.mark.parametrize("rows", [slice(1, 1), slice(0, 4, 2), slice(None, 2), 3])
def test_branch_rows_must_be_plain_slices(unet, rows):
    guider = gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[0])
    guider.set_state(1, 10, None)
    with pytest.raises(GuiderError, match="branch rows must be non-empty slices"):
        with guider.perturb(unet, {"pred_cond": slice(0, 1), "pred_cond_skip": rows}):
            pass
    _no_hooks_left(unet)
