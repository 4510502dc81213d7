"""ComfyUI's and A1111's graphs, imported on a server with model folders (``--models-dir``): the text-to-image graph
loads the checkpoint they name, with the preset of its family."""

from __future__ import annotations

import base64
import json
import os
import re

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from page_helpers import expect, node, open_editor, pixels, run, shown_image
from test_editor import COMFY_PROMPT, DIGIT_FOUR, DROP_FILE, comfy_editor_graph
from test_model_files import model_input

EMBEDDED = os.path.join(os.path.dirname(__file__), "..", "..", "presets", "tiny_digits")


@pytest.fixture(scope="module")
def models(tmp_path_factory, sdxl_repo):
    """checkpoints/sd15/digits.safetensors: the embedded model as an original checkpoint; checkpoints/xl.safetensors:
    a file named as an SDXL checkpoint's tensors are (its family is all that is read of it here); diffusers/digits:
    the embedded model's folder, the configs the checkpoint is read with; loras/ink.safetensors: a LoRA for it;
    vae/mse.safetensors: its VAE, moved a little, alone in the original layout; controlnet/edges.safetensors: a
    ControlNet for it in the original layout; embeddings/inkstyle.safetensors: an embedding for it;
    ipadapter/ip-adapter_digits.safetensors and clip_vision/digits-vit/: an IP-Adapter for it and its image encoder;
    checkpoints/tinyxl.safetensors and diffusers/tinyxl: a tiny SDXL model, as a checkpoint and its configs."""
    import diffusers
    import torch
    from safetensors.torch import save_file

    from tiny_checkpoints import fine_tune, to_original, write_checkpoint, write_vae
    from tiny_lora import make_lora

    from diffblocks.components.checkpoint_names import controlnet_table, vae_table

    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints" / "sd15").mkdir(parents=True)
    (root / "diffusers").mkdir()
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(os.path.abspath(EMBEDDED), safety_checker=None)
    write_checkpoint(pipe, root / "checkpoints" / "sd15" / "digits.safetensors")
    xl = {"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1)}
    save_file(xl, root / "checkpoints" / "xl.safetensors")
    (root / "diffusers" / "digits").symlink_to(os.path.abspath(EMBEDDED), target_is_directory=True)
    (root / "loras").mkdir()
    save_file(make_lora(pipe, "kohya", seed=1, alpha=2.0), root / "loras" / "ink.safetensors")
    (root / "vae").mkdir()
    vae = fine_tune(diffusers.StableDiffusionPipeline.from_pretrained(os.path.abspath(EMBEDDED), safety_checker=None),
                    3).vae
    write_vae(root / "vae" / "mse.safetensors", to_original(vae.state_dict(), vae_table(vae.config)))
    from tiny_ip_adapter import ip_adapter_state_dict, save_ip_adapter, tiny_image_encoder

    save_ip_adapter(ip_adapter_state_dict(pipe.unet, "plus", seed=2), root / "ipadapter" / "ip-adapter_digits.safetensors")
    tiny_image_encoder().save_pretrained(root / "clip_vision" / "digits-vit")
    (root / "embeddings").mkdir()
    width = pipe.text_encoder.config.hidden_size
    save_file({"emb_params": torch.randn(2, width, generator=torch.Generator().manual_seed(8))},
              root / "embeddings" / "inkstyle.safetensors")
    save_file({"emb_params": torch.zeros(2, 768)}, root / "embeddings" / "easyneg.safetensors")  # SD 1.x's width
    kohya = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    save_file({kohya: torch.zeros(4, 2048)}, root / "loras" / "xl-detail.safetensors")  # SDXL's cross-attention width
    (root / "controlnet").mkdir()
    torch.manual_seed(6)
    net = diffusers.ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(8, 16, 32))
    with torch.no_grad():
        for param in net.parameters():  # from_unet zero-initialises the output convolutions: make them matter
            param.add_(0.05 * torch.randn_like(param))
    write_vae(root / "controlnet" / "edges.safetensors",
              {f"control_model.{k}": v for k, v in to_original(net.state_dict(), controlnet_table(net.config)).items()})
    xl_pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(sdxl_repo)
    write_checkpoint(xl_pipe, root / "checkpoints" / "tinyxl.safetensors")
    (root / "diffusers" / "tinyxl").symlink_to(sdxl_repo, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def import_server(tmp_path_factory, make_server, models):
    served = make_server(tmp_path_factory.mktemp("serve-import"), flags=("--models-dir", str(models))).start()
    yield served
    served.stop()


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
    FreeU node: the graph loads that file from the server's checkpoints with the SD 1.x preset, and the LoRA with
    LoadLoRA at its strength_model and strength_clip; FreeU is left out, and the page says so. Given the
    checkpoint's configs, it draws the very pixels the same LoRA draws on the model the file was written from."""
    prompt = json.loads(json.dumps(COMFY_PROMPT))
    prompt["4"]["inputs"]["ckpt_name"] = "sd15\\digits.safetensors"
    prompt["12"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors", "strength_model": 0.8,
                                                          "strength_clip": 0.5, "model": ["4", 0], "clip": ["4", 1]}}
    prompt["13"] = {"class_type": "FreeU_V2", "inputs": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2,
                                                        "model": ["12", 0]}}
    prompt["3"]["inputs"]["model"] = ["13", 0]
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    open_editor(page, import_server)
    drop(page, tmp_path / "comfy.png", info)
    lora = {"repo": "ink.safetensors", "scale": 0.8, "text_encoder_scale": 0.5}
    wait_for(page, "nodes.load.type === 'LoadCheckpoint'")
    assert page.evaluate("window.diffblocks.workflow()") == on_checkpoint("sd15/digits.safetensors", lora=lora)
    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text("left out: FreeU_V2")
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
    without = on_folder(expected)
    del without["nodes"]["vae"]
    without["nodes"]["run"]["inputs"]["components"] = {"node": "lora", "output": "components"}
    assert_draws(page, import_server, on_folder(expected), without, "the VAE file")

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


