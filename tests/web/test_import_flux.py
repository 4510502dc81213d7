"""ComfyUI's FLUX.1 graphs, imported on a server with model folders: the FLUX.1 folder among its diffusers models
(the text encoders, tokenizers and scheduler), the transformer file the UNETLoader names (from diffusion_models, the
folder's own never loaded), the VAE file, the distilled guidance, and true CFG when the sampler's CFG is above 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL.PngImagePlugin import PngInfo

from page_helpers import expect, open_editor, pixels, run, shown_image
from test_import import drop, wait_for

LINK = lambda node, output: {"node": node, "output": output}  # noqa: E731


@pytest.fixture(scope="module")
def flux_models(tmp_path_factory):
    """diffusers/flux-dev: a tiny FLUX.1-dev folder (heads of 128 channels, as FLUX.1's: a file's config is read
    off its shapes); diffusion_models/flux1-tuned.safetensors: its transformer moved a little, in Black Forest Labs'
    layout; checkpoints/flux1-dev-fp8.safetensors: that transformer in an all-in-one file, as ComfyUI's;
    vae/ae.safetensors: its VAE moved a little, in the original layout; controlnet/flux-cn.safetensors: an InstantX
    ControlNet for it, its weights alone; loras/flux-detail.safetensors: a FLUX.1 LoRA of zeros;
    loras/detail15.safetensors: an SD 1.x LoRA (its cross-attention is 768 wide)."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from safetensors.torch import save_file

    from tiny_checkpoints import to_original as vae_to_original
    from tiny_checkpoints import write_vae
    from tiny_flux import make_flux_repo, reference_controlnet, to_original

    from diffblocks.components.checkpoint_names import vae_table

    root = tmp_path_factory.mktemp("flux-models")
    repo = make_flux_repo(root / "diffusers" / "flux-dev", dev=True, transformer=dict(
        attention_head_dim=128, num_attention_heads=1, axes_dims_rope=(16, 56, 56)))
    torch.manual_seed(4)
    tuned = FluxTransformer2DModel.from_pretrained(repo, subfolder="transformer")
    vae = AutoencoderKL.from_pretrained(repo, subfolder="vae")
    with torch.no_grad():
        for param in [*tuned.parameters(), *vae.parameters()]:
            param.add_(0.05 * torch.randn_like(param))
    (root / "diffusion_models").mkdir()
    original = to_original(tuned.state_dict(), tuned.config)
    save_file(original, root / "diffusion_models" / "flux1-tuned.safetensors")
    (root / "checkpoints").mkdir()  # ComfyUI's all-in-one file: the transformer beside a VAE and text encoders
    save_file({**{f"model.diffusion_model.{k}": v for k, v in original.items()},
               "vae.decoder.conv_in.weight": torch.zeros(4, 4)}, root / "checkpoints" / "flux1-dev-fp8.safetensors")
    (root / "vae").mkdir()
    write_vae(root / "vae" / "ae.safetensors", vae_to_original(vae.state_dict(), vae_table(vae.config)))
    (root / "controlnet").mkdir()  # an InstantX-style ControlNet for it, its weights alone as ComfyUI keeps them
    controlnet = reference_controlnet(root / "cn-folder", attention_head_dim=128, num_attention_heads=1,
                                      axes_dims_rope=(16, 56, 56))
    save_file(controlnet.state_dict(), root / "controlnet" / "flux-cn.safetensors")
    (root / "loras").mkdir()
    kohya = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    save_file({kohya: torch.zeros(4, 768)}, root / "loras" / "detail15.safetensors")
    qkv = "lora_unet_double_blocks_0_img_attn_qkv"  # a FLUX.1 LoRA in kohya's names (zero: it changes nothing)
    save_file({f"{qkv}.lora_down.weight": torch.zeros(4, 128), f"{qkv}.lora_up.weight": torch.zeros(384, 4)},
              root / "loras" / "flux-detail.safetensors")
    return root


@pytest.fixture(scope="module")
def flux_server(tmp_path_factory, make_server, flux_models):
    served = make_server(tmp_path_factory.mktemp("serve-flux"), flags=("--models-dir", str(flux_models))).start()
    yield served
    served.stop()


