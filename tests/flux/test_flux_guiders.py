"""Perturbed guiders on the FLUX transformer: skip-layer guidance skips whole double-stream blocks of the
perturbed branch only (checked against the formula with the block removed by hand), and PAG's identity
attention runs on the joint attention; both batched with the conditional branch, without a negative prompt."""

import pytest
import torch

from diffblocks import SequentialPipelineBlocks
from diffblocks.components.errors import BlockExecutionError
from diffblocks.guiders import LayerSkipConfig, PerturbedAttentionGuidance, SkipLayerGuidance
from diffblocks.presets import flux

CALL = dict(num_inference_steps=2, height=32, width=32, max_sequence_length=16, output_type="latent")


@pytest.fixture(scope="module")
def pipe(flux_dev_repo):
    pipe = SequentialPipelineBlocks.from_blocks_dict(flux.TEXT2IMAGE_BLOCKS).init_pipeline(flux_dev_repo)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def second_step(pipe, guider, **call):
    """The state of a call, the latents its second step starts from and that step's guided prediction (the
    perturbed guiders start after the first step of their window)."""
    pipe.update_components(guider=guider)
    seen = []

    def keep(components, i, t, values):
        seen.append(dict(values))  # returns None: nothing replaced

    latents = torch.randn(1, 64, 64, generator=torch.Generator().manual_seed(5))
    state = pipe(prompt="a cat", latents=latents, callback_on_step_end=keep,
                 callback_on_step_end_tensor_inputs=["latents", "noise_pred"], **{**CALL, **call})
    return state, seen[0]["latents"], seen[1]["noise_pred"]


def velocity(transformer, state, latents, skip_block=None):
    """The transformer's prediction at the second timestep, optionally with one double-stream block removed."""
    block = transformer.transformer_blocks[skip_block] if skip_block is not None else None
    if block is not None:
        block.forward = lambda hidden_states, encoder_hidden_states, **kw: (encoder_hidden_states, hidden_states)
    try:
        t = state.get("timesteps")[1]
        with torch.no_grad():
            return transformer(hidden_states=latents, encoder_hidden_states=state.get("prompt_embeds"),
                               pooled_projections=state.get("pooled_prompt_embeds"), timestep=(t / 1000)[None],
                               img_ids=state.get("latent_image_ids"), txt_ids=state.get("text_ids"),
                               guidance=torch.full([1], 3.5)).sample
    finally:
        if block is not None:
            del block.forward


@pytest.mark.parametrize("text_tokens", [16, 64], ids=["text-shorter", "text-as-long-as-the-image"])
def test_skip_layer_guidance_skips_the_block_in_the_perturbed_branch_only(pipe, text_tokens):
    # 64 text tokens and 64 image tokens (32 px): both streams have one shape, so only the block's own order of
    # outputs (text, then image) tells which input each skipped output passes on
    guider = SkipLayerGuidance(guidance_scale=1.0, skip_layer_guidance_scale=2.0, skip_layer_guidance_start=0.0,
                               skip_layer_guidance_stop=1.0, skip_layer_guidance_layers=[0])
    state, latents, pred = second_step(pipe, guider, max_sequence_length=text_tokens)
    assert state.get("prompt_embeds").shape[1] == text_tokens and latents.shape[1] == 64
    cond = velocity(pipe.transformer, state, latents)
    skipped = velocity(pipe.transformer, state, latents, skip_block=0)
    assert (cond - skipped).abs().max().item() > 1e-3  # the block matters
    assert (pred - (cond + 2.0 * (cond - skipped))).abs().max().item() <= 1e-5  # without CFG: cond is the base


def test_pag_runs_on_the_joint_attention_and_bad_layers_fail_before_step_zero(pipe):
    plain = second_step(pipe, SkipLayerGuidance(guidance_scale=1.0, skip_layer_guidance_scale=0.0,
                                                skip_layer_guidance_layers=[0]))[2]
    pag = PerturbedAttentionGuidance(guidance_scale=1.0, perturbed_guidance_scale=3.0, perturbed_guidance_start=0.0,
                                     perturbed_guidance_stop=1.0,
                                     perturbed_guidance_config=LayerSkipConfig([0], fqn="single_transformer_blocks",
                                                                               skip_attention=False,
                                                                               skip_attention_scores=True,
                                                                               skip_ff=False))
    guided = second_step(pipe, pag)[2]
    assert (guided - plain).abs().max().item() > 1e-4
    with pytest.raises(BlockExecutionError, match="GuiderError: .*'transformer_blocks' has 1 blocks"):
        second_step(pipe, SkipLayerGuidance(skip_layer_guidance_layers=[5]))
