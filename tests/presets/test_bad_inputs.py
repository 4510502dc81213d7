"""Bad inputs to the SD 1.5 and SDXL presets: one InputValueError naming the input(s), the rule and the
value given, raised before the models run; the valid edge values still run.

SD 1.5 runs on the embedded tiny model (32x32 images, VAE scale factor 4), SDXL on the tiny test repo.
"""

import numpy as np
import PIL.Image
import pytest
import torch
from tiny_models import build_pipeline, make_image, make_mask

from diffblocks.blocks.checks import image_problem
from diffblocks.modular_pipelines.errors import InputValueError
from diffblocks.presets import embedded_model_path, stable_diffusion, stable_diffusion_xl

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def sd():
    repo = embedded_model_path()
    return {kind: build_pipeline(getattr(stable_diffusion, f"{kind.upper()}_BLOCKS"), repo)
            for kind in ("text2image", "image2image", "inpaint")}


@pytest.fixture(scope="module")
def sdxl(sdxl_repo):
    return {kind: build_pipeline(getattr(stable_diffusion_xl, f"{kind.upper()}_BLOCKS"), sdxl_repo)
            for kind in ("text2image", "image2image", "inpaint")}


def run(pipe, **inputs):
    inputs = {"prompt": "a cat", "num_inference_steps": 2, "generator": torch.Generator().manual_seed(0), **inputs}
    return pipe(output="images", output_type="pt", **inputs)


def image(mode="RGB"):
    return make_image().convert(mode)