def comfy_flux_dev():
    """ComfyUI's FLUX.1-dev example graph (its API format): UNETLoader, DualCLIPLoader and VAELoader, FluxGuidance
    at 4, SamplerCustomAdvanced with RandomNoise, BasicGuider, KSamplerSelect and BasicScheduler, from an
    EmptySD3LatentImage; ModelSamplingFlux at FLUX.1-dev's shifts, a FLUX.1 LoRA and an SD 1.x one on the model's
    way."""
    return {
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a handwritten seven", "clip": ["11", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["8", 0]}},
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors",
                                                          "clip_name2": "clip_l.safetensors", "type": "flux"}},
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-tuned.safetensors",
                                                      "weight_dtype": "default"}},
        "13": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0],
                                                                 "sampler": ["16", 0], "sigmas": ["17", 0],
                                                                 "latent_image": ["27", 0]}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 3, "denoise": 1.0,
                                                          "model": ["30", 0]}},
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["30", 0], "conditioning": ["26", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
        "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 4.0, "conditioning": ["6", 0]}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "30": {"class_type": "ModelSamplingFlux", "inputs": {"max_shift": 1.15, "base_shift": 0.5, "width": 32,
                                                             "height": 32, "model": ["31", 0]}},
        "31": {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "detail15.safetensors",
                                                               "strength_model": 0.7, "model": ["32", 0]}},
        "32": {"class_type": "LoraLoader", "inputs": {"lora_name": "flux-detail.safetensors", "strength_model": 0.8,
                                                      "strength_clip": 0.8, "model": ["12", 0], "clip": ["11", 0]}},
    }


def on_the_files(blocks, flux_models):
    """``blocks`` bound to the FLUX.1 folder of ``flux_models``, with its transformer file and its VAE file."""
    from tiny_models import build_pipeline

    from diffblocks.components.models import AutoencoderKL, FluxTransformer2DModel

    pipe = build_pipeline(blocks, flux_models / "diffusers" / "flux-dev")
    tuned = flux_models / "diffusion_models" / "flux1-tuned.safetensors"
    vae = AutoencoderKL.from_single_file(flux_models / "vae" / "ae.safetensors", config=dict(pipe.vae.config))
    pipe.update_components(transformer=FluxTransformer2DModel.from_single_file(tuned), vae=vae)
    return pipe


# what comfy_flux_dev becomes on flux_models
FLUX_DEV_WORKFLOW = {"nodes": {
    "load": {"type": "LoadComponents", "inputs": {"repo": "flux-dev", "without": ["transformer"]}},
    "transformer": {"type": "LoadFluxTransformer", "inputs": {"file": "flux1-tuned.safetensors",
                                                              "components": LINK("load", "components")}},
    "lora": {"type": "LoadLoRA", "inputs": {"components": LINK("transformer", "components"),
                                            "repo": "flux-detail.safetensors", "scale": 0.8}},
    "vae": {"type": "LoadVAE", "inputs": {"file": "ae.safetensors", "components": LINK("lora", "components")}},
    "run": {"type": "preset:flux-text2image", "inputs": {
        "components": LINK("vae", "components"), "prompt": "a handwritten seven", "guidance_scale": 4.0,
        "num_inference_steps": 3, "seed": 5, "width": 32, "height": 32}},
}}


def comfy_png(graph):
    """A PNG's text chunks as ComfyUI writes them: its graph in the API format."""
    info = PngInfo()
    info.add_text("prompt", json.dumps(graph))
    return info


def test_a_comfyui_flux_graph_runs_on_the_servers_flux_folder_and_the_files_it_names(
        page, flux_server, flux_models, tmp_path, shots):
    """The FLUX.1-dev example graph becomes the FLUX.1 preset on the server's FLUX.1 folder, loaded without its
    transformer, the UNETLoader's file put in its place, its FLUX.1 LoRA and the VAELoader's file after it, at the
    graph's prompt, guidance, seed, steps and size; the SD 1.x LoRA is left out, saying why. Run, it draws the
    pixels the FLUX.1 pipeline draws from Python with the same files (tolerance 0; the LoRA, of zeros, changes
    none)."""
    import torch

    from diffblocks.presets import flux

    open_editor(page, flux_server)
    drop(page, tmp_path / "flux.png", comfy_png(comfy_flux_dev()))
    wait_for(page, "nodes.run?.type === 'preset:flux-text2image'")
    assert page.evaluate("window.diffblocks.workflow()") == FLUX_DEV_WORKFLOW
    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text("the text encoders are flux-dev's (t5xxl_fp16.safetensors, clip_l.safetensors "
                                   "not read)")
    expect(notice).to_contain_text("LoRA 'detail15.safetensors' left out: it is for SD 1.x models")
    expect(notice).not_to_contain_text("ModelSamplingFlux")  # at FLUX.1-dev's shifts: the folder's scheduler's
    page.screenshot(path=str(shots / "37-comfyui-flux-import.png"))
    run(page)

    pipe = on_the_files(flux.TEXT2IMAGE_BLOCKS, flux_models)
    expected = pipe(prompt="a handwritten seven", guidance_scale=4.0, num_inference_steps=3, height=32, width=32,
                    generator=torch.Generator().manual_seed(5), output="images")[0]
    assert np.array_equal(pixels(flux_server, shown_image(page)), np.asarray(expected.convert("RGB")))