def comfy_controlnet(prompt):
    """ComfyUI's ControlNetApplyAdvanced between the prompts and the sampler, at strength 0.7 and end 0.8, its
    image edges.png of ComfyUI's input folder; and what the import makes of it in ``expected``."""
    prompt["20"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "edges.safetensors"}}
    prompt["21"] = {"class_type": "LoadImage", "inputs": {"image": "edges.png", "upload": "image"}}
    prompt["22"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
        "positive": ["6", 0], "negative": ["7", 0], "control_net": ["20", 0], "image": ["21", 0], "strength": 0.7,
        "start_percent": 0.0, "end_percent": 0.8}}
    prompt["3"]["inputs"].update(positive=["22", 0], negative=["22", 1])


def imported_controlnet(expected):
    expected["nodes"]["run"]["inputs"].update(
        controlnet={"node": "controlnet", "output": "controlnet"}, control_image={"node": "control", "output": "image"},
        controlnet_conditioning_scale=0.7, control_guidance_end=0.8)
    expected["nodes"].update(controlnet={"type": "LoadControlNet", "inputs": {"repo": "edges.safetensors"}},
                             control={"type": "LoadImage", "inputs": {}})


def comfy_ip_adapter(prompt):
    """IPAdapter Plus's IPAdapterAdvanced on the model's way at weight 0.6, with its IPAdapterModelLoader and
    ComfyUI's CLIPVisionLoader, its image style.png of ComfyUI's input folder; and what the import makes of it."""
    prompt["30"] = {"class_type": "IPAdapterModelLoader", "inputs": {"ipadapter_file": "ip-adapter_digits.safetensors"}}
    prompt["31"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "digits-vit.safetensors"}}
    prompt["32"] = {"class_type": "LoadImage", "inputs": {"image": "style.png", "upload": "image"}}
    prompt["33"] = {"class_type": "IPAdapterAdvanced", "inputs": {
        "model": ["4", 0], "ipadapter": ["30", 0], "clip_vision": ["31", 0], "image": ["32", 0], "weight": 0.6,
        "weight_type": "style transfer", "combine_embeds": "concat", "start_at": 0.0, "end_at": 1.0,
        "embeds_scaling": "V only"}}
    prompt["3"]["inputs"]["model"] = ["33", 0]


