"""``--hires-upscaler``: the hires pass enlarges the first pass's latents (A1111's Latent upscalers, ComfyUI's
LatentUpscaleBy) and paints them again without a decode and encode between; bitwise the two presets called from
Python with the latents enlarged by torch's interpolation in between; written as A1111 names the upscaler and read
back, from A1111's and ComfyUI's images too."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_one_line_error, read_infotext, run_cli
from test_cli_comfy import comfy_graph, comfy_image
from tiny_models import build_pipeline

from diffblocks.presets import embedded_model_path, stable_diffusion

CALL = dict(prompt="a handwritten seven", num_inference_steps=6)


def by_hand(mode: str, antialias: bool = False) -> np.ndarray:
    """The two presets from Python: latents out of the first, enlarged 2x (8 -> 16 latent pixels: the embedded VAE
    scales by 4), into the second as its image."""
    repo = embedded_model_path()
    latents = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, repo)(
        generator=torch.Generator().manual_seed(3), output_type="latent", output="images", **CALL)
    enlarged = torch.nn.functional.interpolate(latents, size=(16, 16), mode=mode, antialias=antialias)
    image = build_pipeline(stable_diffusion.IMAGE2IMAGE_BLOCKS, repo)(
        image=enlarged, strength=0.6, height=64, width=64, generator=torch.Generator().manual_seed(3),
        output="images", **{**CALL, "num_inference_steps": 4})[0]
    return np.asarray(image)


def drawn(capsys, out, *argv) -> np.ndarray:
    code, _, err = run_cli(capsys, "run", "--prompt", CALL["prompt"], "--steps", "6", "--seed", "3", "--hires", "2",
                           "--hires-strength", "0.6", "--hires-steps", "4", "--no-progress", "--device", "cpu",
                           "--out", str(out), *argv)
    assert code == 0, err
    return np.asarray(Image.open(out).convert("RGB"))


@pytest.mark.parametrize("flag, mode, antialias, name", [
    ("latent", "bilinear", False, "Latent"),
    ("latent-bicubic-antialiased", "bicubic", True, "Latent (bicubic antialiased)"),
    ("Latent (nearest-exact)", "nearest-exact", False, "Latent (nearest-exact)")])
def test_a_latent_upscaler_enlarges_the_latents_between_the_passes(capsys, tmp_path, flag, mode, antialias, name):
    got = drawn(capsys, tmp_path / "a.png", "--hires-upscaler", flag)
    assert got.shape == (64, 64, 3) and np.array_equal(got, by_hand(mode, antialias))
    fields = read_infotext(tmp_path / "a.png")[2]
    assert (fields["Hires upscaler"], fields["Size"]) == (name, "32x32")
    assert np.array_equal(drawn(capsys, tmp_path / "b.png", "--from-image", str(tmp_path / "a.png")), got)
    assert not np.array_equal(got, drawn(capsys, tmp_path / "c.png"))  # lanczos, the image enlarged


def test_an_a1111_image_with_the_latent_upscaler_is_drawn_so(capsys, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a handwritten seven\nSteps: 6, Sampler: DDIM, CFG scale: 7.5, Seed: 3, Size: 32x32, "
                                "Denoising strength: 0.6, Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent")
    Image.new("RGB", (32, 32)).save(tmp_path / "a1111.png", pnginfo=info)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "a1111.png"), "--no-progress", "--device",
                           "cpu", "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    assert "upscaler" not in err  # taken, not replaced
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png").convert("RGB")), by_hand("bilinear"))


def test_a_comfyui_latent_hires_fix_is_drawn_with_its_method(capsys, tmp_path):
    graph = comfy_graph()
    graph["10"] = {"class_type": "LatentUpscaleBy", "inputs": {"upscale_method": "bicubic", "scale_by": 2,
                                                               "samples": ["3", 0]}}
    graph["11"] = {"class_type": "KSampler", "inputs": {**graph["3"]["inputs"], "denoise": 0.6, "steps": 4,
                                                        "latent_image": ["10", 0]}}
    graph["8"]["inputs"]["samples"] = ["11", 0]
    comfy_image(tmp_path / "comfy.png", graph)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "comfy.png"), "--no-progress", "--device",
                           "cpu", "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    assert read_infotext(tmp_path / "a.png")[2]["Hires upscaler"] == "Latent (bicubic)"
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps",
                           "5", "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler-a", "--height", "32",
                           "--width", "32", "--hires", "2", "--hires-strength", "0.6", "--hires-steps", "4",
                           "--hires-upscaler", "latent-bicubic", "--device", "cpu", "--no-progress",
                           "--out", str(tmp_path / "b.png"))
    assert code == 0, err
    assert Image.open(tmp_path / "a.png").tobytes() == Image.open(tmp_path / "b.png").tobytes()


@pytest.mark.parametrize("argv, fragments", [
    (["--hires-upscaler", "latent"], ["--hires-upscaler needs --hires"]),
    (["--hires", "2", "--hires-upscaler", "4x-UltraSharp"], ["--hires-upscaler: unknown hires upscaler '4x-UltraSharp'",
                                                              "latent-nearest-exact"]),
    (["--hires", "2", "--hires-upscaler", "latent", "--preset", "flux-text2image", "--model", "{tmp}"],
     ["--hires-upscaler latent works with the SD 1.x / 2.x, SDXL workflows, not preset 'flux-text2image'"]),
])
def test_bad_hires_upscalers_are_one_error_before_loading(capsys, tmp_path, argv, fragments):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", *argv, "--out", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, *fragments)