def test_a_flux_ksampler_graph_with_true_cfg_and_a_one_file_checkpoint(page, flux_server, tmp_path):
    """ComfyUI's simpler FLUX.1 graph: one all-in-one checkpoint file (its transformer read, the folder's text
    encoders and VAE: said), a KSampler at CFG 2 with a negative prompt (ComfyUI's true CFG: a CFG guider here, with
    the negative prompt) and an EmptySD3LatentImage; a sampler other than Euler is said to be left out."""
    graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 4, "cfg": 2.0, "sampler_name": "dpmpp_2m",
                                                   "scheduler": "simple", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["10", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux1-dev-fp8.safetensors"}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 48, "height": 32, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a handwritten seven", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "10": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
    }
    open_editor(page, flux_server)
    drop(page, tmp_path / "simple.png", comfy_png(graph))
    wait_for(page, "nodes.run?.type === 'preset:flux-text2image'")
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert workflow["nodes"]["load"] == {"type": "LoadComponents", "inputs": {"repo": "flux-dev",
                                                                             "without": ["transformer"]}}
    assert workflow["nodes"]["transformer"] == {"type": "LoadFluxTransformer", "inputs": {
        "checkpoint": "flux1-dev-fp8.safetensors", "components": LINK("load", "components")}}
    assert workflow["nodes"]["cfg"] == {"type": "ClassifierFreeGuidance", "inputs": {"guidance_scale": 2.0}}
    assert {k: v for k, v in workflow["nodes"]["run"]["inputs"].items() if k != "components"} == {
        "prompt": "a handwritten seven", "negative_prompt": "blurry", "guidance_scale": 3.5, "num_inference_steps": 4,
        "seed": 7, "width": 48, "height": 32, "guider": LINK("cfg", "guider")}
    assert workflow["nodes"]["run"]["inputs"]["components"] == LINK("transformer", "components")
    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text("the VAE is flux-dev's (flux1-dev-fp8.safetensors's own is not read)")
    expect(notice).to_contain_text("left out: the sampler 'dpmpp_2m' (FLUX.1 samples with Euler here)")
    run(page)


def test_without_a_flux_folder_the_graph_loads_the_pages_model_and_says_why(page, server, tmp_path):
    open_editor(page, server)
    drop(page, tmp_path / "flux.png", comfy_png(comfy_flux_dev()))
    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text("ComfyUI's graph is FLUX.1's, and the server has no FLUX.1 model folder")
    expect(notice).to_contain_text("the graph loads embedded")
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert workflow["nodes"]["run"]["type"] == "preset:sd15-text2image"
    assert workflow["nodes"]["run"]["inputs"]["prompt"] == "a handwritten seven"


# the widgets of comfy_flux_dev's nodes in the order ComfyUI's editor saves their values (its seed's "control after
# generate" after the seed)
EDITOR_WIDGETS = {
    "CLIPTextEncode": ["text"], "SaveImage": ["filename_prefix"], "VAELoader": ["vae_name"],
    "DualCLIPLoader": ["clip_name1", "clip_name2", "type"], "UNETLoader": ["unet_name", "weight_dtype"],
    "KSamplerSelect": ["sampler_name"], "BasicScheduler": ["scheduler", "steps", "denoise"],
    "RandomNoise": ["noise_seed", "randomize"], "FluxGuidance": ["guidance"],
    "EmptySD3LatentImage": ["width", "height", "batch_size"],
    "ModelSamplingFlux": ["max_shift", "base_shift", "width", "height"],
    "LoraLoaderModelOnly": ["lora_name", "strength_model"],
    "LoraLoader": ["lora_name", "strength_model", "strength_clip"],
}


