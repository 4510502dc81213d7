"""The node editor in a real browser against a real `diffblocks serve` (see conftest.py for the set-up)."""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request

import numpy as np
from PIL import Image

from page_helpers import DEFAULT_NODES, drag, expect, node, open_editor, pixels, run, shown_image, widget


def test_page_loads_without_console_errors_and_shows_the_default_workflow(page, server, shots):
    seconds = open_editor(page, server)
    for node_id in DEFAULT_NODES:
        expect(node(page, node_id)).to_be_visible()
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit seven")
    expect(widget(page, "steps", "num_inference_steps")).to_have_value("4")
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert workflow["nodes"]["denoise"]["inputs"]["latents"] == {"node": "latents", "output": "latents"}
    expect(page.locator(".react-flow__edge")).to_have_count(sum(
        isinstance(value, dict) and "node" in value for spec in workflow["nodes"].values()
        for value in spec["inputs"].values()) + 1)  # + the wire into the Output node
    expect(page.locator('.palette-item[data-type="StableDiffusionTextEncoderStep"]')).to_be_visible()
    expect(page.locator('.palette-item[data-type="DDIMScheduler"]')).to_be_hidden()  # its group starts folded
    expect(page.locator('.palette-item[data-type="ScaleImage"] .palette-title')).to_be_visible()  # open: a 2nd pass
    page.get_by_placeholder("Search nodes…").fill("ddim")
    expect(page.locator('.palette-item[data-type="DDIMScheduler"]')).to_be_visible()
    expect(page.locator('.palette-item[data-type="StableDiffusionTextEncoderStep"]')).to_have_count(0)
    page.get_by_placeholder("Search nodes…").fill("ip adapter")  # titles split class names into words
    expect(page.locator('.palette-item[data-type="StableDiffusionXLIPAdapterStep"] .palette-title')).to_have_text(
        "XL IP Adapter")
    expect(page.locator('.palette-item[data-type="FluxIPAdapterStep"] .palette-title')).to_have_text("Flux IP Adapter")
    page.get_by_placeholder("Search nodes…").fill("")
    page.screenshot(path=str(shots / "01-load.png"))
    assert page.problems == []
    print(f"page load to a ready editor: {seconds:.2f} s")


def test_run_shows_progress_and_the_image_the_api_computes(page, server, shots):
    open_editor(page, server)
    job = run(page)
    sha = shown_image(page)
    seen = page.evaluate("window.__seen")
    assert seen["progress"] >= 1, seen
    assert "running" in seen["states"]["denoise"], seen
    expect(node(page, "decode").get_by_test_id("node-state")).to_have_text(re.compile(r"^done"))
    expect(page.locator(".gallery img")).to_have_count(1)
    page.screenshot(path=str(shots / "02-run.png"))

    # the same workflow through the API alone, computed afresh
    server.request("POST", "/api/free")
    info = server.run_job(page.evaluate("window.diffblocks.workflow()"))
    assert info["status"] == "done", info
    assert info["job"] != job
    api_sha = info["outputs"]["decode"]["images"][0]["artifact"]
    np.testing.assert_array_equal(pixels(server, sha), pixels(server, api_sha))
    assert page.problems == []

    # timing, models loaded and the prompt encoded: a seed each run has not seen, so both compute the
    # latents, the denoise loop and the decode
    widget(page, "latents", "seed").fill("21")
    started = time.monotonic()
    timed_job = run(page)
    shown_image(page)
    page_seconds = time.monotonic() - started
    page_job = server.request("GET", f"/api/jobs/{timed_job}").get("timings", {}).get("seconds")
    workflow = page.evaluate("window.diffblocks.workflow()")
    workflow["nodes"]["latents"]["inputs"]["seed"] = 22
    started = time.monotonic()
    info = server.run_job(workflow)
    api_seconds = time.monotonic() - started
    assert info["status"] == "done"
    print(f"Run to image: page {page_seconds:.2f} s (the job itself {page_job} s), "
          f"API alone {api_seconds:.2f} s (the job itself {info.get('timings', {}).get('seconds')} s)")


