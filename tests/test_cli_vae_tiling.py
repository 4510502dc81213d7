"""``--vae-tiling`` on the embedded model (its VAE's own size: 32 px): above it, the image the Python API draws with
``vae.enable_tiling()`` (bitwise: the same computation on the CPU, saved as PNG), which differs from a whole decode
at the seams; at it, the whole decode's. A ComfyUI graph with VAEDecodeTiled says to give it."""

import numpy as np
import torch
from PIL import Image
from test_cli import run_cli

from diffblocks import SequentialPipelineBlocks
from diffblocks.presets import embedded_model_path, stable_diffusion


def cli_pixels(capsys, out, *argv) -> np.ndarray:
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten digit seven", "--steps", "2", "--seed", "3",
                           "--no-progress", "--device", "cpu", "--out", str(out), *argv)
    assert code == 0, err
    return np.asarray(Image.open(out).convert("RGB"))


def api_pixels(size: int, tiled: bool) -> np.ndarray:
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(
        str(embedded_model_path()))
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    if tiled:
        pipe.vae.enable_tiling()
    image = pipe(prompt="a handwritten digit seven", num_inference_steps=2, height=size, width=size,
                 generator=torch.Generator().manual_seed(3), output="images")[0]
    return np.asarray(image)


def test_vae_tiling_decodes_in_tiles_above_the_vaes_size(capsys, tmp_path):
    got = cli_pixels(capsys, tmp_path / "a.png", "--vae-tiling", "--height", "64", "--width", "64")
    assert np.array_equal(got, api_pixels(64, tiled=True))
    assert not np.array_equal(got, api_pixels(64, tiled=False))
    small = cli_pixels(capsys, tmp_path / "b.png", "--vae-tiling", "--height", "32", "--width", "32")
    assert np.array_equal(small, api_pixels(32, tiled=False))


def test_batch_takes_vae_tiling(capsys, tmp_path):
    (tmp_path / "prompts.txt").write_text("a handwritten digit seven\n")
    code, _, err = run_cli(capsys, "batch", str(tmp_path / "prompts.txt"), "--out-dir", str(tmp_path / "out"),
                           "--steps", "2", "--seed", "3", "--height", "64", "--width", "64", "--vae-tiling",
                           "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "000000.png").convert("RGB")),
                          api_pixels(64, tiled=True))


def test_a_comfyui_graph_that_decodes_in_tiles_says_to_give_vae_tiling(capsys, tmp_path):
    from test_cli_comfy import comfy_graph, comfy_image

    graph = comfy_graph()
    graph["8"]["class_type"] = "VAEDecodeTiled"
    comfy_image(tmp_path / "comfy.png", graph)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "comfy.png"), "--no-progress", "--device",
                           "cpu", "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    assert "its VAEDecodeTiled decodes in tiles: give --vae-tiling (tiles of the VAE's own size)" in err