def editor_graph(prompt):
    """ComfyUI's API-format ``prompt`` as its editor saves it: widget values by position, links listed apart."""
    nodes, links = [], []
    for node_id, node in prompt.items():
        inputs = []
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                links.append([len(links) + 1, int(value[0]), value[1], int(node_id), len(inputs), "*"])
                inputs.append({"name": name, "type": "*", "link": len(links)})
        values = [node["inputs"].get(name, name) for name in EDITOR_WIDGETS.get(node["class_type"], [])]
        nodes.append({"id": int(node_id), "type": node["class_type"], "mode": 0, "inputs": inputs,
                      "widgets_values": values})
    return {"last_node_id": max(int(i) for i in prompt), "nodes": nodes, "links": links}


def test_the_editor_format_of_a_flux_graph_reads_as_its_api_format(page, flux_server, tmp_path):
    """The FLUX.1-dev example graph saved by ComfyUI's editor (a workflow .json: widget values by position) becomes
    the same workflow as its API format does."""
    open_editor(page, flux_server)
    drop(page, tmp_path / "flux.json", document=editor_graph(comfy_flux_dev()))
    wait_for(page, "nodes.run?.type === 'preset:flux-text2image'")
    assert page.evaluate("window.diffblocks.workflow()") == FLUX_DEV_WORKFLOW


def test_a_forge_flux_image_becomes_the_same_graph(page, flux_server, tmp_path):
    """Forge's FLUX.1 image (A1111's parameters with its Distilled CFG Scale; the model a transformer named by its
    stem, its "Module N" the VAE and text encoders) becomes the workflow ComfyUI's graph of the same settings does:
    the distilled guidance, not CFG (1 there), and no sampler node (Euler is FLUX.1's own)."""
    info = PngInfo()
    info.add_text("parameters", "a handwritten seven<lora:flux-detail:0.8>\nSteps: 3, Sampler: Euler, Schedule type: "
                                "Simple, CFG scale: 1, "
                                "Distilled CFG Scale: 4, Seed: 5, Size: 32x32, Model hash: 4610115bb0, Model: "
                                "flux1-tuned, Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16, Version: f2.0.1")
    open_editor(page, flux_server)
    drop(page, tmp_path / "forge.png", info)
    wait_for(page, "nodes.run?.type === 'preset:flux-text2image'")
    assert page.evaluate("window.diffblocks.workflow()") == FLUX_DEV_WORKFLOW
    expect(page.get_by_test_id("notice")).to_contain_text("the text encoders are flux-dev's (clip_l, t5xxl_fp16 not "
                                                          "read)")


def test_a_flux_graphs_controlnet_loads_from_the_controlnet_folder_and_changes_the_image(
        page, flux_server, tmp_path):
    """ComfyUI's FLUX.1 ControlNet graph (ControlNetLoader, ControlNetApplySD3 between FluxGuidance and the guider, its
    image a LoadImage of ComfyUI's input folder): the ControlNet preset with LoadFluxControlNet of that file (its
    weights alone, the config read off them) at its strength and end, and a Load Image node the notice asks to
    upload into. With the image, the page draws what the server draws, which the ControlNet changes."""
    from PIL import Image
    from test_import import assert_draws, upload
    from test_import_adapters import without

    graph = comfy_flux_dev()
    graph["40"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "flux-cn.safetensors"}}
    graph["41"] = {"class_type": "LoadImage", "inputs": {"image": "edges.png", "upload": "image"}}
    graph["42"] = {"class_type": "ControlNetApplySD3", "inputs": {
        "positive": ["26", 0], "negative": ["26", 0], "control_net": ["40", 0], "vae": ["10", 0], "image": ["41", 0],
        "strength": 0.6, "start_percent": 0.0, "end_percent": 0.9}}
    graph["22"]["inputs"]["conditioning"] = ["42", 0]
    open_editor(page, flux_server)
    drop(page, tmp_path / "flux-cn.png", comfy_png(graph))
    wait_for(page, "nodes.run?.type === 'preset:flux-controlnet'")
    expected = json.loads(json.dumps(FLUX_DEV_WORKFLOW))
    expected["nodes"]["run"]["type"] = "preset:flux-controlnet"
    expected["nodes"]["run"]["inputs"].update(controlnet=LINK("controlnet", "controlnet"),
                                              control_image=LINK("control", "image"),
                                              controlnet_conditioning_scale=0.6, control_guidance_end=0.9)
    expected["nodes"].update(controlnet={"type": "LoadFluxControlNet", "inputs": {"repo": "flux-cn.safetensors"}},
                             control={"type": "LoadImage", "inputs": {}})
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert workflow == expected
    expect(page.get_by_test_id("notice")).to_contain_text("upload the control image (edges.png in ComfyUI's input "
                                                          "folder) into the Load Image node")
    picture = tmp_path / "edges.png"
    Image.fromarray((np.indices((32, 32)).sum(0) % 8 < 4).astype("uint8") * 255).convert("RGB").save(picture)
    upload(page, "control", picture)
    run(page)
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert_draws(page, flux_server, workflow, without(workflow, "run", "controlnet_conditioning_scale", 0.0),
                 "the ControlNet")


