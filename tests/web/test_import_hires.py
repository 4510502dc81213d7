"""Hires fixes in another tool's images and graphs, imported: A1111's (Hires upscale, Denoising strength, Hires
steps, Hires upscaler) and ComfyUI's (a second KSampler painting the first one's enlarged result again) become the
first pass, a lanczos ScaleImage (or, for their Latent upscalers and LatentUpscaleBy, the first pass's latents and a
ScaleLatents node) and an image-to-image pass, as the Hires fix template has them."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from page_helpers import expect, node, open_editor, pixels, run, shown_image
from test_editor import COMFY_PROMPT, DIGIT_FOUR, DROP_FILE


def test_an_a1111_png_with_a_hires_pass_becomes_its_two_passes_and_draws_what_run_draws(page, server, tmp_path):
    """A1111's hires fix (Hires upscale, Denoising strength, Hires steps) becomes the first pass, a lanczos ScaleImage
    and an image-to-image pass at that strength and steps, as the Hires fix template has them; run, it draws the 48
    px image ``diffblocks run --from-image`` draws. An upscaler other than lanczos is said to be replaced; A1111's
    Latent (bicubic) enlarges the first pass's latents with a ScaleLatents node, and draws what run draws too."""
    import base64

    from PIL.PngImagePlugin import PngInfo

    from diffblocks.cli import main

    info = PngInfo()
    info.add_text("parameters", "a handwritten digit four\nNegative prompt: blurry, faint\nSteps: 6, Sampler: Euler a, "
                                "CFG scale: 5, Seed: 3, Size: 32x32, Denoising strength: 0.6, Hires upscale: 1.5, "
                                "Hires steps: 10, Hires upscaler: 4x-UltraSharp, Model: tiny_digits")
    Image.new("RGB", (32, 32)).save(tmp_path / "hires.png", pnginfo=info)
    open_editor(page, server)
    encoded = base64.b64encode((tmp_path / "hires.png").read_bytes()).decode()
    page.evaluate(DROP_FILE, ["hires.png", "image/png", encoded])
    expect(node(page, "hires")).to_be_visible()
    expected = json.loads(json.dumps(DIGIT_FOUR))
    again = {k: v for k, v in expected["nodes"]["run"]["inputs"].items() if k not in ("width", "height")}
    expected["nodes"]["scale"] = {"type": "ScaleImage", "inputs": {"image": {"node": "run", "output": "images"},
                                                                   "scale_by": 1.5, "method": "lanczos"}}
    expected["nodes"]["hires"] = {"type": "preset:sd15-image2image", "inputs": {
        **again, "image": {"node": "scale", "output": "image"}, "strength": 0.6, "num_inference_steps": 10}}
    assert page.evaluate("window.diffblocks.workflow()") == expected
    expect(page.get_by_test_id("notice")).to_contain_text("left out: the 4x-UltraSharp upscaler (lanczos instead)")
    run(page)
    assert main(["run", "--from-image", str(tmp_path / "hires.png"), "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "cli.png")]) == 0
    drawn = pixels(server, shown_image(page))
    assert drawn.shape == (48, 48, 3)
    assert np.array_equal(drawn, np.asarray(Image.open(tmp_path / "cli.png").convert("RGB")))

    info = PngInfo()
    info.add_text("parameters", "a handwritten digit four\nNegative prompt: blurry, faint\nSteps: 6, Sampler: Euler a, "
                                "CFG scale: 5, Seed: 3, Size: 32x32, Denoising strength: 0.6, Hires upscale: 2, "
                                "Hires steps: 10, Hires upscaler: Latent (bicubic), Model: tiny_digits")
    Image.new("RGB", (32, 32)).save(tmp_path / "latent.png", pnginfo=info)
    page.get_by_role("button", name="Reset").click()
    page.evaluate(DROP_FILE, ["latent.png", "image/png", base64.b64encode((tmp_path / "latent.png").read_bytes())
                              .decode()])
    expect(node(page, "hires")).to_be_visible()
    nodes = page.evaluate("window.diffblocks.workflow()")["nodes"]
    assert nodes["run"]["inputs"]["output_type"] == "latent"
    assert nodes["scale"] == {"type": "ScaleLatents", "inputs": {"latents": {"node": "run", "output": "images"},
                                                                 "scale_by": 2, "method": "bicubic"}}
    assert nodes["hires"]["inputs"]["image"] == {"node": "scale", "output": "latents"}
    assert "output_type" not in nodes["hires"]["inputs"]
    run(page)
    assert main(["run", "--from-image", str(tmp_path / "latent.png"), "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "cli-latent.png")]) == 0
    drawn = pixels(server, shown_image(page))
    assert drawn.shape == (64, 64, 3)
    assert np.array_equal(drawn, np.asarray(Image.open(tmp_path / "cli-latent.png").convert("RGB")))


def test_a_comfyui_hires_fix_becomes_its_two_passes_with_the_second_samplers_steps_seed_and_denoise(
        page, server, tmp_path, shots):
    """ComfyUI's hires fix: a second KSampler painting the first one's result again, enlarged on its way, in latent
    space (LatentUpscaleBy) or as an image (an upscale model, then ImageScaleBy, then VAEEncode). The first becomes
    the first pass's latents, a ScaleLatents node with its method, and an image-to-image pass with the second
    KSampler's denoise, steps and seed (bislerp, not here, a lanczos ScaleImage, said in the notice); the second a
    lanczos ScaleImage by the whole factor (the model's from its name, 4x), the notice saying what enlarges the image
    instead. Run, the page shows the enlarged image."""
    second = {"class_type": "KSampler", "inputs": {**COMFY_PROMPT["3"]["inputs"], "seed": 9, "steps": 4, "denoise": 0.6}}
    latent = {**COMFY_PROMPT, "10": {"class_type": "LatentUpscaleBy", "inputs": {
        "upscale_method": "nearest-exact", "scale_by": 1.5, "samples": ["3", 0]}},
        "11": {**second, "inputs": {**second["inputs"], "latent_image": ["10", 0]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["4", 2]}},
        "13": {"class_type": "SaveImage", "inputs": {"filename_prefix": "hires", "images": ["12", 0]}}}
    pixels_way = {**latent, "10": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}},
                  "14": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["10", 0], "image": ["8", 0]}},
                  "15": {"class_type": "ImageScaleBy", "inputs": {"upscale_method": "lanczos", "scale_by": 0.375,
                                                                   "image": ["14", 0]}},
                  "16": {"class_type": "VAEEncode", "inputs": {"pixels": ["15", 0], "vae": ["4", 2]}},
                  "11": {**second, "inputs": {**second["inputs"], "latent_image": ["16", 0]}}}
    expected = json.loads(json.dumps(DIGIT_FOUR))
    again = {k: v for k, v in expected["nodes"]["run"]["inputs"].items() if k not in ("width", "height")}
    expected["nodes"]["scale"] = {"type": "ScaleImage", "inputs": {"image": {"node": "run", "output": "images"},
                                                                   "scale_by": 1.5, "method": "lanczos"}}
    expected["nodes"]["hires"] = {"type": "preset:sd15-image2image", "inputs": {
        **again, "image": {"node": "scale", "output": "image"}, "strength": 0.6, "num_inference_steps": 4, "seed": 9}}
    in_latents = json.loads(json.dumps(expected))
    in_latents["nodes"]["run"]["inputs"]["output_type"] = "latent"
    in_latents["nodes"]["scale"] = {"type": "ScaleLatents", "inputs": {"latents": {"node": "run", "output": "images"},
                                                                       "scale_by": 1.5, "method": "nearest-exact"}}
    in_latents["nodes"]["hires"]["inputs"]["image"] = {"node": "scale", "output": "latents"}
    bislerp = json.loads(json.dumps(latent))
    bislerp["10"]["inputs"]["upscale_method"] = "bislerp"
    open_editor(page, server)
    for name, prompt, how, workflow in (("latent", latent, None, in_latents),
                                        ("bislerp", bislerp, "the latent upscale by bislerp", expected),
                                        ("pixels", pixels_way, "the 4x-UltraSharp.pth upscaler", expected)):
        page.get_by_test_id("load-input").set_input_files(files=[{
            "name": f"{name}.json", "mimeType": "application/json", "buffer": json.dumps(prompt).encode()}])
        expect(node(page, "hires")).to_be_visible()
        if how:
            expect(page.get_by_test_id("notice")).to_contain_text(f"left out: {how} (lanczos instead)")
        else:
            expect(page.get_by_test_id("notice")).not_to_contain_text("lanczos instead")
        assert page.evaluate("window.diffblocks.workflow()") == workflow, name
        page.get_by_role("button", name="Reset").click()
    page.get_by_test_id("load-input").set_input_files(files=[{
        "name": "latent.json", "mimeType": "application/json", "buffer": json.dumps(latent).encode()}])
    expect(node(page, "hires")).to_be_visible()
    run(page)
    assert pixels(server, shown_image(page)).shape == (48, 48, 3)
    page.screenshot(path=str(shots / "36-comfyui-hires-import.png"))
