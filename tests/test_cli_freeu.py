"""``--freeu`` on the embedded model: the image the Python API draws with ``unet.enable_freeu`` (bitwise: the same
computation on the CPU, saved as PNG), written as Forge writes its FreeU and read back, from Forge's images and from
ComfyUI's FreeU / FreeU_V2 nodes too; bad values are one error before anything loads."""

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from test_cli import assert_one_line_error, read_infotext, run_cli
from test_cli_comfy import comfy_graph, comfy_image
from test_cli_flags import cli_pixels

from diffblocks import SequentialPipelineBlocks
from diffblocks.presets import embedded_model_path, stable_diffusion

FACTORS = dict(b1=1.5, b2=1.6, s1=0.9, s2=0.2)
STEPS = 3  # cli_pixels's


def api_pixels(**freeu) -> np.ndarray:
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(
        str(embedded_model_path()))
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    if freeu:
        pipe.unet.enable_freeu(**freeu)
    image = pipe(prompt="a handwritten digit seven", num_inference_steps=STEPS,
                 generator=torch.Generator().manual_seed(3), output="images")[0]
    return np.asarray(image)


@pytest.mark.parametrize("version", [1, 2])
def test_freeu_draws_as_the_api_and_goes_into_the_image_and_back(capsys, tmp_path, version):
    got = cli_pixels(capsys, tmp_path, "--freeu", "1.5,1.6,0.9,0.2", "--freeu-version", str(version))
    assert np.array_equal(got, api_pixels(**FACTORS, version=version))
    assert not np.array_equal(got, api_pixels())
    drawn = sorted(tmp_path.iterdir())[-1]
    fields = read_infotext(drawn)[2]
    assert {k: v for k, v in fields.items() if k.startswith("freeu")} == {
        "freeu_enabled": "True", "freeu_b1": "1.5", "freeu_b2": "1.6", "freeu_s1": "0.9", "freeu_s2": "0.2",
        **({"freeu_version": "1"} if version == 1 else {})}  # Forge's FreeU is version 2: it writes no version
    assert np.array_equal(cli_pixels(capsys, tmp_path, "--from-image", str(drawn)), got)


def test_a_forge_image_with_freeu_is_drawn_with_freeu_v2(capsys, tmp_path):
    info = PngInfo()
    info.add_text("parameters", "a handwritten digit seven\nSteps: 3, Sampler: DDIM, CFG scale: 7.5, Seed: 3, "
                                "Size: 32x32, freeu_enabled: True, freeu_b1: 1.5, freeu_b2: 1.6, freeu_s1: 0.9, "
                                "freeu_s2: 0.2, Version: f2.0.1v1.10.1-previous-313-g8a042934")
    Image.new("RGB", (32, 32)).save(tmp_path / "forge.png", pnginfo=info)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "forge.png"), "--no-progress", "--device",
                           "cpu", "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    expected = cli_pixels(capsys, tmp_path, "--freeu", "1.5,1.6,0.9,0.2", "--freeu-version", "2", "--scheduler",
                          "ddim", "--guidance-scale", "7.5", "--height", "32", "--width", "32")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png").convert("RGB")), expected)


@pytest.mark.parametrize("node, version", [("FreeU", "1"), ("FreeU_V2", "2")])
def test_a_comfyui_graphs_freeu_node_is_taken(capsys, tmp_path, node, version):
    """A FreeU node between the checkpoint and the sampler (after a LoRA loader, as graphs have it)."""
    graph = comfy_graph()
    graph["20"] = {"class_type": node, "inputs": {**FACTORS, "model": ["21", 0]}}
    graph["21"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "ink.safetensors",
                                                                    "strength_model": 0.8, "model": ["4", 0]}}
    graph["3"]["inputs"]["model"] = ["20", 0]
    comfy_image(tmp_path / "comfy.png", graph)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "comfy.png"), "--out", str(tmp_path / "a.png"),
                           "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps",
                           "5", "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler-a", "--height", "32",
                           "--width", "32", "--freeu", "1.5,1.6,0.9,0.2", "--freeu-version", version,
                           "--out", str(tmp_path / "b.png"), "--no-progress")
    assert code == 0, err
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.tobytes() == b.tobytes() and a.text["parameters"] == b.text["parameters"]


@pytest.mark.parametrize("argv, fragments", [
    (["--freeu", "1.5,1.6,0.9"], ["--freeu must be four numbers B1,B2,S1,S2", "got '1.5,1.6,0.9'"]),
    (["--freeu", "1.5,1.6,nan,0.2"], ["--freeu must be four numbers"]),
    (["--freeu-version", "2"], ["--freeu-version needs --freeu"]),
    (["--freeu", "1,1,1,1", "--preset", "flux-text2image", "--model", "{tmp}"],
     ["--freeu works with the SD 1.x / 2.x, SDXL workflows, not preset 'flux-text2image'"]),
])
def test_bad_freeu_flags_are_one_error_before_loading(capsys, tmp_path, argv, fragments):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", *argv, "--out", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "a.png").exists()


def test_batch_takes_freeu_as_run_does(capsys, tmp_path):
    (tmp_path / "prompts.txt").write_text("a handwritten digit seven\n")
    code, _, err = run_cli(capsys, "batch", str(tmp_path / "prompts.txt"), "--out-dir", str(tmp_path / "out"),
                           "--steps", str(STEPS), "--seed", "3", "--freeu", "1.5,1.6,0.9,0.2", "--device", "cpu",
                           "--no-progress")
    assert code == 0, err
    batch = np.asarray(Image.open(tmp_path / "out" / "000000.png").convert("RGB"))
    assert np.array_equal(batch, api_pixels(**FACTORS))


def test_an_image_whose_freeu_factors_are_not_numbers_is_drawn_without_it_and_says_so(capsys, tmp_path):
    info = PngInfo()
    info.add_text("parameters", "a handwritten digit seven\nSteps: 3, Seed: 3, freeu_enabled: True, freeu_b1: 1.5, "
                                "freeu_b2: high, freeu_s1: 0.9, freeu_s2: 0.2")
    Image.new("RGB", (32, 32)).save(tmp_path / "odd.png", pnginfo=info)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "odd.png"), "--no-progress", "--device", "cpu",
                           "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    assert f"note: {tmp_path / 'odd.png'} was drawn with FreeU (its factors are not numbers); not taken here" in err
    assert "freeu" not in Image.open(tmp_path / "a.png").text["parameters"]