SD_CASES = {
    # name: (pipeline, inputs, message substrings)
    "steps-negative": ("text2image", dict(num_inference_steps=-5), ["'num_inference_steps'", "must be > 0", "got -5"]),
    "steps-zero": ("text2image", dict(num_inference_steps=0), ["'num_inference_steps'", "must be > 0", "got 0"]),
    "strength-above-1": ("image2image", dict(image=image(), strength=1.5), ["'strength'", "must be in (0, 1]", "got 1.5"]),
    "strength-zero": ("image2image", dict(image=image(), strength=0.0), ["'strength'", "must be in (0, 1]", "got 0.0"]),
    "strength-negative": ("inpaint", dict(image=image(), mask_image=make_mask(), strength=-0.2),
                          ["'strength'", "must be in (0, 1]", "got -0.2"]),
    "strength-nan": ("image2image", dict(image=image(), strength=NAN), ["'strength'", "must be in (0, 1]", "got nan"]),
    "strength-leaves-no-step": ("image2image", dict(image=image(), strength=0.1),
                                ["'strength' and 'num_inference_steps'", "strength=0.1", "int(2 x 0.1) = 0"]),
    "latents-nan": ("text2image", dict(latents=torch.full((1, 4, 8, 8), NAN)),
                    ["'latents'", "must be finite (it holds 256 NaN)", "got Tensor"]),
    "latents-inf": ("text2image", dict(latents=torch.full((1, 4, 8, 8), INF)), ["'latents'", "must be finite", "inf"]),
    "image-tensor-nan": ("image2image", dict(image=torch.full((1, 3, 32, 32), NAN)),
                         ["'image'", "must be finite", "got Tensor"]),
    "image-array-inf": ("image2image", dict(image=np.full((32, 32, 3), np.inf, np.float32)),
                        ["'image'", "must be finite", "inf", "got ndarray"]),
    "image-list-item-nan": ("image2image", dict(image=[image(), torch.full((3, 32, 32), NAN)]),
                            ["'image'", "must be finite", "(item 1)"]),
    "inpaint-image-nan": ("inpaint", dict(image=torch.full((1, 3, 32, 32), NAN), mask_image=make_mask()),
                          ["'image'", "must be finite"]),
    "mask-nan": ("inpaint", dict(image=image(), mask_image=torch.full((1, 1, 32, 32), NAN)),
                 ["'mask_image'", "must be finite"]),
    "eta-nan": ("text2image", dict(eta=NAN), ["'eta'", "must be in [0, 1]", "got nan"]),
    "eta-inf": ("text2image", dict(eta=INF), ["'eta'", "must be in [0, 1]", "got inf"]),
    "height-zero": ("text2image", dict(height=0), ["'height'", "must be > 0", "got 0"]),
    "width-negative": ("text2image", dict(width=-16), ["'width'", "must be > 0", "got -16"]),
    "height-not-multiple": ("text2image", dict(height=34), ["'height'", "must be a multiple of 4", "got 34"]),
    "inpaint-height-zero": ("inpaint", dict(image=image(), mask_image=make_mask(), height=0), ["'height'", "must be > 0"]),
    "height-vs-latents": ("text2image", dict(latents=torch.randn(1, 4, 8, 8), height=64),
                          ["'height' and 'latents'", "height=64", "shape (1, 4, 8, 8)", "32x32", "scale factor 4"]),
    "size-vs-latents": ("text2image", dict(latents=torch.randn(1, 4, 8, 8), height=64, width=16),
                        ["'height', 'width' and 'latents'", "height=64 and width=16"]),
    "latents-batch": ("text2image", dict(prompt=["a", "b"], latents=torch.randn(1, 4, 8, 8)),
                      ["'latents'", "(1, 4, 8, 8)", "a batch of 2", "need shape (2, 4, 8, 8)"]),
    "rgba-array-to-img2img": ("image2image", dict(image=np.ones((32, 32, 4), np.float32) * 0.5),
                              ["'image'", "4-channel array is RGBA", "image[..., :3]", "shape=(32, 32, 4)"]),
    "rgba-uint8-tensor-to-img2img": ("image2image", dict(image=torch.full((1, 4, 32, 32), 128, dtype=torch.uint8)),
                                     ["'image'", "integer 4-channel tensor is an RGBA image"]),
    "four-channel-tensor-to-inpaint": ("inpaint", dict(image=torch.rand(1, 4, 32, 32), mask_image=make_mask()),
                                       ["'image'", "4-channel tensor is ambiguous", "image[:, :3]", "`latents`"]),
    "two-channel-array": ("image2image", dict(image=np.ones((32, 32, 2), np.float32)), ["'image'", "not 2"]),
    "rgb-mask-array": ("inpaint", dict(image=image(), mask_image=np.ones((1, 32, 32, 3), np.float32)),
                       ["'mask_image'", "one-channel mask", "mask[..., 0]"]),
    "empty-prompt-list": ("text2image", dict(prompt=[]), ["'prompt'", "must be non-empty", "got []"]),
    "empty-image-list": ("image2image", dict(image=[]), ["'image'", "at least one image"]),
    "negative-prompt-count": ("text2image", dict(prompt=["a", "b", "c"], negative_prompt=["x", "y"]),
                              ["'prompt' and 'negative_prompt'", "3 prompt(s)", "2 negative_prompt"]),
    "image-count-vs-prompts": ("image2image", dict(prompt=["a", "b", "c"], image=[image(), image()]),
                               ["'image' and 'prompt'", "2 images", "a batch of 3", "divides 3"]),
    "mask-count-vs-images": ("inpaint", dict(prompt=["a", "b"], image=[image(), image()], mask_image=[make_mask()] * 3),
                             ["'image' and 'mask_image'", "2 images and 3 masks"]),
    "mask-count-vs-prompts": ("inpaint", dict(prompt=["a", "b"], image=image(), mask_image=[make_mask()] * 3),
                              ["'mask_image' and 'prompt'", "3 masks", "a batch of 2"]),
    "generators-vs-images": ("text2image", dict(prompt=["a", "b"], num_images_per_prompt=2,
                                                generator=[torch.Generator()] * 3),
                             ["'generator'", "3 generator(s)", "a batch of 4 (2 prompts x 2 num_images_per_prompt)"]),
    "images-per-prompt-zero": ("text2image", dict(num_images_per_prompt=0), ["'num_images_per_prompt'", "must be > 0"]),
    "clip-skip-negative": ("text2image", dict(clip_skip=-1), ["'clip_skip'", "must be >= 0"]),
    "padding-mask-crop-negative": ("inpaint", dict(image=image(), mask_image=make_mask(), padding_mask_crop=-4),
                                   ["'padding_mask_crop'", "must be >= 0"]),
}


@pytest.mark.parametrize("case", SD_CASES)
def test_sd_bad_input_gets_one_error_naming_it(sd, case):
    kind, inputs, expected = SD_CASES[case]
    with pytest.raises(InputValueError) as info:
        run(sd[kind], **inputs)
    for text in expected:
        assert text in str(info.value)