def imported_ip_adapter(expected):
    expected["nodes"]["run"]["inputs"].update(components={"node": "ipadapter", "output": "components"},
                                              ip_adapter_image={"node": "reference", "output": "image"})
    expected["nodes"].update(
        ipadapter={"type": "LoadIPAdapter", "inputs": {"components": {"node": "load", "output": "components"},
                                                       "repo": "ip-adapter_digits.safetensors",
                                                       "image_encoder": "digits-vit", "scale": 0.6}},
        reference={"type": "LoadImage", "inputs": {}})


def drop_comfy(page, server, tmp_path, *adapters):
    """Open the editor and drop a PNG holding COMFY_PROMPT on the embedded model's checkpoint, with ``adapters``
    (comfy_controlnet, comfy_ip_adapter) added."""
    prompt = json.loads(json.dumps(COMFY_PROMPT))
    prompt["4"]["inputs"]["ckpt_name"] = "sd15/digits.safetensors"
    for adapter in adapters:
        adapter(prompt)
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    open_editor(page, server)
    drop(page, tmp_path / "comfy-adapters.png", info)


def upload_edges(page, tmp_path):
    picture = tmp_path / "edges.png"
    Image.fromarray((np.indices((32, 32)).sum(0) % 8 < 4).astype("uint8") * 255).convert("RGB").save(picture)
    upload(page, "control", picture)


def upload_style(page, tmp_path):
    picture = tmp_path / "style.png"
    Image.fromarray((np.indices((32, 32))[0] * 8 % 256).astype("uint8")).convert("RGB").save(picture)
    upload(page, "reference", picture)


def without(workflow, node, name, value):
    """``workflow`` with input ``name`` of ``node`` set to ``value``."""
    copied = json.loads(json.dumps(workflow))
    copied["nodes"][node]["inputs"][name] = value
    return copied


def test_a_comfyui_controlnet_graph_loads_the_controlnet_and_waits_for_its_image(page, import_server, tmp_path, shots):
    """ComfyUI's ControlNetApplyAdvanced between the prompts and the sampler becomes the ControlNet preset with a
    LoadControlNet node of the file ControlNetLoader names, at its strength and end, and a Load Image node: the
    image is in ComfyUI's input folder, so the notice asks for it. With it uploaded, the run draws what the API
    draws with the same ControlNet and image."""
    drop_comfy(page, import_server, tmp_path, comfy_controlnet)
    wait_for(page, "nodes.run && nodes.run.type === 'preset:sd15-controlnet'")
    expected = on_checkpoint("sd15/digits.safetensors")
    expected["nodes"]["run"]["type"] = "preset:sd15-controlnet"
    imported_controlnet(expected)
    assert page.evaluate("window.diffblocks.workflow()") == expected
    expect(page.get_by_test_id("notice")).to_have_text(re.compile(
        r"^upload the control image \(edges\.png in ComfyUI's input folder\) into the Load Image node"))
    page.screenshot(path=str(shots / "33-comfyui-controlnet-import.png"))

    with_digits_configs(page, "load", "controlnet")
    upload_edges(page, tmp_path)
    run(page)
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert_draws(page, import_server, workflow, without(workflow, "run", "controlnet_conditioning_scale", 0.0),
                 "the ControlNet")


def test_a_comfyui_hires_fix_keeps_the_ip_adapter_on_its_second_pass(page, import_server, tmp_path):
    """ComfyUI's second KSampler takes the model the IP-Adapter patched, as the first does: the hires pass is the auto
    preset with the IP-Adapter's image and the components through its loader."""
    def hires_fix(prompt):
        prompt["40"] = {"class_type": "LatentUpscaleBy", "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5,
                                                                     "samples": ["3", 0]}}
        prompt["41"] = {"class_type": "KSampler", "inputs": {**prompt["3"]["inputs"], "denoise": 0.5,
                                                             "latent_image": ["40", 0]}}
        prompt["8"]["inputs"]["samples"] = ["41", 0]

    drop_comfy(page, import_server, tmp_path, comfy_ip_adapter, hires_fix)
    wait_for(page, "nodes.hires && nodes.hires.type === 'preset:sd15-auto'")
    workflow = page.evaluate("window.diffblocks.workflow()")
    first = {k: v for k, v in workflow["nodes"]["run"]["inputs"].items() if k not in ("width", "height")}
    assert first["ip_adapter_image"] == {"node": "reference", "output": "image"}
    assert workflow["nodes"]["hires"]["inputs"] == {**first, "image": {"node": "scale", "output": "image"},
                                                    "strength": 0.5, "num_inference_steps": 6, "seed": 3}


