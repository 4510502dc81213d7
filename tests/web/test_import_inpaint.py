"""ComfyUI's inpainting graphs, imported: a KSampler over VAEEncodeForInpaint's latent (or InpaintModelConditioning's,
or SetLatentNoiseMask's over a VAEEncode) becomes the family's inpainting preset, with a Load Image node for the
image and one for its mask, which the notice asks to upload (ComfyUI reads the mask from the image's transparency,
which the page does not)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from page_helpers import expect, open_editor, pixels, run, shown_image
from test_editor import COMFY_PROMPT
from test_import import drop, on_checkpoint, upload, wait_for, with_digits_configs

LINK = lambda node, output: {"node": node, "output": output}  # noqa: E731


def comfy_inpaint(denoise=1.0):
    """ComfyUI's inpainting example graph on the digits checkpoint: LoadImage (its image, and its mask from the
    transparency) into VAEEncodeForInpaint (the mask grown by 6 pixels), the KSampler over that latent."""
    prompt = json.loads(json.dumps(COMFY_PROMPT))
    prompt["4"]["inputs"]["ckpt_name"] = "sd15/digits.safetensors"
    prompt["10"] = {"class_type": "LoadImage", "inputs": {"image": "four.png", "upload": "image"}}
    prompt["11"] = {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["10", 0], "vae": ["4", 2],
                                                                    "mask": ["10", 1], "grow_mask_by": 6}}
    del prompt["5"]
    prompt["3"]["inputs"].update(latent_image=["11", 0], denoise=denoise)
    return prompt


def test_a_comfyui_inpainting_graph_draws_what_run_inpaint_draws(page, import_server, tmp_path, shots):
    """The inpainting preset on the checkpoint, with Load Image nodes for the image and its mask (white where it is
    painted again) and the KSampler's denoise as the strength; grow_mask_by is named as left out. With both
    uploaded, it draws the pixels ``diffblocks run --preset sd15-inpaint`` draws with the same settings."""
    from diffblocks.cli import main
    from diffblocks.presets import embedded_model_path

    info = PngInfo()
    info.add_text("prompt", json.dumps(comfy_inpaint(denoise=0.8)))
    open_editor(page, import_server)
    drop(page, tmp_path / "inpaint.png", info)
    wait_for(page, "nodes.run?.type === 'preset:sd15-inpaint'")
    expected = on_checkpoint("sd15/digits.safetensors")
    expected["nodes"]["run"]["type"] = "preset:sd15-inpaint"
    run_inputs = expected["nodes"]["run"]["inputs"]
    del run_inputs["width"], run_inputs["height"]
    run_inputs.update(image=LINK("source", "image"), mask_image=LINK("mask", "image"), strength=0.8)
    expected["nodes"].update(source={"type": "LoadImage", "inputs": {}}, mask={"type": "LoadImage", "inputs": {}})
    assert page.evaluate("window.diffblocks.workflow()") == expected
    expect(page.get_by_test_id("notice")).to_contain_text(
        "upload the image to inpaint (four.png in ComfyUI's input folder) and its mask (white where it is painted "
        "again; ComfyUI reads it from the image's transparency) into the Load Image nodes; left out: "
        "VAEEncodeForInpaint's grow_mask_by (the mask as it is)")

    four, mask = tmp_path / "four.png", tmp_path / "mask.png"
    Image.fromarray((np.indices((32, 32))[1] * 8 % 256).astype("uint8")).convert("RGB").save(four)
    Image.fromarray(((np.indices((32, 32))[0] > 16) * 255).astype("uint8")).convert("RGB").save(mask)
    with_digits_configs(page, "load")
    upload(page, "source", four)
    upload(page, "mask", mask)
    run(page)
    page.screenshot(path=str(shots / "39-comfyui-inpaint-import.png"))
    assert main(["run", "--preset", "sd15-inpaint", "--model", str(embedded_model_path()), "--image", str(four),
                 "--mask-image", str(mask), "--strength", "0.8", "--prompt", "a handwritten digit four",
                 "--negative-prompt", "blurry, faint", "--steps", "6", "--seed", "3", "--guidance-scale", "5",
                 "--scheduler", "euler-a", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "cli.png")]) == 0
    drawn = pixels(import_server, shown_image(page))
    assert np.array_equal(drawn, np.asarray(Image.open(tmp_path / "cli.png").convert("RGB")))