SDXL_CASES = {
    "negative-prompt-count": ("text2image", dict(prompt=["a", "b", "c"], negative_prompt=["x", "y"]),
                              ["'prompt' and 'negative_prompt'", "3 prompt(s) but 2 negative_prompt"]),
    "negative-prompt-2-count": ("text2image", dict(prompt=["a", "b", "c"], negative_prompt="x",
                                                   negative_prompt_2=["x", "y"]),
                                ["'prompt' and 'negative_prompt_2'", "2 negative_prompt_2"]),
    "prompt-2-count": ("text2image", dict(prompt=["a", "b", "c"], prompt_2=["x", "y"]),
                       ["'prompt' and 'prompt_2'", "3 prompt(s) but 2 prompt_2"]),
    "embeds-without-pooled": ("text2image", dict(prompt=None, prompt_embeds=torch.randn(1, 16, 64)),
                              ["'prompt_embeds' and 'pooled_prompt_embeds'", "without pooled_prompt_embeds"]),
    "embeds-shapes": ("text2image", dict(prompt=None, prompt_embeds=torch.randn(2, 16, 64),
                                         pooled_prompt_embeds=torch.randn(2, 32),
                                         negative_prompt_embeds=torch.randn(1, 16, 64),
                                         negative_pooled_prompt_embeds=torch.randn(1, 32)),
                      ["'prompt_embeds' and 'negative_prompt_embeds'", "(2, 16, 64) and (1, 16, 64)"]),
    "empty-prompt-list": ("text2image", dict(prompt=[]), ["'prompt'", "must be non-empty"]),
    "denoising-end-leaves-no-step": ("text2image", dict(denoising_end=0.001, num_inference_steps=4),
                                     ["'denoising_end' and 'num_inference_steps'", "keeps none of the 4 steps"]),
    "denoising-start-one": ("image2image", dict(image=image(), denoising_start=1.0),
                            ["'denoising_start'", "must be in [0, 1)", "got 1.0"]),
    "aesthetic-score-nan": ("image2image", dict(image=image(), strength=1.0, aesthetic_score=NAN),
                            ["'aesthetic_score'", "must be finite", "got nan"]),
    "strength-above-1": ("inpaint", dict(image=image(), mask_image=make_mask(), strength=2.0),
                         ["'strength'", "must be in (0, 1]", "got 2.0"]),
    "image-count-vs-prompts": ("image2image", dict(prompt=["a", "b", "c"], image=[image(), image()], strength=1.0),
                               ["'image' and 'prompt'", "2 images for a batch of 3"]),
    "rgba-array": ("image2image", dict(image=np.ones((32, 32, 4), np.float32)), ["'image'", "4-channel array"]),
}


@pytest.mark.parametrize("case", SDXL_CASES)
def test_sdxl_bad_input_gets_one_error_naming_it(sdxl, case):
    kind, inputs, expected = SDXL_CASES[case]
    with pytest.raises(InputValueError) as info:
        run(sdxl[kind], **inputs)
    for text in expected:
        assert text in str(info.value)


@pytest.mark.parametrize("inputs", [dict(num_inference_steps=0), dict(height=-8), dict(latents=torch.full((1, 4, 8, 8), NAN))],
                         ids=["steps", "height", "latents"])
def test_a_declared_constraint_refuses_before_any_model_runs(sd, inputs):
    pipe = sd["text2image"]
    calls = []
    handle = pipe.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(InputValueError):
            run(pipe, **inputs)
    finally:
        handle.remove()
    assert calls == []


# --- the valid edges still run ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["image2image", "inpaint"])
def test_strength_one_runs(sd, kind):
    extra = {"mask_image": make_mask()} if kind == "inpaint" else {}
    assert run(sd[kind], image=image(), strength=1.0, **extra).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "CMYK"])
def test_other_pil_modes_give_the_image_converted_to_rgb(sd, mode):
    rgba = make_image().convert("RGBA")
    rgba.putalpha(PIL.Image.linear_gradient("L").resize(rgba.size))  # partly transparent
    source = rgba if mode == "RGBA" else make_image().convert(mode)
    ours = run(sd["image2image"], image=source, strength=0.75)
    assert ours.shape == (1, 3, 32, 32)  # not taken as latents (which would give 128x128)
    assert torch.equal(ours, run(sd["image2image"], image=source.convert("RGB"), strength=0.75))


def test_grayscale_image_and_array_run(sd):
    gray = make_image().convert("L")
    reference = run(sd["image2image"], image=gray.convert("RGB"), strength=0.75)
    assert torch.equal(run(sd["image2image"], image=gray, strength=0.75), reference)
    array = np.asarray(gray, dtype=np.float32)[..., None] / 255.0
    assert torch.equal(run(sd["image2image"], image=array, strength=0.75), reference)
    assert run(sd["inpaint"], image=gray, mask_image=make_mask().convert("RGBA")).shape == (1, 3, 32, 32)


def test_allowed_batch_shapes_run(sd, sdxl):
    assert run(sd["image2image"], prompt=["a", "b", "c"], image=image(), strength=1.0).shape[0] == 3
    assert run(sd["image2image"], prompt=["a", "b"], image=[image(), image()], strength=1.0).shape[0] == 2
    assert run(sd["inpaint"], prompt=["a", "b"], image=image(), mask_image=[make_mask()] * 2).shape[0] == 2
    assert run(sd["text2image"], prompt=["a", "b"], negative_prompt="blurry").shape[0] == 2
    assert run(sdxl["text2image"], prompt=["a", "b"], prompt_2="x", negative_prompt=["y"]).shape[0] == 2


