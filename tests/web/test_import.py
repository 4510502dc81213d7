"""ComfyUI's and A1111's graphs, imported on a server with model folders (``--models-dir``): the text-to-image graph
loads the checkpoint they name, with the preset of its family."""

from __future__ import annotations

import base64
import json
import re

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from page_helpers import expect, node, open_editor, pixels, run, shown_image
from test_editor import COMFY_PROMPT, DIGIT_FOUR, DROP_FILE, comfy_editor_graph
from test_model_files import model_input


def on_checkpoint(name, family="sd15", lora=None, vae=None):
    """DIGIT_FOUR with its model loaded from the checkpoint ``name``, run by ``family``'s preset (with a LoadLoRA
    node of inputs ``lora``, then a LoadVAE node of file ``vae``, between them)."""
    nodes = json.loads(json.dumps(DIGIT_FOUR["nodes"]))
    nodes["load"] = {"type": "LoadCheckpoint", "inputs": {"file": name}}
    nodes["run"]["type"] = f"preset:{family}-text2image"
    bundle = {"node": "load", "output": "components"}
    if lora is not None:
        nodes["lora"] = {"type": "LoadLoRA", "inputs": {"components": bundle, **lora}}
        bundle = {"node": "lora", "output": "components"}
    if vae is not None:
        nodes["vae"] = {"type": "LoadVAE", "inputs": {"file": vae, "components": bundle}}
        bundle = {"node": "vae", "output": "components"}
    nodes["run"]["inputs"]["components"] = bundle
    return {"nodes": nodes}


def wait_for(page, condition):
    """Until the page's workflow meets ``condition`` (JavaScript on its ``nodes``): a dropped file loads after it is
    read, and the server asked about the checkpoint it names."""
    page.wait_for_function(f"(() => {{ const {{ nodes }} = window.diffblocks.workflow(); return {condition}; }})()")


def with_digits_configs(page, *node_ids):
    """Give each node's ``config`` the embedded model's folder: the tiny model's configs, not those shipped for the
    family."""
    for node_id in node_ids:
        config = model_input(page, node_id, "config")
        config.fill("digits")
        config.press("Tab")


def upload(page, node_id, picture):
    """Upload ``picture`` into the Load Image node ``node_id``."""
    node(page, node_id).locator('[data-input="image"] input[type=file]').set_input_files(str(picture))
    expect(node(page, node_id).locator('[data-input="image"] img')).to_be_visible()


def on_folder(workflow):
    """``workflow`` with its checkpoint replaced by the model folder it was written from."""
    copied = json.loads(json.dumps(workflow))
    copied["nodes"]["load"] = {"type": "LoadComponents", "inputs": {"repo": "digits"}}
    return copied


def on_folder_without(workflow, chain_node, bundle_from):
    """``on_folder(workflow)`` without ``chain_node``: the preset takes the components of ``bundle_from`` instead."""
    copied = on_folder(workflow)
    del copied["nodes"][chain_node]
    copied["nodes"]["run"]["inputs"]["components"] = {"node": bundle_from, "output": "components"}
    return copied


def assert_draws(page, server, workflow, without, why, output="run"):
    """The page shows what the server draws for ``workflow`` (the images of node ``output``), which is not what it
    draws for ``without`` (``why``: what makes them differ)."""
    expected, other = (pixels(server, server.run_job(w)["outputs"][output]["images"][0]["artifact"])
                       for w in (workflow, without))
    assert (pixels(server, shown_image(page)) == expected).all()
    assert not (expected == other).all(), why


def drop(page, path, info=None, document=None):
    """Drop a PNG holding ``info``, or a JSON file holding ``document``, on the canvas."""
    if document is not None:
        path.write_text(json.dumps(document))
        kind = "application/json"
    else:
        Image.new("RGB", (32, 32)).save(path, pnginfo=info)
        kind = "image/png"
    page.evaluate(DROP_FILE, [path.name, kind, base64.b64encode(path.read_bytes()).decode()])


