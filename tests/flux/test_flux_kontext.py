"""FLUX.1 Kontext [dev] against diffusers' FluxKontextPipeline on a tiny transformer: the image to edit is read as
context tokens after the latents'. Tolerance: max abs difference <= 1e-4 on output_type="pt" (float32, CPU).

diffusers scales every output to ``max_area`` pixels keeping the aspect ratio; the calls give it the area of the
size asked, so both make the same size."""

import numpy as np
import pytest
import torch
from tiny_flux import assert_close, make_flux_repo
from tiny_models import build_pipeline, make_image

from diffblocks.components.errors import InputValueError
from diffblocks.guiders import ClassifierFreeGuidance
from diffblocks.presets import flux

TOL = 1e-4
CALL = dict(num_inference_steps=3, max_sequence_length=16, output_type="pt")
VAE_BY_8 = dict(block_out_channels=(8,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4)

pytestmark = pytest.mark.usefixtures("one_thread")


def photo(width: int, height: int, seed: int = 3):
    return make_image(seed, size=max(width, height)).crop((0, 0, width, height))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_flux_repo(tmp_path_factory.mktemp("flux_kontext"), dev=True)


@pytest.fixture(scope="module")
def repo8(tmp_path_factory):
    """A VAE that scales by 8, as FLUX.1's: an image resized to a training resolution makes about 4,000 tokens."""
    return make_flux_repo(tmp_path_factory.mktemp("flux_kontext8"), dev=True, **VAE_BY_8)


def diffusers_kontext(repo, prompt, height, width, **call):
    import diffusers

    pipe = diffusers.FluxKontextPipeline.from_pretrained(repo)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt=prompt, generator=torch.Generator().manual_seed(0), height=height, width=width,
                max_area=height * width, **CALL, **call).images


def ours(repo, guider_scale: float | None = None):
    pipe = build_pipeline(flux.KONTEXT_BLOCKS, repo)
    if guider_scale is not None:
        pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=guider_scale))
    return pipe



@pytest.mark.parametrize("image_size", [(32, 32), (48, 24)], ids=["same-size", "other-shape"])
def test_kontext_matches_flux_kontext_pipeline(repo, image_size):
    image = photo(*image_size)
    expected = diffusers_kontext(repo, "make it red", 32, 32, image=image, _auto_resize=False)
    got = ours(repo)(prompt="make it red", image=image, auto_resize=False, height=32, width=32,
                     generator=torch.Generator().manual_seed(0), output="images", **CALL)
    assert_close(got, expected)


def test_two_prompts_two_images_each_with_true_cfg(repo):
    call = dict(image=photo(32, 32), negative_prompt=["blurry", "dark"], num_images_per_prompt=2, guidance_scale=2.5)
    expected = diffusers_kontext(repo, ["make it red", "a cow"], 32, 32, true_cfg_scale=2.0, _auto_resize=False,
                                 **call)
    got = ours(repo, guider_scale=2.0)(prompt=["make it red", "a cow"], auto_resize=False, height=32, width=32,
                                       generator=torch.Generator().manual_seed(0), output="images", **CALL, **call)
    assert got.shape[0] == 4
    assert_close(got, expected)


def test_the_output_keeps_the_image_shape_unless_a_size_is_given(repo):
    image = photo(48, 24)
    got = ours(repo)(prompt="make it red", image=image, auto_resize=False, generator=torch.Generator().manual_seed(0),
                     output="images", **CALL)
    assert tuple(got.shape[2:]) == (24, 48)
    assert_close(got, diffusers_kontext(repo, "make it red", 24, 48, image=image, _auto_resize=False))


def test_without_an_image_it_is_text_to_image(repo):
    call = dict(height=32, width=32, generator=torch.Generator().manual_seed(0), output="images", **CALL)
    got = ours(repo)(prompt="a cat", **call)
    expected = build_pipeline(flux.TEXT2IMAGE_BLOCKS, repo)(prompt="a cat", **{**call, "generator":
                                                                                torch.Generator().manual_seed(0)})
    assert torch.equal(got, expected)


def test_auto_resize_picks_the_training_resolution_as_diffusers(repo8):
    image = photo(96, 64)  # 3:2, resized to 1248 x 832: 78 x 52 context tokens
    expected = diffusers_kontext(repo8, "make it red", 64, 64, image=image)
    pipe = ours(repo8)
    state = pipe(prompt="make it red", image=image, height=64, width=64, generator=torch.Generator().manual_seed(0),
                 **CALL)
    assert state.get("context_latents").shape[1] == 78 * 52
    assert_close(state.get("images"), expected)


def test_images_that_do_not_divide_the_batch_fail_before_the_first_step(repo):
    with pytest.raises(InputValueError) as err:
        ours(repo)(prompt=["a", "b", "c"], image=[photo(32, 32), photo(32, 32, seed=4)], auto_resize=False,
                   height=32, width=32, **CALL)
    assert "'image' has 2 images" in str(err.value)


def test_kontext_from_the_cli_and_the_catalog(repo8, tmp_path, capsys):
    from PIL import Image
    from test_cli import run_cli

    from diffblocks.nodes import catalog

    assert "preset:flux-kontext" in catalog()
    photo(96, 64).save(tmp_path / "photo.png")
    code, _, err = run_cli(capsys, "run", "--prompt", "make it red", "--preset", "flux-kontext", "--model", str(repo8),
                           "--image", str(tmp_path / "photo.png"), "--height", "64", "--width", "64", "--steps", "2",
                           "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out.png"))
    assert code == 0, err
    out = Image.open(tmp_path / "out.png").convert("RGB")
    expected = ours(repo8)(prompt="make it red", image=Image.open(tmp_path / "photo.png").convert("RGB"), height=64,
                           width=64, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                           output="images")[0]
    assert np.array_equal(np.asarray(out), np.asarray(expected))