def test_a1111s_controlnet_units_load_the_controlnet_they_name_and_say_what_is_left_out(page, import_server, tmp_path):
    """sd-webui-controlnet writes each unit into A1111's parameters ("ControlNet 0: ..."; "ControlNet: ..." with
    "starting/ending" in its first versions): the first ControlNet unit becomes the ControlNet preset with the file
    its model names (without A1111's hash) at its weight, start and end, as ComfyUI's ControlNetApplyAdvanced does;
    the notice asks for the control image and names the preprocessor (the image is taken as its output), the units
    after it, and an IP-Adapter unit."""
    units = ('ControlNet 0: "Module: canny, Model: edges [d14c016b], Weight: 0.7, Resize Mode: Crop and Resize, '
             'Low Vram: False, Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0, '
             'Guidance End: 0.8, Pixel Perfect: False, Control Mode: Balanced", '
             'ControlNet 1: "Module: depth_midas, Model: control_v11f1p_sd15_depth [cfd03158], Weight: 1, '
             'Guidance Start: 0, Guidance End: 1", '
             'ControlNet 2: "Module: ip-adapter_clip_sd15, Model: ip-adapter_sd15 [6a3f6166], Weight: 1"')
    first_versions = ('ControlNet: "preprocessor: none, model: edges [d14c016b], weight: 0.7, starting/ending: '
                      '(0, 0.8), resize mode: Crop and Resize, pixel perfect: False, control mode: Balanced"')
    expected = on_checkpoint("sd15/digits.safetensors")
    expected["nodes"]["run"]["type"] = "preset:sd15-controlnet"
    imported_controlnet(expected)
    open_editor(page, import_server)
    for name, fields, left_out in (
            ("units", units, "; left out: the ControlNet's preprocessor 'canny' (upload what it made), IP-Adapter "
                             "unit 'ip-adapter_sd15', 1 more ControlNet unit"),
            ("first", first_versions, "")):
        info = PngInfo()
        info.add_text("parameters", "a handwritten digit four\nNegative prompt: blurry, faint\nSteps: 6, Sampler: "
                                    f"Euler a, CFG scale: 5, Seed: 3, Size: 32x32, Model: digits, {fields}")
        drop(page, tmp_path / f"a1111-controlnet-{name}.png", info)
        wait_for(page, "nodes.run && nodes.run.type === 'preset:sd15-controlnet' && nodes.controlnet")
        assert page.evaluate("window.diffblocks.workflow()") == expected
        notice = "upload the control image (A1111's ControlNet input) into the Load Image node" + left_out
        expect(page.get_by_test_id("notice")).to_have_text(re.compile(f"^{re.escape(notice)}(dismiss)?$"))
        page.get_by_test_id("notice").get_by_role("button", name="dismiss").click()


def test_a1111s_controlnet_acts_on_the_hires_pass_too_unless_its_hr_option_says_low_res_only(
        page, import_server, tmp_path):
    """A1111 applies a ControlNet unit to both passes of its hires fix ("Hr Option: Both", the default): the hires
    pass is then the auto preset with the ControlNet's inputs (image-to-image with a ControlNet); "Low res only"
    keeps the plain image-to-image pass. Run, the page draws what the server draws for that graph, which the
    ControlNet on the hires pass changes."""
    unit = 'ControlNet 0: "Module: none, Model: edges [d14c016b], Weight: 0.7, Guidance Start: 0, Guidance End: 0.8{}"'
    open_editor(page, import_server)
    for option, hires_type in ((", Hr Option: Low res only", "preset:sd15-image2image"), ("", "preset:sd15-auto")):
        info = PngInfo()
        info.add_text("parameters", "a handwritten digit four\nNegative prompt: blurry, faint\nSteps: 6, Sampler: "
                                    "Euler a, CFG scale: 5, Seed: 3, Size: 32x32, Denoising strength: 0.6, Hires "
                                    f"upscale: 1.5, Model: digits, {unit.format(option)}")
        drop(page, tmp_path / f"a1111-controlnet-hires{len(option)}.png", info)
        wait_for(page, f"nodes.hires && nodes.hires.type === '{hires_type}'")
        workflow = page.evaluate("window.diffblocks.workflow()")
        first = {k: v for k, v in workflow["nodes"]["run"]["inputs"].items() if k not in ("width", "height")}
        if option:
            assert not any(name.startswith("control") for name in workflow["nodes"]["hires"]["inputs"])
        else:
            assert workflow["nodes"]["hires"]["inputs"] == {**first, "image": {"node": "scale", "output": "image"},
                                                            "strength": 0.6}

    with_digits_configs(page, "load", "controlnet")
    upload_edges(page, tmp_path)
    run(page)
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert_draws(page, import_server, workflow, without(workflow, "hires", "controlnet_conditioning_scale", 0.0),
                 "the ControlNet on the hires pass", output="hires")


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
    without = on_folder(expected)
    del without["nodes"]["embedding"]
    without["nodes"]["run"]["inputs"]["components"] = {"node": "load", "output": "components"}
    assert_draws(page, import_server, on_folder(expected), without, "the embedding (what the word means)")

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


