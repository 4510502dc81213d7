"""FLUX.1 presets against diffusers' FluxPipeline / FluxImg2ImgPipeline / FluxInpaintPipeline on the same
tiny random weights (dev: guidance embedding; schnell: none). Tolerance: max abs difference <= 1e-4 on
output_type="pt" (float32, CPU)."""

import functools

import numpy as np
import pytest
import torch
from tiny_models import make_image, make_mask

from diffblocks import ModularPipeline, SequentialPipelineBlocks
from diffblocks.components.models import FluxTransformer2DModel
from diffblocks.components.schedulers import FlowMatchEulerDiscreteScheduler
from diffblocks.guiders import ClassifierFreeGuidance
from diffblocks.presets import flux

TOL = 1e-4
# guidance_scale given: FluxImg2Img/InpaintPipeline default to 7.0, FluxPipeline and these presets to 3.5
CALL = dict(num_inference_steps=4, output_type="pt", height=32, width=32, max_sequence_length=16, guidance_scale=3.5)


def build(blocks, repo):
    pipe = SequentialPipelineBlocks.from_blocks_dict(blocks).init_pipeline(repo)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.lru_cache(maxsize=None)
def ours(preset: str, repo):
    """One pipeline per preset and repo for the whole module (calls do not change a pipeline)."""
    return build(getattr(flux, preset), repo)


@functools.lru_cache(maxsize=None)
def reference(kind, repo):
    import diffusers

    pipe = getattr(diffusers, f"Flux{kind}Pipeline").from_pretrained(repo)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def compare(a, b):
    assert a.shape == b.shape and not torch.isnan(a).any()
    diff = (a - b).abs().max().item()
    assert diff <= TOL, f"max abs diff {diff}"


@pytest.mark.parametrize("repo_name", ["flux_dev_repo", "flux_schnell_repo"])
def test_text2image_matches_flux_pipeline(request, repo_name):
    repo = request.getfixturevalue(repo_name)
    pipe = ours("TEXT2IMAGE_BLOCKS", repo)
    assert type(pipe.transformer) is FluxTransformer2DModel
    assert type(pipe.scheduler) is FlowMatchEulerDiscreteScheduler
    a = pipe(prompt="a cat", generator=gen(), output="images", **CALL)
    compare(a, reference("", repo)("a cat", generator=gen(), **CALL).images)


def test_dev_guidance_scale_changes_the_image_and_schnell_ignores_it(flux_dev_repo, flux_schnell_repo):
    for repo, changes in ((flux_dev_repo, True), (flux_schnell_repo, False)):
        pipe = ours("TEXT2IMAGE_BLOCKS", repo)
        a, b = (pipe(prompt="a cat", generator=gen(), output="images", **{**CALL, "guidance_scale": g}) for g in (1.0, 6.0))
        assert ((a - b).abs().max().item() > 1e-3) is changes


def test_true_cfg_with_a_negative_prompt_matches_true_cfg_scale(flux_dev_repo):
    pipe = build(flux.TEXT2IMAGE_BLOCKS, flux_dev_repo)  # its own: the guider changes
    pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=4.0))
    kwargs = dict(negative_prompt="blurry", **CALL)
    a = pipe(prompt="a cat", generator=gen(), output="images", **kwargs)
    b = reference("", flux_dev_repo)("a cat", true_cfg_scale=4.0, generator=gen(), **kwargs).images
    compare(a, b)
    # without a negative prompt the guider is skipped: the plain images (test_text2image...), not these
    plain = pipe(prompt="a cat", generator=gen(), output="images", **CALL)
    assert torch.equal(plain, ours("TEXT2IMAGE_BLOCKS", flux_dev_repo)(prompt="a cat", generator=gen(), output="images",
                                                                       **CALL))
    assert (a - plain).abs().max().item() > 1e-3


def test_image2image_matches_flux_img2img_pipeline(flux_dev_repo):
    kwargs = dict(image=make_image(), strength=0.6, **CALL)
    a = ours("IMAGE2IMAGE_BLOCKS", flux_dev_repo)(prompt="a cat", generator=gen(), output="images", **kwargs)
    compare(a, reference("Img2Img", flux_dev_repo)("a cat", generator=gen(), **kwargs).images)


@pytest.mark.parametrize("crop", [None, 4])
def test_inpaint_matches_flux_inpaint_pipeline(flux_dev_repo, crop):
    kwargs = dict(image=make_image(), mask_image=make_mask(), strength=0.8, **CALL)
    if crop is not None:  # the crop is pasted back into the PIL image
        kwargs.update(padding_mask_crop=crop, output_type="pil")
    a = ours("INPAINT_BLOCKS", flux_dev_repo)(prompt="a cat", generator=gen(), output="images", **kwargs)
    b = reference("Inpaint", flux_dev_repo)("a cat", generator=gen(), **kwargs).images
    if crop is None:
        compare(a, b)
    else:  # 8-bit pixels: equal up to the rounding of a value within 1e-4 of a half step
        diff = np.abs(np.asarray(a[0], dtype=int) - np.asarray(b[0], dtype=int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_from_pretrained_of_a_flux_repo_picks_the_auto_blocks(flux_schnell_repo):
    pipe = ModularPipeline.from_pretrained(flux_schnell_repo)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.blocks.sub_blocks["denoise"]).__name__ == "FluxAutoDenoiseStep"
    a = pipe(prompt="a cat", image=make_image(), strength=0.6, generator=gen(), output="images", **CALL)
    compare(a, reference("Img2Img", flux_schnell_repo)("a cat", image=make_image(), strength=0.6, generator=gen(),
                                                        **CALL).images)


def test_inpaint_with_given_noise_matches(flux_dev_repo):
    noise = torch.randn(1, 16, 16, 16, generator=gen(7))  # FluxInpaintPipeline takes unpacked latents as the noise
    kwargs = dict(image=make_image(), mask_image=make_mask(), strength=0.8, latents=noise, **CALL)
    a = ours("INPAINT_BLOCKS", flux_dev_repo)(prompt="a cat", generator=gen(), output="images", **kwargs)
    compare(a, reference("Inpaint", flux_dev_repo)("a cat", generator=gen(), **kwargs).images)