def test_the_page_runs_the_same_against_an_engine_in_its_own_process(page, make_server, tmp_path, shots):
    """``diffblocks serve --engine-process``: progress, the image, and the same pixels as the API computes."""
    served = make_server(tmp_path, flags=("--engine-process",)).start()
    try:
        open_editor(page, served)
        run(page)
        sha = shown_image(page)
        assert page.evaluate("window.__seen")["progress"] >= 1
        page.screenshot(path=str(shots / "02b-run-engine-process.png"))
        workflow = page.evaluate("window.diffblocks.workflow()")
        served.request("POST", "/api/free")
        info = served.run_job(workflow)
        assert info["status"] == "done", info
        np.testing.assert_array_equal(pixels(served, sha), pixels(served, info["outputs"]["decode"]["images"][0]["artifact"]))
        assert page.problems == []
    finally:
        served.stop()


def test_a_new_seed_reruns_from_the_latents_and_keeps_the_text_encoding(page, server, shots):
    open_editor(page, server)
    run(page)
    first = shown_image(page)
    widget(page, "latents", "seed").fill("1")
    run(page)
    expect(node(page, "text").get_by_test_id("node-state")).to_have_text("cached")
    expect(node(page, "latents").get_by_test_id("node-state")).to_have_text(re.compile(r"^done"))
    expect(node(page, "denoise").get_by_test_id("node-state")).to_have_text(re.compile(r"^done"))
    second = shown_image(page)
    assert second != first
    assert not np.array_equal(pixels(server, first), pixels(server, second))
    expect(page.locator(".gallery img")).to_have_count(2)
    page.screenshot(path=str(shots / "03-new-seed.png"))

    # a click shows a gallery image large, newest first; the arrow keys step through them, Escape closes
    page.locator(".gallery-item").first.click()
    viewer = page.get_by_role("dialog", name="image viewer")
    expect(viewer.locator("img")).to_have_attribute("data-artifact", second)
    page.keyboard.press("ArrowRight")
    expect(viewer.locator("img")).to_have_attribute("data-artifact", first)
    page.keyboard.press("Escape")
    expect(viewer).to_have_count(0)


def test_a_bad_value_is_marked_on_its_node_and_input_before_running(page, server, shots):
    open_editor(page, server)
    widget(page, "steps", "num_inference_steps").fill("0")
    row = node(page, "steps").locator('[data-input="num_inference_steps"]')
    expect(row.locator(".input-error")).to_contain_text("num_inference_steps")
    expect(row).to_have_class(re.compile("has-error"))
    expect(node(page, "steps").locator(".block-node")).to_have_class(re.compile("has-error"))
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "invalid")
    assert page.get_by_test_id("run-status").get_attribute("data-job") == ""
    page.screenshot(path=str(shots / "04-invalid.png"))

    widget(page, "steps", "num_inference_steps").fill("3")
    expect(row.locator(".input-error")).to_have_count(0)


def test_a_node_from_the_palette_is_wired_and_a_wrong_wire_is_refused(page, server, shots):
    open_editor(page, server)
    page.get_by_placeholder("Search nodes…").fill("preview")
    page.locator('.palette-item[data-type="PreviewImage"]').drag_to(
        page.locator(".react-flow__pane"), target_position={"x": 40, "y": 560})
    added = node(page, "preview_image")
    expect(added).to_be_visible()
    edges = page.locator(".react-flow__edge")
    count = edges.count()

    # a components bundle into an image input: refused
    drag(page, node(page, "load").locator('[data-output="components"] .react-flow__handle'),
         added.locator('[data-input="images"] .react-flow__handle'))
    expect(edges).to_have_count(count)
    # the decoded images into it: taken
    drag(page, node(page, "decode").locator('[data-output="images"] .react-flow__handle'),
         added.locator('[data-input="images"] .react-flow__handle'))
    expect(edges).to_have_count(count + 1)
    expect(added.locator(".io-link")).to_have_text("← decode.images")
    run(page)
    expect(added.locator("img.output-image")).to_have_count(1)
    page.screenshot(path=str(shots / "05-palette-node.png"))