def test_a_comfyui_graph_runs_on_the_checkpoint_and_lora_it_names_and_draws_what_their_weights_draw(
        page, import_server, tmp_path, shots):
    """ComfyUI's ckpt_name as saved on Windows (``sd15\\digits.safetensors``), reached through a LoraLoader and a
    RescaleCFG node: the graph loads that file from the server's checkpoints with the SD 1.x preset, and the LoRA with
    LoadLoRA at its strength_model and strength_clip; RescaleCFG is left out, and the page says so. Given the
    checkpoint's configs, it draws the very pixels the same LoRA draws on the model the file was written from."""
    prompt = json.loads(json.dumps(COMFY_PROMPT))
    prompt["4"]["inputs"]["ckpt_name"] = "sd15\\digits.safetensors"
    prompt["12"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors", "strength_model": 0.8,
                                                          "strength_clip": 0.5, "model": ["4", 0], "clip": ["4", 1]}}
    prompt["13"] = {"class_type": "RescaleCFG", "inputs": {"multiplier": 0.7, "model": ["12", 0]}}
    prompt["3"]["inputs"]["model"] = ["13", 0]
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    open_editor(page, import_server)
    drop(page, tmp_path / "comfy.png", info)
    lora = {"repo": "ink.safetensors", "scale": 0.8, "text_encoder_scale": 0.5}
    wait_for(page, "nodes.load.type === 'LoadCheckpoint'")
    assert page.evaluate("window.diffblocks.workflow()") == on_checkpoint("sd15/digits.safetensors", lora=lora)
    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text("left out: RescaleCFG")
    expect(notice).not_to_contain_text("checkpoint")
    page.screenshot(path=str(shots / "30-comfyui-import.png"))

    with_digits_configs(page, "load")
    run(page)
    plain = json.loads(json.dumps(DIGIT_FOUR))
    plain["nodes"]["load"]["inputs"]["repo"] = "digits"
    # the same LoRA on the model's own folder
    assert_draws(page, import_server, on_folder(on_checkpoint("sd15/digits.safetensors", lora=lora)), plain, "LoRA")


def test_the_editor_format_and_a1111s_model_name_find_the_checkpoint_and_its_family(page, import_server, tmp_path):
    """ComfyUI's editor file naming the file alone finds it in a subfolder; A1111's "Model: xl" (its name without
    the suffix) finds xl.safetensors, an SDXL checkpoint, so the SDXL preset, and leaves out the SD 1.x embedding its
    negative prompt names, saying so; a name the folders lack keeps the page's model and says so."""
    open_editor(page, import_server)
    graph = comfy_editor_graph()
    graph["nodes"][1]["widgets_values"] = ["digits.safetensors"]
    drop(page, tmp_path / "ui.json", document=graph)
    wait_for(page, "nodes.load.type === 'LoadCheckpoint'")
    assert page.evaluate("window.diffblocks.workflow()") == on_checkpoint("sd15/digits.safetensors")
    expect(page.get_by_test_id("notice")).to_have_count(0)

    info = PngInfo()
    info.add_text("parameters", "a handwritten digit four<lora:ink:0.6:0.9><lora:gone:1>\nNegative prompt: blurry, "
                                "easyneg, faint\nSteps: 6, Sampler: Euler a, CFG scale: 5, Seed: 3, Size: 32x32, "
                                "Model: xl")
    drop(page, tmp_path / "a1111.png", info)
    wait_for(page, "nodes.run.type === 'preset:sdxl-text2image'")
    lora = {"repo": "ink.safetensors", "scale": 0.9, "text_encoder_scale": 0.6}  # A1111's <lora:NAME:TE:UNET>
    expected = on_checkpoint("xl.safetensors", "sdxl", lora)
    expected["nodes"]["run"]["inputs"]["negative_prompt"] = "blurry, easyneg, faint"  # an SD 1.x embedding: no node
    assert page.evaluate("window.diffblocks.workflow()") == expected
    expect(page.get_by_test_id("notice")).to_have_text(re.compile(
        "^LoRA 'gone' is not among the server's LoRAs; embedding 'easyneg.safetensors' left out: it is for SD 1.x "
        "models"))

    graph["nodes"][1]["widgets_values"] = ["dreamshaper_8.safetensors"]
    drop(page, tmp_path / "other.json", document=graph)
    wait_for(page, "nodes.load.type === 'LoadComponents'")
    expect(page.get_by_test_id("notice")).to_contain_text(
        "ComfyUI's checkpoint 'dreamshaper_8.safetensors' is not among the server's checkpoints")
    assert page.evaluate("window.diffblocks.workflow()") == DIGIT_FOUR