def test_a_comfyui_ip_adapter_graph_loads_the_adapter_and_its_encoder_and_waits_for_its_image(
        page, import_server, tmp_path, shots):
    """IPAdapter Plus's IPAdapterAdvanced on the model's way, with its IPAdapterModelLoader and ComfyUI's
    CLIPVisionLoader: a LoadIPAdapter node of those files at its weight and the IP-Adapter preset, with a Load Image
    node that the notice asks to upload the image into; its weight type is named as left out. With the image, the run
    draws what the API draws."""
    drop_comfy(page, import_server, tmp_path, comfy_ip_adapter)
    wait_for(page, "nodes.run && nodes.run.type === 'preset:sd15-ip-adapter'")
    expected = on_checkpoint("sd15/digits.safetensors")
    expected["nodes"]["run"]["type"] = "preset:sd15-ip-adapter"
    imported_ip_adapter(expected)
    assert page.evaluate("window.diffblocks.workflow()") == expected
    expect(page.get_by_test_id("notice")).to_have_text(re.compile(
        r"^upload the IP-Adapter's image \(style\.png in ComfyUI's input folder\) into the Load Image node; left out: "
        r"the IP-Adapter's weight type 'style transfer'"))
    page.screenshot(path=str(shots / "34-comfyui-ip-adapter-import.png"))

    with_digits_configs(page, "load")
    upload_style(page, tmp_path)
    run(page)
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert_draws(page, import_server, workflow, without(workflow, "ipadapter", "scale", 0.0), "the IP-Adapter")


def test_a_comfyui_graph_with_a_controlnet_and_an_ip_adapter_runs_both_on_the_auto_preset(
        page, import_server, tmp_path, shots):
    """Both adapters in one graph, as ComfyUI users often have them: the family's auto preset takes both, with the
    two loaders and two Load Image nodes, the one below the other; the notice asks for both images. The run draws
    what the API draws, which each adapter changes."""
    drop_comfy(page, import_server, tmp_path, comfy_controlnet, comfy_ip_adapter)
    wait_for(page, "nodes.run && nodes.run.type === 'preset:sd15-auto'")
    expected = on_checkpoint("sd15/digits.safetensors")
    expected["nodes"]["run"]["type"] = "preset:sd15-auto"
    imported_controlnet(expected)
    imported_ip_adapter(expected)
    assert page.evaluate("window.diffblocks.workflow()") == expected
    expect(page.get_by_test_id("notice")).to_have_text(re.compile(
        r"^upload the control image \(edges\.png in ComfyUI's input folder\) into the Load Image node; upload the "
        r"IP-Adapter's image \(style\.png in ComfyUI's input folder\) into the Load Image node"))
    control, reference = (node(page, name).bounding_box() for name in ("control", "reference"))
    assert control["y"] + control["height"] <= reference["y"]  # stacked, not drawn over each other

    with_digits_configs(page, "load", "controlnet")
    upload_edges(page, tmp_path)
    upload_style(page, tmp_path)
    page.screenshot(path=str(shots / "35-comfyui-controlnet-and-ip-adapter-import.png"))
    run(page)
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert_draws(page, import_server, workflow, without(workflow, "run", "controlnet_conditioning_scale", 0.0),
                 "the ControlNet")
    assert_draws(page, import_server, workflow, without(workflow, "ipadapter", "scale", 0.0), "the IP-Adapter")


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