def test_an_uploaded_image_becomes_the_load_image_input(page, server, tmp_path):
    open_editor(page, server)
    page.locator('.palette-item[data-type="LoadImage"]').dblclick()
    added = node(page, "load_image")
    expect(added).to_be_visible()
    expect(added.locator('[data-input="image"] .input-error')).to_have_count(1)  # required, not yet given
    picture = tmp_path / "three.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(picture)
    added.locator('[data-input="image"] input[type=file]').set_input_files(str(picture))
    expect(added.locator('[data-input="image"] img')).to_be_visible()
    expect(added.locator('[data-input="image"] .input-error')).to_have_count(0)
    value = page.evaluate("window.diffblocks.workflow()")["nodes"]["load_image"]["inputs"]["image"]
    assert np.array_equal(pixels(server, value["artifact"]), np.asarray(Image.open(picture).convert("RGB")))


def test_a_node_that_fails_shows_its_message(page, server, tmp_path, shots):
    open_editor(page, server)
    missing = tmp_path / "no-such-model"
    node(page, "load").locator('[data-input="repo"] input[type=text]').fill(str(missing))
    run(page, expected="failed")
    load = node(page, "load")
    expect(load.get_by_test_id("node-state")).to_have_text("failed")
    expect(load.locator(".node-error, .input-error")).to_contain_text(str(missing))
    expect(node(page, "decode").get_by_test_id("node-state")).to_have_count(0)  # never ran
    page.screenshot(path=str(shots / "06-failed.png"))


def test_cancel_stops_a_running_job(page, server, shots):
    open_editor(page, server)
    # many steps and a seed no other test uses, so the denoise loop runs long enough to be cancelled
    widget(page, "steps", "num_inference_steps").fill("500")
    widget(page, "latents", "seed").fill("77")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(node(page, "denoise").get_by_test_id("node-state")).to_have_text(re.compile(r"^running \d+/500"))
    page.screenshot(path=str(shots / "07-running.png"))
    page.get_by_role("button", name="Cancel").click()
    status = page.get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", "cancelled")
    expect(node(page, "denoise").get_by_test_id("node-state")).to_have_text("cancelled")
    assert server.request("GET", f"/api/jobs/{status.get_attribute('data-job')}")["status"] == "cancelled"
    page.screenshot(path=str(shots / "08-cancelled.png"))


def test_save_then_load_brings_back_the_same_graph(page, server, tmp_path):
    open_editor(page, server)
    node(page, "text").locator('[data-input="prompt"] textarea').fill("a handwritten digit three")
    widget(page, "latents", "seed").fill("5")
    with page.expect_download() as download:
        page.get_by_role("button", name="Save").click()
    saved = tmp_path / "workflow.json"
    download.value.save_as(saved)
    document = json.loads(saved.read_text())
    assert document["nodes"]["text"]["inputs"]["prompt"] == "a handwritten digit three"

    page.get_by_role("button", name="Reset").click()
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit seven")
    page.get_by_test_id("load-input").set_input_files(str(saved))
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit three")
    assert page.evaluate("window.diffblocks.document()") == document
    expect(page.locator(".react-flow__edge")).to_have_count(len(page.evaluate("window.diffblocks.state().edges")))


DROP_LINK = """(url) => {
  const data = new DataTransfer();
  data.setData('text/uri-list', url);
  const target = document.querySelector('.react-flow');
  target.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
}"""
DROP_FILE = """([name, type, base64]) => {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const target = document.querySelector('.react-flow');
  const box = target.getBoundingClientRect();
  target.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true,
                                               clientX: box.x + box.width / 2, clientY: box.y + box.height / 2 }));
}"""