def test_the_vae_a_comfyui_graph_decodes_with_is_loaded_from_the_vae_folder(page, import_server, tmp_path, shots):
    """ComfyUI's VAELoader feeding its VAEDecode becomes a LoadVAE node after the LoRA, taking the checkpoint's VAE
    config: the run draws what the same VAE file draws on the model's own folder, not what the checkpoint's VAE
    draws. A1111's "VAE:" field finds the file as well; one the folder lacks is named in the notice."""
    prompt = json.loads(json.dumps(COMFY_PROMPT))
    prompt["4"]["inputs"]["ckpt_name"] = "sd15/digits.safetensors"
    prompt["12"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors", "strength_model": 0.8,
                                                          "strength_clip": 0.8, "model": ["4", 0], "clip": ["4", 1]}}
    prompt["3"]["inputs"]["model"] = ["12", 0]
    prompt["13"] = {"class_type": "VAELoader", "inputs": {"vae_name": "mse.safetensors"}}
    prompt["8"]["inputs"]["vae"] = ["13", 0]
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    open_editor(page, import_server)
    drop(page, tmp_path / "comfy-vae.png", info)
    wait_for(page, "nodes.vae && nodes.vae.type === 'LoadVAE'")
    expected = on_checkpoint("sd15/digits.safetensors", lora={"repo": "ink.safetensors", "scale": 0.8},
                             vae="mse.safetensors")
    assert page.evaluate("window.diffblocks.workflow()") == expected
    expect(page.get_by_test_id("notice")).to_have_count(0)
    page.screenshot(path=str(shots / "32-comfyui-vae-import.png"))

    with_digits_configs(page, "load")
    run(page)
    assert_draws(page, import_server, on_folder(expected), on_folder_without(expected, "vae", "lora"), "the VAE file")

    for vae, notice in (("mse", None), ("gone.pt", "VAE 'gone.pt' is not among the server's VAEs")):
        info = PngInfo()
        info.add_text("parameters", f"a handwritten digit four\nNegative prompt: blurry, faint\nSteps: 6, Sampler: "
                                    f"Euler a, CFG scale: 5, Seed: 3, Size: 32x32, Model: digits, VAE: {vae}")
        drop(page, tmp_path / f"a1111-{vae}.png", info)
        if notice is None:
            wait_for(page, "!nodes.lora && nodes.vae && nodes.vae.inputs.file === 'mse.safetensors'")
            assert page.evaluate("window.diffblocks.workflow()") == on_checkpoint("sd15/digits.safetensors",
                                                                                vae="mse.safetensors")
        else:
            expect(page.get_by_test_id("notice")).to_have_text(re.compile(f"^{re.escape(notice)}"))
            assert page.evaluate("window.diffblocks.workflow()") == on_checkpoint("sd15/digits.safetensors")


