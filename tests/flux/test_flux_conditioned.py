"""FLUX.1 Fill and Canny / Depth [dev] against diffusers' FluxFillPipeline / FluxControlPipeline on tiny
transformers with more input channels than they predict (Fill: the latents, the masked image's latents and the mask
laid out per latent pixel; Canny / Depth: the latents and the control image's). Tolerance: max abs difference
<= 1e-4 on output_type="pt" (float32, CPU); the calls leave guidance_scale and strength at their defaults (Fill:
30 and 1) unless a case sets them, so the defaults are compared too."""

import numpy as np
import pytest
import torch
from tiny_flux import make_flux_repo
from tiny_models import build_pipeline, make_image, make_mask

from diffblocks.presets import flux

TOL = 1e-4
# 64 latent channels + 64 of the masked image + 4 x (the tiny VAE's scale factor 2)^2 of the mask
FILL_TRANSFORMER = dict(in_channels=64 + 64 + 4 * 2 * 2, out_channels=64)
CONTROL_TRANSFORMER = dict(in_channels=64 + 64, out_channels=64)
CALL = dict(num_inference_steps=3, height=32, width=32, max_sequence_length=16)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fill_repo(tmp_path_factory):
    return make_flux_repo(tmp_path_factory.mktemp("flux_fill"), dev=True, transformer=FILL_TRANSFORMER)


@pytest.mark.parametrize("extra", [{}, {"strength": 0.7, "num_images_per_prompt": 2, "guidance_scale": 10.0}],
                         ids=["defaults", "strength-two-images"])
def test_fill_matches_flux_fill_pipeline(fill_repo, extra):
    import diffusers

    call = dict(image=make_image(3, size=32), mask_image=make_mask(size=32), output_type="pt", **CALL, **extra)
    pipe = diffusers.FluxFillPipeline.from_pretrained(fill_repo)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a cat", generator=torch.Generator().manual_seed(0), **call).images
    got = build_pipeline(flux.FILL_BLOCKS, fill_repo)(prompt="a cat", generator=torch.Generator().manual_seed(0),
                                                       output="images", **call)
    assert got.shape[0] == extra.get("num_images_per_prompt", 1)
    diff = (got - expected).abs().max().item()
    assert diff <= TOL, f"max abs diff {diff}"


def test_fill_from_the_cli_and_the_catalog(fill_repo, tmp_path, capsys):
    from PIL import Image
    from test_cli import assert_one_line_error, run_cli

    from diffblocks.nodes import catalog

    assert "preset:flux-fill" in catalog()
    make_image(3, size=32).save(tmp_path / "photo.png")
    make_mask(size=32).save(tmp_path / "mask.png")
    common = ["run", "--prompt", "a cat", "--preset", "flux-fill", "--model", str(fill_repo), "--height", "32",
              "--width", "32", "--steps", "3", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out.png")]
    code, _, err = run_cli(capsys, *common, "--image", str(tmp_path / "photo.png"))
    assert_one_line_error(code, err, "preset 'flux-fill' needs --mask-image")
    code, _, err = run_cli(capsys, *common, "--image", str(tmp_path / "photo.png"), "--mask-image", str(tmp_path / "mask.png"))
    assert code == 0, err
    expected = build_pipeline(flux.FILL_BLOCKS, fill_repo)(
        prompt="a cat", image=Image.open(tmp_path / "photo.png").convert("RGB"),
        mask_image=Image.open(tmp_path / "mask.png").convert("RGB"), generator=torch.Generator().manual_seed(0),
        num_inference_steps=3, height=32, width=32, output="images")[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), np.asarray(expected))


@pytest.fixture(scope="module")
def control_repo(tmp_path_factory):
    return make_flux_repo(tmp_path_factory.mktemp("flux_control"), dev=True, transformer=CONTROL_TRANSFORMER)


def test_canny_depth_models_match_flux_control_pipeline(control_repo):
    import diffusers

    call = dict(control_image=make_image(5, size=32), num_images_per_prompt=2, output_type="pt", **CALL)
    pipe = diffusers.FluxControlPipeline.from_pretrained(control_repo)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a cat", generator=torch.Generator().manual_seed(0), **call).images
    got = build_pipeline(flux.CONTROL_BLOCKS, control_repo)(prompt="a cat", generator=torch.Generator().manual_seed(0),
                                                             output="images", **call)
    diff = (got - expected).abs().max().item()
    assert diff <= TOL, f"max abs diff {diff}"


def test_canny_depth_from_the_cli(control_repo, tmp_path, capsys):
    from PIL import Image
    from test_cli import run_cli

    make_image(5, size=32).save(tmp_path / "edges.png")
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--preset", "flux-control", "--model", str(control_repo),
                           "--control-image", str(tmp_path / "edges.png"), "--height", "32", "--width", "32", "--steps",
                           "3", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out.png"))
    assert code == 0, err
    expected = build_pipeline(flux.CONTROL_BLOCKS, control_repo)(
        prompt="a cat", control_image=Image.open(tmp_path / "edges.png").convert("RGB"), num_inference_steps=3,
        generator=torch.Generator().manual_seed(0), height=32, width=32, output="images")[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), np.asarray(expected))