def test_an_output_png_brings_back_the_graph_that_made_it(page, server, tmp_path):
    """The server writes the job's workflow, with the page's layout, into the output PNG: dragged from the gallery,
    loaded (the Load button) or dropped on the canvas as a file, the image gives back that graph; an image without one
    dropped on the canvas becomes a Load Image node, and the Load button says it holds no workflow."""
    import base64

    open_editor(page, server)
    node(page, "text").locator('[data-input="prompt"] textarea').fill("a handwritten digit three")
    widget(page, "latents", "seed").fill("5")
    document = page.evaluate("window.diffblocks.document()")
    run(page)
    png = tmp_path / "three.png"
    with urllib.request.urlopen(f"{server.url}/api/artifacts/{shown_image(page)}", timeout=60) as response:
        png.write_bytes(response.read())
    page.get_by_role("button", name="Reset").click()  # the gallery's image dragged onto the canvas
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit seven")
    page.evaluate(DROP_LINK, page.locator(".gallery-item img").first.get_attribute("src"))
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit three")
    assert page.evaluate("window.diffblocks.document()") == document

    page.get_by_role("button", name="Reset").click()
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit seven")
    page.get_by_test_id("load-input").set_input_files(str(png))
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit three")
    assert page.evaluate("window.diffblocks.document()") == document

    page.get_by_role("button", name="Reset").click()
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit seven")
    page.evaluate(DROP_FILE, ["three.png", "image/png", base64.b64encode(png.read_bytes()).decode()])
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit three")
    assert page.evaluate("window.diffblocks.document()") == document

    # an image without a workflow: a Load Image node holding it, where it was dropped; the graph otherwise kept
    plain = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(plain, format="PNG")
    page.evaluate(DROP_FILE, ["plain.png", "image/png", base64.b64encode(plain.getvalue()).decode()])
    expect(node(page, "load_image")).to_be_visible()
    nodes = page.evaluate("window.diffblocks.workflow()")["nodes"]
    assert {key: spec for key, spec in nodes.items() if key != "load_image"} == document["nodes"]
    assert (pixels(server, nodes["load_image"]["inputs"]["image"]["artifact"]) == (10, 200, 30)).all()
    page.get_by_test_id("load-input").set_input_files(files=[{"name": "plain.png", "mimeType": "image/png",
                                                              "buffer": plain.getvalue()}])
    expect(page.get_by_text("could not load plain.png: this image holds no workflow")).to_be_visible()  # Load: workflows


# what an A1111 or ComfyUI image of a "4" (Euler a, 6 steps, CFG 5, seed 3, 32 px) becomes on the page
DIGIT_FOUR = {"nodes": {
    "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
    "cfg": {"type": "ClassifierFreeGuidance", "inputs": {"guidance_scale": 5}},
    "sampler": {"type": "EulerAncestralDiscreteScheduler", "inputs": {"scheduler": {"node": "load", "output": "scheduler"}}},
    "run": {"type": "preset:sd15-text2image", "inputs": {
        "components": {"node": "load", "output": "components"}, "prompt": "a handwritten digit four",
        "negative_prompt": "blurry, faint", "num_inference_steps": 6, "seed": 3, "width": 32, "height": 32,
        "guider": {"node": "cfg", "output": "guider"}, "scheduler": {"node": "sampler", "output": "scheduler"}}}}}