def test_the_embeddings_a_prompt_names_are_loaded_from_the_embeddings_folder(page, import_server, tmp_path):
    """ComfyUI's ``embedding:NAME`` (here with the file's suffix) becomes a LoadTextualInversion node of that file
    and the word NAME in the prompt; the run draws what the API draws with the same embedding, which differs from
    the prompt without it. A1111's bare word in the negative prompt finds the file by its stem; a ComfyUI name the
    server lacks is left out of the prompt (as ComfyUI leaves it out) and named in the notice, and so is a LoRA made
    for SDXL (its cross-attention width), left out as A1111 skips it."""
    prompt = json.loads(json.dumps(COMFY_PROMPT))
    prompt["4"]["inputs"]["ckpt_name"] = "sd15/digits.safetensors"
    prompt["6"]["inputs"]["text"] = "a handwritten digit four, embedding:inkstyle.safetensors"
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    open_editor(page, import_server)
    drop(page, tmp_path / "comfy-embedding.png", info)
    wait_for(page, "nodes.embedding && nodes.embedding.type === 'LoadTextualInversion'")
    expected = on_checkpoint("sd15/digits.safetensors")
    expected["nodes"]["embedding"] = {"type": "LoadTextualInversion", "inputs": {
        "components": {"node": "load", "output": "components"}, "file": "inkstyle.safetensors"}}
    expected["nodes"]["run"]["inputs"].update(components={"node": "embedding", "output": "components"},
                                              prompt="a handwritten digit four, inkstyle")
    assert page.evaluate("window.diffblocks.workflow()") == expected
    expect(page.get_by_test_id("notice")).to_have_count(0)

    with_digits_configs(page, "load")
    run(page)
    assert_draws(page, import_server, on_folder(expected), on_folder_without(expected, "embedding", "load"),
                 "the embedding (what the word means)")

    info = PngInfo()
    info.add_text("parameters", "a handwritten digit four, embedding:gone<lora:xl-detail:1>\nNegative prompt: blurry, "
                                "inkstyle, faint\nSteps: 6, Sampler: Euler a, CFG scale: 5, Seed: 3, Size: 32x32, "
                                "Model: digits")
    drop(page, tmp_path / "a1111-embedding.png", info)
    expect(page.get_by_test_id("notice")).to_have_text(re.compile(
        "^LoRA 'xl-detail.safetensors' left out: it is for SDXL models; embedding 'gone' is not among the server's"))
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert workflow["nodes"]["embedding"]["inputs"]["file"] == "inkstyle.safetensors"
    assert workflow["nodes"]["run"]["inputs"]["prompt"] == "a handwritten digit four, "
    assert workflow["nodes"]["run"]["inputs"]["negative_prompt"] == "blurry, inkstyle, faint"


def test_a_preset_given_another_familys_checkpoint_offers_the_preset_that_runs_it(page, import_server, shots):
    """An SDXL checkpoint wired into the SD 1.x preset is refused as soon as the graph is checked (the file's family
    is read off it), naming the preset to use; the node offers it, and one click makes it that preset with its
    values and wires, undoably: the run then draws what the SDXL preset draws."""
    workflow = {"nodes": {
        "load": {"type": "LoadCheckpoint", "inputs": {"file": "tinyxl.safetensors", "config": "tinyxl"}},
        "run": {"type": "preset:sd15-text2image", "inputs": {
            "components": {"node": "load", "output": "components"}, "prompt": "a cat", "num_inference_steps": 2,
            "seed": 5, "height": 64, "width": 64}}},
        "ui": {"previews": {"output": {"node": "run", "output": "images"}}}}
    open_editor(page, import_server)
    page.get_by_test_id("load-input").set_input_files(files=[{"name": "xl.json", "mimeType": "application/json",
                                                              "buffer": json.dumps(workflow).encode()}])
    wait_for(page, "nodes.run.type === 'preset:sd15-text2image' && nodes.load.type === 'LoadCheckpoint'")
    fix = page.get_by_test_id("switch-type")  # no run needed: the check the page makes as the graph changes
    expect(fix).to_have_text("use preset:sdxl-text2image")
    page.screenshot(path=str(shots / "31-switch-preset.png"))
    fix.click()
    expect(fix).to_have_count(0)
    expected = json.loads(json.dumps(workflow))
    expected["nodes"]["run"]["type"] = "preset:sdxl-text2image"
    del expected["ui"]
    assert page.evaluate("window.diffblocks.workflow()") == expected
    run(page)
    reference = import_server.run_job(expected)
    assert reference["status"] == "done", reference
    assert (pixels(import_server, shown_image(page))
            == pixels(import_server, reference["outputs"]["run"]["images"][0]["artifact"])).all()
    page.keyboard.press("Control+z")  # back to the node as it was
    wait_for(page, "nodes.run.type === 'preset:sd15-text2image'")
