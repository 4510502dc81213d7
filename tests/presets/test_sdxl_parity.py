"""Stable Diffusion XL presets against diffusers' classic pipelines on the same tiny weights.

Tolerance: max abs difference <= 1e-4 on output_type="pt" (float32, CPU).
"""

import functools

import pytest
import torch
from tiny_models import make_image, make_mask

from diffblocks import SequentialPipelineBlocks
from diffblocks.components.schedulers import DDIMScheduler, EulerAncestralDiscreteScheduler, UniPCMultistepScheduler
from diffblocks.presets.stable_diffusion_xl import AUTO_BLOCKS, IMAGE2IMAGE_BLOCKS, INPAINT_BLOCKS, TEXT2IMAGE_BLOCKS

TOL = 1e-4
STEPS = 4


def ours(preset, repo, scheduler=None):
    pipe = SequentialPipelineBlocks.from_blocks_dict(preset).init_pipeline(repo)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        pipe.update_components(scheduler=scheduler.from_config(pipe.scheduler.config))
    return pipe


def reference(cls_name, repo, scheduler=None):
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(repo, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        pipe.scheduler = getattr(diffusers, scheduler.__name__).from_config(pipe.scheduler.config)
    # the classic SDXL pipelines default to guidance_scale=5.0; diffblocks' default guider uses 7.5
    return functools.partial(pipe, guidance_scale=7.5)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def compare(a, b):
    assert a.shape == b.shape
    assert not torch.isnan(a).any()
    diff = (a - b).abs().max().item()
    assert diff <= TOL, f"max abs diff {diff}"


@pytest.mark.parametrize("scheduler", [None, EulerAncestralDiscreteScheduler, UniPCMultistepScheduler])
def test_text2image(sdxl_repo, scheduler):
    pipe = ours(TEXT2IMAGE_BLOCKS, sdxl_repo, scheduler)
    ref = reference("StableDiffusionXLPipeline", sdxl_repo, scheduler)
    kwargs = dict(num_inference_steps=STEPS, output_type="pt", negative_prompt="blurry", prompt_2="a dog")
    a = pipe(prompt="a cat", generator=gen(), output="images", **kwargs)
    b = ref("a cat", generator=gen(), **kwargs).images
    compare(a, b)


@pytest.mark.parametrize("scheduler", [None, DDIMScheduler])
def test_image2image(sdxl_repo, scheduler):
    pipe = ours(IMAGE2IMAGE_BLOCKS, sdxl_repo, scheduler)
    ref = reference("StableDiffusionXLImg2ImgPipeline", sdxl_repo, scheduler)
    kwargs = dict(num_inference_steps=STEPS, output_type="pt", strength=0.75)
    a = pipe(prompt="a cat", image=make_image(), generator=gen(), output="images", **kwargs)
    b = ref("a cat", image=make_image(), generator=gen(), **kwargs).images
    compare(a, b)


@pytest.mark.parametrize("repo_name, strength", [("sdxl_repo", 1.0), ("sdxl_repo", 0.6)])
def test_inpaint(request, repo_name, strength):
    repo = request.getfixturevalue(repo_name)
    pipe = ours(INPAINT_BLOCKS, repo)
    ref = reference("StableDiffusionXLInpaintPipeline", repo)
    kwargs = dict(num_inference_steps=STEPS, output_type="pt", strength=strength)
    a = pipe(prompt="a cat", image=make_image(), mask_image=make_mask(), generator=gen(), output="images", **kwargs)
    b = ref("a cat", image=make_image(), mask_image=make_mask(), generator=gen(), **kwargs).images
    compare(a, b)


def test_auto_blocks_pick_the_workflow_and_match(sdxl_repo):
    pipe = ours(AUTO_BLOCKS, sdxl_repo)
    kwargs = dict(num_inference_steps=STEPS, output_type="pt")
    t2i = reference("StableDiffusionXLPipeline", sdxl_repo)("a cat", generator=gen(), **kwargs).images
    compare(pipe(prompt="a cat", generator=gen(), output="images", **kwargs), t2i)
    i2i = reference("StableDiffusionXLImg2ImgPipeline", sdxl_repo)("a cat", image=make_image(), generator=gen(), **kwargs).images
    compare(pipe(prompt="a cat", image=make_image(), generator=gen(), output="images", **kwargs), i2i)


def test_batch_matches_single_runs(sdxl_repo):
    pipe = ours(TEXT2IMAGE_BLOCKS, sdxl_repo)
    kwargs = dict(num_inference_steps=STEPS, output_type="pt", output="images")
    both = pipe(prompt=["a cat", "a dog"], generator=[gen(1), gen(2)], **kwargs)
    cat = pipe(prompt="a cat", generator=gen(1), **kwargs)
    dog = pipe(prompt="a dog", generator=gen(2), **kwargs)
    compare(both, torch.cat([cat, dog]))
    twice = pipe(prompt="a cat", num_images_per_prompt=2, generator=[gen(1), gen(3)], **kwargs)
    compare(twice[:1], cat)
    compare(twice[1:], pipe(prompt="a cat", generator=gen(3), **kwargs))


def test_guidance_scale_changes_the_image(sdxl_repo):
    pipe = ours(TEXT2IMAGE_BLOCKS, sdxl_repo)
    kwargs = dict(prompt="a cat", num_inference_steps=STEPS, output_type="pt", output="images")
    default = pipe(generator=gen(), **kwargs)
    pipe.update_components(guider=pipe.get_component_spec("guider").create(guidance_scale=1.0))
    plain = pipe(generator=gen(), **kwargs)
    assert (default - plain).abs().max() > 1e-3
    ref = reference("StableDiffusionXLPipeline", sdxl_repo).func
    compare(plain, ref("a cat", guidance_scale=1.0, generator=gen(), num_inference_steps=STEPS, output_type="pt").images)


def test_empty_negative_prompt_gives_zero_embeddings_and_matches(sdxl_repo):
    pipe = ours(TEXT2IMAGE_BLOCKS, sdxl_repo)
    state = pipe(prompt="a cat", generator=gen(), num_inference_steps=STEPS, output_type="pt")
    assert state.get("negative_prompt_embeds").abs().max() == 0
    ref = reference("StableDiffusionXLPipeline", sdxl_repo)
    compare(state.get("images"), ref("a cat", generator=gen(), num_inference_steps=STEPS, output_type="pt").images)


def test_base_and_refiner_split_with_denoising_end_and_start(sdxl_repo):
    base = ours(TEXT2IMAGE_BLOCKS, sdxl_repo)
    refiner = ours(IMAGE2IMAGE_BLOCKS, sdxl_repo)
    ref_base = reference("StableDiffusionXLPipeline", sdxl_repo)
    ref_refiner = reference("StableDiffusionXLImg2ImgPipeline", sdxl_repo)
    kwargs = dict(num_inference_steps=6)
    latents = base(prompt="a cat", generator=gen(), denoising_end=0.5, output_type="latent", output="images", **kwargs)
    ref_latents = ref_base("a cat", generator=gen(), denoising_end=0.5, output_type="latent", **kwargs).images
    compare(latents, ref_latents)
    a = refiner(prompt="a cat", image=latents, generator=gen(), denoising_start=0.5, output_type="pt", output="images", **kwargs)
    b = ref_refiner("a cat", image=ref_latents, generator=gen(), denoising_start=0.5, output_type="pt", **kwargs).images
    compare(a, b)
