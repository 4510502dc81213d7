"""ControlNets and IP-Adapters in ComfyUI's graphs and A1111's parameters, imported on a server with model folders:
the loaders of the files they name, with the family's ControlNet, IP-Adapter or (both) auto preset, and an empty
Load Image node for each image the notice asks to upload; on the hires pass too."""

from __future__ import annotations

import json
import re

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from page_helpers import expect, node, open_editor, run
from test_editor import COMFY_PROMPT
from test_import import assert_draws, drop, on_checkpoint, upload, wait_for, with_digits_configs


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
    preset with the IP-Adapter's image and the components through its loader (and the first pass's latents,
    enlarged by a ScaleLatents node, as its image)."""
    def hires_fix(prompt):
        prompt["40"] = {"class_type": "LatentUpscaleBy", "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5,
                                                                     "samples": ["3", 0]}}
        prompt["41"] = {"class_type": "KSampler", "inputs": {**prompt["3"]["inputs"], "denoise": 0.5,
                                                             "latent_image": ["40", 0]}}
        prompt["8"]["inputs"]["samples"] = ["41", 0]

    drop_comfy(page, import_server, tmp_path, comfy_ip_adapter, hires_fix)
    wait_for(page, "nodes.hires && nodes.hires.type === 'preset:sd15-auto'")
    workflow = page.evaluate("window.diffblocks.workflow()")
    first = {k: v for k, v in workflow["nodes"]["run"]["inputs"].items()
             if k not in ("width", "height", "output_type")}
    assert first["ip_adapter_image"] == {"node": "reference", "output": "image"}
    assert workflow["nodes"]["run"]["inputs"]["output_type"] == "latent"
    assert workflow["nodes"]["hires"]["inputs"] == {**first, "image": {"node": "scale", "output": "latents"},
                                                    "strength": 0.5, "num_inference_steps": 6, "seed": 3}


def test_a1111s_controlnet_units_load_the_controlnet_they_name_and_say_what_is_left_out(page, import_server, tmp_path):
    """sd-webui-controlnet writes each unit into A1111's parameters ("ControlNet 0: ..."; "ControlNet: ..." with
    "starting/ending" in its first versions): the first ControlNet unit becomes the ControlNet preset with the file
    its model names (without A1111's hash) at its weight, start and end, as ComfyUI's ControlNetApplyAdvanced does;
    the notice asks for the control image and names the preprocessor (the image is taken as its output), the units
    after it, and the IP-Adapter unit's model, which the server lacks."""
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
            ("units", units, "; IP-Adapter 'ip-adapter_sd15' is not among the server's IP-Adapters; left out: the "
                             "ControlNet's preprocessor 'canny' (upload what it made), 1 more ControlNet unit"),
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


def test_an_a1111_ip_adapter_unit_loads_the_adapter_and_the_encoder_its_preprocessor_runs(
        page, import_server, tmp_path):
    """sd-webui-controlnet runs an IP-Adapter as a ControlNet unit: its model names the adapter file (without
    A1111's hash), its preprocessor the CLIP vision encoder (ip-adapter_clip_sd15: ViT-H/14; the server's only one
    here), its weight the scale; it imports as ComfyUI's IPAdapter does, the notice asking for the image. A FaceID
    unit is named as left out. With the image, the run draws what the API draws."""
    units = ('ControlNet 0: "Module: ip-adapter_clip_sd15, Model: ip-adapter_digits [6a3f6166], Weight: 0.6, '
             'Resize Mode: Crop and Resize, Guidance Start: 0, Guidance End: 1", '
             'ControlNet 1: "Module: ip-adapter_face_id_plus, Model: ip-adapter-faceid-plus_sd15 [d86a490f], '
             'Weight: 1"')
    info = PngInfo()
    info.add_text("parameters", "a handwritten digit four\nNegative prompt: blurry, faint\nSteps: 6, Sampler: Euler a, "
                                f"CFG scale: 5, Seed: 3, Size: 32x32, Model: digits, {units}")
    open_editor(page, import_server)
    drop(page, tmp_path / "a1111-ip-adapter.png", info)
    wait_for(page, "nodes.run && nodes.run.type === 'preset:sd15-ip-adapter'")
    expected = on_checkpoint("sd15/digits.safetensors")
    expected["nodes"]["run"]["type"] = "preset:sd15-ip-adapter"
    imported_ip_adapter(expected)
    assert page.evaluate("window.diffblocks.workflow()") == expected
    notice = ("upload the IP-Adapter's image (A1111's IP-Adapter input) into the Load Image node; left out: IP-Adapter "
              "unit 'ip-adapter-faceid-plus_sd15' (its ip-adapter_face_id_plus needs InsightFace)")
    expect(page.get_by_test_id("notice")).to_have_text(re.compile(f"^{re.escape(notice)}(dismiss)?$"))

    with_digits_configs(page, "load")
    upload_style(page, tmp_path)
    run(page)
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert_draws(page, import_server, workflow, without(workflow, "ipadapter", "scale", 0.0), "the IP-Adapter")