def test_a_comfyui_kontext_graph_edits_the_uploaded_image_as_the_python_pipeline_does(
        page, flux_server, flux_models, tmp_path, shots):
    """ComfyUI's FLUX.1 Kontext graph (the image VAE-encoded into a ReferenceLatent on the prompt's way, the sampler
    painting over that latent at denoise 1): the Kontext preset with a Load
    Image node for the image the notice asks for, at its own size (no FluxKontextImageScale in the graph:
    auto_resize off). With the image, it draws the pixels the Kontext preset draws from Python with the same files
    (tolerance 0)."""
    import torch
    from PIL import Image
    from test_import import upload
    from tiny_models import make_image

    from diffblocks.presets import flux

    graph = comfy_flux_dev()
    del graph["27"], graph["31"], graph["32"]  # no empty latent, no LoRAs
    graph["30"]["inputs"]["model"] = ["12", 0]
    graph["6"]["inputs"]["text"] = "make it bold"
    graph["50"] = {"class_type": "LoadImage", "inputs": {"image": "seven.png", "upload": "image"}}
    graph["51"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["50", 0], "vae": ["10", 0]}}
    graph["52"] = {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["6", 0], "latent": ["51", 0]}}
    graph["26"]["inputs"].update(conditioning=["52", 0], guidance=2.5)
    graph["13"]["inputs"]["latent_image"] = ["51", 0]
    open_editor(page, flux_server)
    drop(page, tmp_path / "kontext.png", comfy_png(graph))
    wait_for(page, "nodes.run?.type === 'preset:flux-kontext'")
    workflow = page.evaluate("window.diffblocks.workflow()")
    expected = json.loads(json.dumps(FLUX_DEV_WORKFLOW))
    del expected["nodes"]["lora"]
    expected["nodes"]["vae"]["inputs"]["components"] = LINK("transformer", "components")
    expected["nodes"]["source"] = {"type": "LoadImage", "inputs": {}}
    run_inputs = expected["nodes"]["run"]["inputs"]
    del run_inputs["width"], run_inputs["height"]
    run_inputs.update(prompt="make it bold", guidance_scale=2.5, image=LINK("source", "image"), auto_resize=False)
    expected["nodes"]["run"]["type"] = "preset:flux-kontext"
    assert workflow == expected
    expect(page.get_by_test_id("notice")).to_contain_text("upload the image to edit (seven.png in ComfyUI's input "
                                                          "folder) into the Load Image node")
    make_image(7, size=32).save(tmp_path / "seven.png")
    upload(page, "source", tmp_path / "seven.png")
    run(page)
    page.screenshot(path=str(shots / "38-comfyui-kontext-import.png"))

    pipe = on_the_files(flux.KONTEXT_BLOCKS, flux_models)
    expected_image = pipe(prompt="make it bold", image=Image.open(tmp_path / "seven.png").convert("RGB"),
                          auto_resize=False, guidance_scale=2.5, num_inference_steps=3,
                          generator=torch.Generator().manual_seed(5), output="images")[0]
    assert np.array_equal(pixels(flux_server, shown_image(page)), np.asarray(expected_image.convert("RGB")))