def test_latents_with_agreeing_size_run(sd):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    alone = run(sd["text2image"], latents=latents)
    assert alone.shape == (1, 3, 32, 32)
    assert torch.equal(run(sd["text2image"], latents=latents, height=32, width=32), alone)


# --- the image check on its own -----------------------------------------------------------------------------


@pytest.mark.parametrize("value, options, expected", [
    (PIL.Image.new("RGBA", (8, 8)), {}, None),
    (PIL.Image.fromarray(np.full((4, 4), np.nan, np.float32)), {}, "must be finite"),
    (np.zeros((8, 8)), {}, None),
    (np.zeros((8, 8, 1)), {}, None),
    (np.zeros((2, 8, 8, 3)), {}, None),
    (np.zeros((8, 8, 4)), {}, "4-channel array"),
    (torch.zeros(3, 8, 8), {}, None),
    (torch.zeros(8, 8), {}, "must be an image of layout"),
    (torch.zeros(1, 4, 8, 8), {}, "ambiguous"),
    (torch.zeros(1, 4, 8, 8), {"latents": True}, None),
    (torch.zeros(1, 4, 8, 8, dtype=torch.uint8), {"latents": True}, "integer 4-channel tensor"),
    (torch.zeros(8, 8), {"mask": True}, None),
    (torch.zeros(2, 8, 8), {"mask": True}, None),
    (torch.zeros(1, 3, 8, 8), {"mask": True}, "one-channel mask"),
    ([[PIL.Image.new("RGB", (8, 8))], [np.zeros((8, 8, 4))]], {}, "(item [1][0])"),
    ("image.png", {}, "must be PIL images, numpy arrays or torch tensors, not str"),
])
def test_image_problem(value, options, expected):
    problem = image_problem(value, **options)
    assert problem is None if expected is None else expected in problem


# --- ControlNet inputs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def controlnet_pipe(sd_repo, tmp_path_factory):
    import diffusers

    from diffblocks import ComponentSpec
    from diffblocks.components.models.controlnet import ControlNetModel

    unet = diffusers.UNet2DConditionModel.from_pretrained(sd_repo, subfolder="unet")
    path = tmp_path_factory.mktemp("controlnet")
    diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32)).save_pretrained(path)
    pipe = build_pipeline(stable_diffusion.CONTROLNET_BLOCKS, sd_repo)
    pipe.update_components(controlnet=ComponentSpec("controlnet", ControlNetModel, repo=str(path)).load())
    return pipe


@pytest.mark.parametrize("inputs, expected", [
    (dict(control_guidance_start=0.6, control_guidance_end=0.4),
     ["'control_guidance_start' and 'control_guidance_end'", "start 0.6 is not before end 0.4"]),
    (dict(control_guidance_end=1.5), ["'control_guidance_end'", "must be in [0, 1]", "got 1.5"]),
    (dict(controlnet_conditioning_scale=[INF]), ["'controlnet_conditioning_scale'", "must be finite"]),
    (dict(controlnet_conditioning_scale=[1.0, 0.5]), ["'controlnet_conditioning_scale' and 'controlnet'", "2 values"]),
    (dict(control_image=torch.rand(1, 4, 32, 32)), ["'control_image'", "4-channel tensor is ambiguous"]),
], ids=["start-after-end", "end-above-1", "scale-inf", "scale-count", "control-image-4-channels"])
def test_controlnet_bad_input_gets_one_error_naming_it(controlnet_pipe, inputs, expected):
    inputs = {"control_image": make_image(), **inputs}
    with pytest.raises(InputValueError) as info:
        run(controlnet_pipe, **inputs)
    for text in expected:
        assert text in str(info.value)


def test_controlnet_grayscale_control_image_runs(controlnet_pipe):
    gray = make_image().convert("L")
    assert torch.equal(run(controlnet_pipe, control_image=gray), run(controlnet_pipe, control_image=gray.convert("RGB")))


def test_a_guider_layer_the_unet_lacks_fails_before_the_first_step(sd):
    from diffblocks.guiders import PerturbedAttentionGuidance
    from diffblocks.modular_pipelines.errors import BlockExecutionError, GuiderError

    pipe = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, embedded_model_path())
    # the perturbed window opens only at the last of 4 steps: before, the layer was looked up only there
    pipe.update_components(guider=PerturbedAttentionGuidance(perturbed_guidance_layers=[99],
                                                             perturbed_guidance_start=0.75, perturbed_guidance_stop=1.0))
    steps = []
    with pytest.raises(BlockExecutionError, match=r"'denoise'.*PerturbedAttentionGuidance perturbed_guidance_layers"
                                                  r".*indices \[99\]") as err:
        run(pipe, num_inference_steps=4, step_callback=lambda i, t, latents: steps.append(i))
    assert isinstance(err.value.__cause__, GuiderError) and steps == []
