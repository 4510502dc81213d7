"""Model settings imported: ComfyUI's FreeU and FreeU_V2 nodes on the model's way, Forge's ``freeu_*`` fields and
``diffblocks run --freeu``'s become a FreeU node between the loader and the preset, ComfyUI's VAEDecodeTiled a
TiledVAE node; each draws what ``diffblocks run --from-image`` draws from the same image."""

from __future__ import annotations

import json

from page_helpers import expect, node
from test_editor import COMFY_PROMPT
from test_import_sampling import drop, image_with, run_draws_as_cli

FACTORS = {"b1": 1.5, "b2": 1.6, "s1": 0.9, "s2": 0.2}
LOAD = {"node": "load", "output": "components"}


def test_comfyuis_freeu_nodes_are_a_freeu_node_that_draws_what_run_draws(page, server, tmp_path, shots):
    graph = json.loads(json.dumps(COMFY_PROMPT))
    graph["20"] = {"class_type": "FreeU_V2", "inputs": {**FACTORS, "model": ["4", 0]}}
    graph["3"]["inputs"]["model"] = ["20", 0]
    nodes = drop(page, server, image_with(tmp_path / "v2.png", "prompt", json.dumps(graph)))
    assert nodes["freeu"] == {"type": "FreeU", "inputs": {"components": LOAD, **FACTORS, "version": 2}}
    assert nodes["run"]["inputs"]["components"] == {"node": "freeu", "output": "components"}
    expect(node(page, "freeu")).to_be_visible()
    assert "FreeU" not in page.get_by_test_id("notice").inner_text()  # carried over, not left out
    run_draws_as_cli(page, server, tmp_path / "v2.png")
    page.screenshot(path=str(shots / "41-freeu.png"))

    graph["20"]["class_type"] = "FreeU"
    nodes = drop(page, server, image_with(tmp_path / "v1.png", "prompt", json.dumps(graph)), again=True)
    assert nodes["freeu"]["inputs"]["version"] == 1
    run_draws_as_cli(page, server, tmp_path / "v1.png")


def test_forges_and_runs_freeu_fields_are_a_freeu_node(page, server, tmp_path):
    """Forge writes freeu_enabled and the factors (its FreeU is FreeU_V2); ``diffblocks run`` adds freeu_version 1
    for the paper's."""
    a1111 = ("a handwritten digit four\nNegative prompt: blurry, faint\nSteps: 6, Sampler: Euler a, CFG scale: 5, "
             "Seed: 3, Size: 32x32, freeu_enabled: True, freeu_b1: 1.5, freeu_b2: 1.6, freeu_s1: 0.9, freeu_s2: 0.2")
    for index, (name, text, version) in enumerate((("forge.png", a1111, 2),
                                                  ("run.png", a1111 + ", freeu_version: 1", 1))):
        nodes = drop(page, server, image_with(tmp_path / name, "parameters", text), again=index > 0)
        assert nodes["freeu"] == {"type": "FreeU", "inputs": {"components": LOAD, **FACTORS, "version": version}}
        run_draws_as_cli(page, server, tmp_path / name)
    nodes = drop(page, server, image_with(tmp_path / "bad.png", "parameters", a1111.replace("1.6", "x")), again=True)
    assert "freeu" not in nodes
    expect(page.get_by_test_id("notice")).to_contain_text("Forge's FreeU (its factors are not numbers)")


def test_comfyuis_tiled_decode_is_a_tiled_vae_node(page, server, tmp_path):
    """VAEDecodeTiled: a TiledVAE node last in the chain; at 64 px (the embedded VAE's own size is 32) it draws what
    ``diffblocks run --from-image --vae-tiling`` draws, which ``run`` is told to give (a note)."""
    import numpy as np
    from PIL import Image

    from diffblocks.cli import main
    from page_helpers import pixels, run, shown_image

    graph = json.loads(json.dumps(COMFY_PROMPT))
    graph["5"]["inputs"].update(width=64, height=64)
    graph["8"] = {"class_type": "VAEDecodeTiled", "inputs": {"samples": ["3", 0], "vae": ["4", 2], "tile_size": 512,
                                                             "overlap": 64}}
    nodes = drop(page, server, image_with(tmp_path / "tiled.png", "prompt", json.dumps(graph)))
    assert nodes["tiles"] == {"type": "TiledVAE", "inputs": {"components": LOAD}}
    assert nodes["run"]["inputs"]["components"] == {"node": "tiles", "output": "components"}
    assert "VAEDecodeTiled" not in page.get_by_test_id("notice").inner_text()  # carried over
    run(page)
    out = tmp_path / "cli.png"
    assert main(["run", "--from-image", str(tmp_path / "tiled.png"), "--vae-tiling", "--device", "cpu",
                 "--no-progress", "--out", str(out)]) == 0
    assert np.array_equal(pixels(server, shown_image(page)), np.asarray(Image.open(out).convert("RGB")))