def test_a_flux_fill_graph_becomes_the_fill_preset_and_inpainting_with_dev_the_inpaint_one(
        page, flux_server, tmp_path):
    """ComfyUI's FLUX.1 Fill graph (InpaintModelConditioning: the prompt, the image and its mask from the image's
    transparency) becomes the Fill preset with Load Image nodes for the image and its mask; the dev model's
    inpainting (SetLatentNoiseMask over a VAEEncode, at the sampler's denoise) the inpainting preset at that
    strength."""
    graph = comfy_flux_dev()
    del graph["27"]
    graph["50"] = {"class_type": "LoadImage", "inputs": {"image": "room.png", "upload": "image"}}
    graph["51"] = {"class_type": "InpaintModelConditioning", "inputs": {
        "positive": ["26", 0], "negative": ["26", 0], "vae": ["10", 0], "pixels": ["50", 0], "mask": ["50", 1],
        "noise_mask": True}}
    graph["22"]["inputs"]["conditioning"] = ["51", 0]
    graph["13"]["inputs"]["latent_image"] = ["51", 2]
    expected = json.loads(json.dumps(FLUX_DEV_WORKFLOW))
    expected["nodes"].update(source={"type": "LoadImage", "inputs": {}}, mask={"type": "LoadImage", "inputs": {}})
    run_inputs = expected["nodes"]["run"]["inputs"]
    del run_inputs["width"], run_inputs["height"]
    run_inputs.update(image=LINK("source", "image"), mask_image=LINK("mask", "image"))
    open_editor(page, flux_server)
    for preset, strength in (("fill", None), ("inpaint", 0.7)):
        if preset == "inpaint":  # the dev model's: the image encoded, the mask on the latent
            graph["51"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["52", 0], "mask": ["50", 1]}}
            graph["52"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["50", 0], "vae": ["10", 0]}}
            graph["22"]["inputs"]["conditioning"] = ["26", 0]
            graph["13"]["inputs"]["latent_image"] = ["51", 0]
            graph["17"]["inputs"]["denoise"] = strength
            run_inputs["strength"] = strength
        drop(page, tmp_path / f"{preset}.png", comfy_png(graph))
        wait_for(page, f"nodes.run?.type === 'preset:flux-{preset}'")
        expected["nodes"]["run"]["type"] = f"preset:flux-{preset}"
        assert page.evaluate("window.diffblocks.workflow()") == expected
        expect(page.get_by_test_id("notice")).to_contain_text("upload the image to inpaint (room.png in ComfyUI's "
                                                              "input folder) and its mask")


def test_a_flux_hires_fix_becomes_its_two_passes(page, flux_server, tmp_path):
    """A second SamplerCustomAdvanced painting the first one's latents again, enlarged 1.5 times (LatentUpscaleBy),
    with its own noise and its scheduler's steps and denoise: a lanczos ScaleImage and the FLUX.1 image-to-image
    preset at that strength, steps and seed, with the first pass's prompt and guidance."""
    graph = comfy_flux_dev()
    graph["60"] = {"class_type": "LatentUpscaleBy", "inputs": {"upscale_method": "bislerp", "scale_by": 1.5,
                                                               "samples": ["13", 0]}}
    graph["61"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 9}}
    graph["62"] = {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 4, "denoise": 0.5,
                                                              "model": ["30", 0]}}
    graph["63"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["61", 0], "guider": ["22", 0],
                                                                     "sampler": ["16", 0], "sigmas": ["62", 0],
                                                                     "latent_image": ["60", 0]}}
    graph["8"]["inputs"]["samples"] = ["63", 0]
    open_editor(page, flux_server)
    drop(page, tmp_path / "flux-hires.png", comfy_png(graph))
    wait_for(page, "nodes.hires?.type === 'preset:flux-image2image'")
    workflow = page.evaluate("window.diffblocks.workflow()")
    first = {k: v for k, v in FLUX_DEV_WORKFLOW["nodes"]["run"]["inputs"].items() if k not in ("width", "height")}
    assert workflow["nodes"]["run"] == FLUX_DEV_WORKFLOW["nodes"]["run"]
    assert workflow["nodes"]["scale"] == {"type": "ScaleImage", "inputs": {"image": LINK("run", "images"),
                                                                           "scale_by": 1.5, "method": "lanczos"}}
    assert workflow["nodes"]["hires"] == {"type": "preset:flux-image2image", "inputs": {
        **first, "image": LINK("scale", "image"), "strength": 0.5, "num_inference_steps": 4, "seed": 9}}
    expect(page.get_by_test_id("notice")).to_contain_text("the latent upscale (lanczos instead)")