def drop_digit_four(page, server, path, info):
    """Write a PNG holding ``info`` (another tool's record of the "4") at ``path``, drop it on a fresh editor and
    check that it became DIGIT_FOUR."""
    import base64

    Image.new("RGB", (32, 32)).save(path, pnginfo=info)
    open_editor(page, server)
    page.evaluate(DROP_FILE, [path.name, "image/png", base64.b64encode(path.read_bytes()).decode()])
    expect(node(page, "run").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit four")
    assert page.evaluate("window.diffblocks.workflow()") == DIGIT_FOUR


def test_an_a1111_png_becomes_a_text_to_image_graph_that_draws_what_run_draws(page, server, tmp_path):
    """An image holding only A1111's parameters (A1111's, Civitai's, or ``diffblocks run``'s), dropped on the canvas:
    a preset graph on the page's model with its prompt (its <lora:...> taken out, as A1111 does), negative prompt,
    steps, seed, size, CFG scale and sampler; run, it draws the pixels ``diffblocks run --from-image`` draws from the
    same image. The page says that the checkpoint and LoRA it names are not on the server."""
    from PIL.PngImagePlugin import PngInfo

    from diffblocks.cli import main

    info = PngInfo()
    info.add_text("parameters", "a handwritten digit four<lora:ink:0.8>\nNegative prompt: blurry, faint\nSteps: 6, "
                                "Sampler: Euler a, CFG scale: 5, Seed: 3, Size: 32x32, Model hash: 6ce0161689, "
                                "Model: tiny_digits, "
                                'Lora hashes: "ink: abc, chalk: def", Version: v1.10.1')
    drop_digit_four(page, server, tmp_path / "a1111.png", info)
    expect(page.get_by_test_id("notice")).to_contain_text(
        "A1111's checkpoint 'tiny_digits' is not among the server's checkpoints (serve --models-dir): the graph loads "
        "embedded; LoRA 'ink' left out")
    run(page)
    assert main(["run", "--from-image", str(tmp_path / "a1111.png"), "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "cli.png")]) == 0
    assert np.array_equal(pixels(server, shown_image(page)), np.asarray(Image.open(tmp_path / "cli.png").convert("RGB")))


COMFY_PROMPT = {  # ComfyUI's default text-to-image graph in its API format, as its images hold it
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 3, "steps": 6, "cfg": 5.0, "sampler_name": "euler_ancestral", "scheduler": "normal", "denoise": 1.0,
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a handwritten digit four", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, faint", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}


def comfy_editor_graph(object_links=False):
    """COMFY_PROMPT as ComfyUI's editor saves it: widget values by position, links listed apart (as lists, or as
    objects in its newer schema), the seed from a PrimitiveNode wired to the KSampler's seed, the positive prompt
    through a Reroute, and a muted second KSampler."""
    links = [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
             [4, 11, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"],
             [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"], [10, 10, 0, 3, 4, "INT"],
             [11, 6, 0, 11, 0, "CONDITIONING"]]
    if object_links:
        keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
        links = [dict(zip(keys, link)) for link in links]

    def wired(*names_and_links):
        return [{"name": name, "type": "*", "link": link} for name, link in names_and_links]

    nodes = [
        {"id": 3, "type": "KSampler", "mode": 0,
         "widgets_values": [99, "randomize", 6, 5, "euler_ancestral", "normal", 1],
         "inputs": wired(("model", 1), ("positive", 4), ("negative", 6), ("latent_image", 2))
         + [{"name": "seed", "type": "INT", "link": 10, "widget": {"name": "seed"}}]},
        {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["v1-5-pruned-emaonly.safetensors"]},
        {"id": 5, "type": "EmptyLatentImage", "widgets_values": [32, 32, 1]},
        {"id": 6, "type": "CLIPTextEncode", "inputs": wired(("clip", 3)),
         "widgets_values": ["a handwritten digit four"]},
        {"id": 7, "type": "CLIPTextEncode", "inputs": wired(("clip", 5)), "widgets_values": ["blurry, faint"]},
        {"id": 8, "type": "VAEDecode", "inputs": wired(("samples", 7), ("vae", 8))},
        {"id": 9, "type": "SaveImage", "inputs": wired(("images", 9)), "widgets_values": ["ComfyUI"]},
        {"id": 10, "type": "PrimitiveNode", "widgets_values": [3, "fixed"]},
        {"id": 11, "type": "Reroute", "inputs": wired(("", 11))},
        {"id": 12, "type": "KSampler", "mode": 2, "widgets_values": [1, "fixed", 50, 8, "euler", "normal", 1]},
    ]
    return {"last_node_id": 12, "last_link_id": 11, "nodes": nodes, "links": links, "groups": [], "version": 0.4}


def test_a_comfyui_image_becomes_the_same_text_to_image_graph_with_its_settings(page, server, tmp_path):
    """An image ComfyUI made (its graph in the API format as "prompt", its editor's layout as "workflow"), its
    "Save (API format)" file, or its editor's own file: the text-to-image preset with the KSampler's seed, steps, CFG
    and sampler, the latent's size and both prompts, which draws what ``diffblocks run`` draws with the same
    settings. The page says that ComfyUI's checkpoint is not among the server's (it has no model folders)."""
    from PIL.PngImagePlugin import PngInfo

    from diffblocks.cli import main

    info = PngInfo()
    info.add_text("prompt", json.dumps(COMFY_PROMPT))
    info.add_text("workflow", json.dumps(comfy_editor_graph()))
    drop_digit_four(page, server, tmp_path / "comfy.png", info)
    notice = ("ComfyUI's checkpoint 'v1-5-pruned-emaonly.safetensors' is not among the server's checkpoints (serve "
              "--models-dir): the graph loads embedded")
    expect(page.get_by_test_id("notice")).to_contain_text(notice)
    run(page)
    assert main(["run", "--prompt", "a handwritten digit four", "--negative-prompt", "blurry, faint", "--steps", "6",
                 "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler-a", "--height", "32", "--width", "32",
                 "--device", "cpu", "--no-progress", "--out", str(tmp_path / "cli.png")]) == 0
    assert np.array_equal(pixels(server, shown_image(page)), np.asarray(Image.open(tmp_path / "cli.png").convert("RGB")))

    for name, document in (("api.json", COMFY_PROMPT), ("ui.json", comfy_editor_graph()),
                           ("ui-1.json", comfy_editor_graph(object_links=True))):
        page.get_by_role("button", name="Reset").click()
        expect(page.get_by_test_id("notice")).to_have_count(0)
        page.get_by_test_id("load-input").set_input_files(files=[{"name": name, "mimeType": "application/json",
                                                                  "buffer": json.dumps(document).encode()}])
        expect(page.get_by_test_id("notice")).to_contain_text(notice)
        assert page.evaluate("window.diffblocks.workflow()") == DIGIT_FOUR, name
    base = {"class_type": "KSamplerAdvanced", "inputs": {  # ComfyUI's SDXL example: a base pass, then a refiner's
        "add_noise": "enable", "noise_seed": 3, "steps": 6, "cfg": 5.0, "sampler_name": "euler_ancestral",
        "scheduler": "normal", "start_at_step": 0, "end_at_step": 5, "return_with_leftover_noise": "enable",
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}
    refiner = {"class_type": "KSamplerAdvanced", "inputs": {**base["inputs"], "start_at_step": 5, "end_at_step": 10000,
                                                            "model": ["11", 0], "latent_image": ["3", 0]}}
    with_refiner = {**COMFY_PROMPT, "3": base, "10": refiner, "8": {"class_type": "VAEDecode", "inputs": {
        "samples": ["10", 0], "vae": ["4", 2]}}, "11": {"class_type": "CheckpointLoaderSimple", "inputs": {
        "ckpt_name": "sd_xl_refiner_1.0.safetensors"}}}
    page.get_by_role("button", name="Reset").click()
    page.get_by_test_id("load-input").set_input_files(files=[{"name": "sdxl.json", "mimeType": "application/json",
                                                              "buffer": json.dumps(with_refiner).encode()}])
    expect(page.get_by_test_id("notice")).to_contain_text(
        f"{notice}; left out: the refiner pass (1 more KSamplerAdvanced)")
    assert page.evaluate("window.diffblocks.workflow()") == DIGIT_FOUR
    image2image = {**COMFY_PROMPT, "5": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}}
    page.get_by_test_id("load-input").set_input_files(files=[{"name": "i2i.json", "mimeType": "application/json",
                                                              "buffer": json.dumps(image2image).encode()}])
    expect(page.get_by_text("could not load i2i.json: this ComfyUI graph does not start from an EmptyLatentImage")
           ).to_be_visible()
    assert page.evaluate("window.diffblocks.workflow()") == DIGIT_FOUR  # nothing lost


def test_the_page_reconnects_after_a_server_restart(page, make_server, tmp_path, shots):
    own = make_server(tmp_path).start()  # its own server: this test stops it
    try:
        open_editor(page, own)
        prompt = node(page, "text").locator('[data-input="prompt"] textarea')
        prompt.fill("a handwritten digit two")
        own.stop()
        expect(page.get_by_test_id("connection")).to_have_text("reconnecting…")
        page.screenshot(path=str(shots / "09-reconnecting.png"))
        own.start()
        expect(page.get_by_test_id("connection")).to_have_text("connected", timeout=60_000)
        expect(prompt).to_have_value("a handwritten digit two")
        run(page)
        shown_image(page)
        page.screenshot(path=str(shots / "10-reconnected.png"))
    finally:
        own.stop()

