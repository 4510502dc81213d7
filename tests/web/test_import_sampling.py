"""How another tool's graph or image samples and reads its prompt, imported: ComfyUI's ModelSamplingDiscrete (a
v-prediction checkpoint whose file does not say so) and ``diffblocks run``'s Prediction type and Zero SNR become the
scheduler node's ``prediction_type`` and ``rescale_betas_zero_snr``; Karras spacing its ``use_karras_sigmas``;
A1111's Clip skip and ComfyUI's CLIPSetLastLayer the preset's ``clip_skip``; A1111's weights and BREAK read by the
preset as by ``diffblocks run``. Each draws what ``diffblocks run`` draws."""

from __future__ import annotations

import base64
import json

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from page_helpers import expect, node, open_editor, pixels, run, shown_image
from test_editor import COMFY_PROMPT, DROP_FILE

V_PREDICTION = {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}


def image_with(path, key, text):
    """A blank PNG at ``path`` holding ``text`` as its ``key`` chunk (A1111's "parameters", ComfyUI's "prompt")."""
    info = PngInfo()
    info.add_text(key, text)
    Image.new("RGB", (32, 32)).save(path, pnginfo=info)
    return path


def run_draws_as_cli(page, server, path):
    """Run the page's workflow; it must draw what ``diffblocks run --from-image`` draws from ``path``."""
    from diffblocks.cli import main

    run(page)
    out = path.with_name(path.stem + "-cli.png")
    assert main(["run", "--from-image", str(path), "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    assert np.array_equal(pixels(server, shown_image(page)), np.asarray(Image.open(out).convert("RGB")))


def drop(page, server, path, again=False):
    """Drop the image at ``path`` on a fresh editor (``again``: on this one, reset); returns the workflow's nodes."""
    if again:
        page.get_by_role("button", name="Reset").click()
    else:
        open_editor(page, server)
    page.evaluate(DROP_FILE, [path.name, "image/png", base64.b64encode(path.read_bytes()).decode()])
    expect(node(page, "sampler")).to_be_visible()
    return page.evaluate("window.diffblocks.workflow()")["nodes"]


def test_comfyuis_model_sampling_is_the_scheduler_nodes_and_draws_what_run_draws(page, server, tmp_path, shots):
    """ModelSamplingDiscrete (v_prediction, zsnr) on the model's way: its settings on the scheduler node, which is
    Euler's where the KSampler's sampler has no node (said in the notice, as before it said nothing)."""
    from diffblocks.cli import main

    graph = json.loads(json.dumps(COMFY_PROMPT))
    graph["20"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"sampling": "v_prediction", "zsnr": True,
                                                                     "model": ["4", 0]}}
    graph["3"]["inputs"].update(model=["20", 0], sampler_name="dpmpp_sde")
    info = PngInfo()
    info.add_text("prompt", json.dumps(graph))
    Image.new("RGB", (32, 32)).save(tmp_path / "vpred.png", pnginfo=info)
    nodes = drop(page, server, tmp_path / "vpred.png")
    assert nodes["sampler"] == {"type": "EulerDiscreteScheduler", "inputs": {
        "scheduler": {"node": "load", "output": "scheduler"}, **V_PREDICTION}}
    assert nodes["run"]["inputs"]["scheduler"] == {"node": "sampler", "output": "scheduler"}
    expect(page.get_by_test_id("notice")).to_contain_text("the sampler 'dpmpp_sde' (Euler here)")
    assert "ModelSamplingDiscrete" not in page.get_by_test_id("notice").inner_text()  # carried over, not left out
    run(page)
    page.screenshot(path=str(shots / "40-model-sampling.png"))
    assert main(["run", "--prompt", "a handwritten digit four", "--negative-prompt", "blurry, faint", "--steps", "6",
                 "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler", "--prediction-type", "v_prediction",
                 "--zero-snr", "--height", "32", "--width", "32", "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "cli.png")]) == 0
    assert np.array_equal(pixels(server, shown_image(page)),
                          np.asarray(Image.open(tmp_path / "cli.png").convert("RGB")))


def test_an_image_run_drew_with_a_prediction_type_draws_again_on_the_page(page, server, tmp_path):
    """``diffblocks run --prediction-type v --zero-snr``'s image, dropped on the page: its own sampler (DDIM) with
    those settings, which draws the same pixels again."""
    from diffblocks.cli import main

    assert main(["run", "--prompt", "a handwritten digit four", "--steps", "6", "--seed", "3", "--prediction-type", "v",
                 "--zero-snr", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "cli.png")]) == 0
    nodes = drop(page, server, tmp_path / "cli.png")
    assert nodes["sampler"]["type"] == "DDIMScheduler"
    assert {k: nodes["sampler"]["inputs"].get(k) for k in V_PREDICTION} == V_PREDICTION
    run(page)
    assert np.array_equal(pixels(server, shown_image(page)),
                          np.asarray(Image.open(tmp_path / "cli.png").convert("RGB")))


def test_karras_spacing_in_a1111s_and_comfyuis_images_is_the_scheduler_nodes(page, server, tmp_path):
    """The commonest settings of both: DPM++ 2M with Karras sigmas (A1111's older "DPM++ 2M Karras", ComfyUI's
    dpmpp_2m sampler with its karras scheduler), DPM++ 2M SDE, Heun, DPM2 a, and Euler with ComfyUI's beta and
    sgm_uniform schedulers: the scheduler node with use_karras_sigmas (and the SDE algorithm; use_beta_sigmas;
    trailing timesteps), which draws what ``diffblocks run --from-image`` draws."""
    graph = json.loads(json.dumps(COMFY_PROMPT))
    graph["3"]["inputs"].update(sampler_name="dpmpp_2m", scheduler="karras")
    sde = json.loads(json.dumps(graph))
    sde["3"]["inputs"]["sampler_name"] = "dpmpp_2m_sde_gpu"
    beta = json.loads(json.dumps(graph))
    beta["3"]["inputs"].update(sampler_name="euler", scheduler="beta")
    sgm = json.loads(json.dumps(graph))
    sgm["3"]["inputs"].update(sampler_name="euler", scheduler="sgm_uniform")
    settings = {"use_karras_sigmas": True}
    with_sde = {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"}
    a1111 = "a handwritten digit four\nNegative prompt: blurry, faint\nSteps: 6, Sampler: "
    for index, (name, key, text, expected) in enumerate((
            ("a1111.png", "parameters", a1111 + "DPM++ 2M Karras, CFG scale: 5, Seed: 3, Size: 32x32, Model: embedded",
             settings),
            ("comfy.png", "prompt", json.dumps(graph), settings),
            ("sde.png", "parameters", a1111 + "DPM++ 2M SDE, Schedule type: Karras, CFG scale: 5, Seed: 3, Size: 32x32",
             with_sde),
            ("comfy-sde.png", "prompt", json.dumps(sde), with_sde),
            ("heun.png", "parameters", a1111 + "Heun, Schedule type: Karras, CFG scale: 5, Seed: 3, Size: 32x32",
             settings),
            ("dpm2a.png", "parameters", a1111 + "DPM2 a Karras, CFG scale: 5, Seed: 3, Size: 32x32", settings),
            ("beta.png", "prompt", json.dumps(beta), {"use_beta_sigmas": True}),
            ("sgm.png", "prompt", json.dumps(sgm), {"timestep_spacing": "trailing"}))):
        nodes = drop(page, server, image_with(tmp_path / name, key, text), again=index > 0)
        kind = {"heun.png": "HeunDiscreteScheduler", "beta.png": "EulerDiscreteScheduler",
                "sgm.png": "EulerDiscreteScheduler", "dpm2a.png": "KDPM2AncestralDiscreteScheduler"}.get(
            name, "DPMSolverMultistepScheduler")
        assert nodes["sampler"] == {"type": kind, "inputs": {
            "scheduler": {"node": "load", "output": "scheduler"}, **expected}}
        run_draws_as_cli(page, server, tmp_path / name)


def test_clip_skip_in_a1111s_and_comfyuis_images_is_the_presets(page, server, tmp_path):
    """A1111's Clip skip 2 and ComfyUI's CLIPSetLastLayer -2 (on the prompts' CLIP): the preset's clip_skip 1, which
    draws what ``diffblocks run --from-image`` draws."""
    graph = json.loads(json.dumps(COMFY_PROMPT))
    graph["20"] = {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["4", 1]}}
    graph["6"]["inputs"]["clip"] = graph["7"]["inputs"]["clip"] = ["20", 0]
    for index, (name, key, text) in enumerate((
            ("a1111.png", "parameters", "a handwritten digit four\nNegative prompt: blurry, faint\nSteps: 6, Sampler: "
                                        "Euler a, CFG scale: 5, Seed: 3, Size: 32x32, Model: embedded, Clip skip: 2"),
            ("comfy.png", "prompt", json.dumps(graph)))):
        nodes = drop(page, server, image_with(tmp_path / name, key, text), again=index > 0)
        assert nodes["run"]["inputs"]["clip_skip"] == 1
        if index:
            assert "CLIPSetLastLayer" not in page.get_by_test_id("notice").inner_text()  # carried over
        run_draws_as_cli(page, server, tmp_path / name)


def test_a_weighted_a1111_prompt_draws_on_the_page_what_run_draws(page, server, tmp_path):
    """Weights and BREAK in an A1111 prompt: the page's preset reads them as ``diffblocks run --from-image`` does
    (A1111's syntax in both), so the pixels are the same."""
    from diffblocks.cli import main

    info = PngInfo()
    info.add_text("parameters", "a (handwritten:1.3) digit BREAK four\nNegative prompt: [blurry]\nSteps: 6, Sampler: "
                                "Euler a, CFG scale: 5, Seed: 3, Size: 32x32, Model: embedded")
    Image.new("RGB", (32, 32)).save(tmp_path / "weighted.png", pnginfo=info)
    open_editor(page, server)
    page.evaluate(DROP_FILE, ["weighted.png", "image/png", base64.b64encode((tmp_path / "weighted.png").read_bytes())
                              .decode()])
    expect(node(page, "run").locator('[data-input="prompt"] textarea')).to_have_value(
        "a (handwritten:1.3) digit BREAK four")
    run(page)
    assert main(["run", "--from-image", str(tmp_path / "weighted.png"), "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "cli.png")]) == 0
    assert main(["run", "--from-image", str(tmp_path / "weighted.png"), "--device", "cpu", "--no-progress",
                 "--plain-prompts", "--out", str(tmp_path / "plain.png")]) == 0
    drawn = pixels(server, shown_image(page))
    assert np.array_equal(drawn, np.asarray(Image.open(tmp_path / "cli.png").convert("RGB")))
    assert not np.array_equal(drawn, np.asarray(Image.open(tmp_path / "plain.png").convert("RGB")))


def test_the_notice_names_the_passes_an_a1111_image_had_that_the_page_does_not_run(page, server, tmp_path):
    """The hires pass's own prompt and sampler, SDXL's refiner and ADetailer change A1111's image: the notice
    names them as left out (before, nothing was said)."""
    info = PngInfo()
    info.add_text("parameters", "a handwritten digit four\nSteps: 6, Sampler: Euler a, CFG scale: 5, Seed: 3, Size: "
                                "32x32, Denoising strength: 0.5, Hires upscale: 1.5, Hires prompt: a bold four, Hires "
                                "sampler: DPM++ 2M, Refiner: sd_xl_refiner_1.0 [7440042bbd], Refiner switch at: 0.8, "
                                "ADetailer model: face_yolov8n.pt, Emphasis: No norm, Variation seed: 42, Variation "
                                "seed strength: 0.3")
    Image.new("RGB", (32, 32)).save(tmp_path / "passes.png", pnginfo=info)
    open_editor(page, server)
    page.evaluate(DROP_FILE, ["passes.png", "image/png", base64.b64encode((tmp_path / "passes.png").read_bytes())
                              .decode()])
    notice = page.get_by_test_id("notice")
    for what in ("the hires pass's own prompt (it takes the first pass's)", "the hires pass's own sampler 'DPM++ 2M'",
                 "SDXL's refiner pass (sd_xl_refiner_1.0 [7440042bbd]), which diffblocks does not run",
                 "ADetailer's pass (face_yolov8n.pt: faces found and painted again)",
                 "A1111's 'No norm' emphasis (prompt weights are read with its Original one)",
                 "A1111's variation seed 42 (noise of two seeds blended; the seed's alone here)"):
        expect(notice).to_contain_text(what)
