"""``--variation-seed`` / ``--variation-strength`` (A1111's variation seed) on the embedded model: the pipeline
given as latents the seed's noise turned towards the variation seed's by A1111's spherical interpolation (written
out here), bitwise; written as A1111 writes it and read back; bad values one error before loading."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_one_line_error, read_infotext, run_cli

from diffblocks import SequentialPipelineBlocks
from diffblocks.presets import embedded_model_path, stable_diffusion


def a1111_slerp(val, low, high):
    """A1111's slerp (modules/processing.py), written out."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def api_pixels(strength=None, variation_seed=7):
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(
        str(embedded_model_path()))
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(3)
    latents = None
    if strength is not None:  # the embedded model draws 32 px images: 4 x 8 x 8 latents
        noise = torch.randn((1, 4, 8, 8), generator=generator)
        other = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(variation_seed))
        latents = a1111_slerp(strength, noise[0], other[0])[None]
    image = pipe(prompt="a handwritten digit seven", num_inference_steps=3, generator=generator, latents=latents,
                 output="images")[0]
    return np.asarray(image)


def cli_pixels(capsys, out, *argv):
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten digit seven", "--steps", "3", "--seed", "3",
                           "--no-progress", "--device", "cpu", "--out", str(out), *argv)
    assert code == 0, err
    return np.asarray(Image.open(out).convert("RGB"))


def test_a_variation_seed_turns_the_noise_towards_its_own_and_goes_into_the_image_and_back(capsys, tmp_path):
    got = cli_pixels(capsys, tmp_path / "a.png", "--variation-seed", "7", "--variation-strength", "0.3")
    assert np.array_equal(got, api_pixels(0.3))
    assert not np.array_equal(got, api_pixels()) and not np.array_equal(got, api_pixels(0.6))
    fields = read_infotext(tmp_path / "a.png")[2]
    assert (fields["Variation seed"], fields["Variation seed strength"]) == ("7", "0.3")
    assert np.array_equal(cli_pixels(capsys, tmp_path / "b.png", "--from-image", str(tmp_path / "a.png")), got)
    # strength 0 is the seed's image; 1 the variation seed's (its sampler, DDIM, draws no more noise)
    assert np.array_equal(cli_pixels(capsys, tmp_path / "c.png", "--variation-seed", "7", "--variation-strength",
                                     "0"), api_pixels())
    assert np.array_equal(cli_pixels(capsys, tmp_path / "d.png", "--variation-seed", "7", "--variation-strength",
                                     "1"), cli_pixels(capsys, tmp_path / "e.png", "--seed", "7"))


@pytest.mark.parametrize("argv, fragments", [
    (["--variation-seed", "7"], ["--variation-strength must be a number in [0, 1]"]),
    (["--variation-seed", "7", "--variation-strength", "1.5"], ["--variation-strength must be a number in [0, 1]"]),
    (["--variation-strength", "0.3"], ["--variation-strength needs --variation-seed"]),
    (["--variation-seed", "7", "--variation-strength", "0.3", "--preset", "sd15-image2image", "--image", "{img}"],
     ["--variation-seed works with the SD 1.x / 2.x and SDXL text2image workflows"]),
])
def test_bad_variation_flags_are_one_error_before_loading(capsys, tmp_path, argv, fragments):
    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    argv = [arg.format(img=tmp_path / "in.png") for arg in argv]
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", *argv, "--out", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, *fragments)


def test_an_a1111_image_to_image_with_a_variation_seed_says_it_is_not_taken(capsys, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a handwritten digit seven\nSteps: 3, Seed: 3, Size: 32x32, Denoising strength: 0.6, "
                                "Variation seed: 7, Variation seed strength: 0.3")
    Image.new("RGB", (32, 32)).save(tmp_path / "a1111.png", pnginfo=info)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "a1111.png"), "--image",
                           str(tmp_path / "a1111.png"), "--no-progress", "--device", "cpu",
                           "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    assert (f"note: {tmp_path / 'a1111.png'} was drawn with A1111's variation seed 7 (noise of two seeds blended); "
            "not taken here: it is for SD and SDXL text-to-image") in err
