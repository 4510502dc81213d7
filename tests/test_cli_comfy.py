"""``run --from-image`` on images ComfyUI made: the settings of their graph (its API format, the image's "prompt"
text) as the same flags given by hand draw them: a text-to-image graph, its hires fix, FLUX.1's."""

import pytest
from PIL import Image

from test_cli import assert_one_line_error, read_infotext, run_cli


def comfy_graph(latent=None, **sampler):
    """ComfyUI's default text-to-image graph in its API format, as its images hold it (their "prompt" text)."""
    return {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 3, "steps": 5, "cfg": 5.0, "sampler_name": "euler_ancestral", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0], **sampler}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": latent or {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a handwritten seven", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def comfy_image(path, graph):
    import json

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("prompt", json.dumps(graph))
    info.add_text("workflow", json.dumps({"last_node_id": 9, "nodes": [], "links": []}))  # its editor's layout
    Image.new("RGB", (32, 32)).save(path, pnginfo=info)


def test_from_image_reads_a_comfyui_images_text_to_image_settings(capsys, tmp_path):
    """A ComfyUI image's graph (one KSampler from an EmptyLatentImage, CLIPTextEncode prompts): its seed, steps, CFG,
    sampler, size and prompts, as the same flags given by hand draw them; any other graph is refused, saying why."""
    comfy_image(tmp_path / "comfy.png", comfy_graph())
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "comfy.png"), "--out", str(tmp_path / "a.png"),
                           "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps",
                           "5", "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler-a", "--height", "32",
                           "--width", "32", "--out", str(tmp_path / "b.png"), "--no-progress")
    assert code == 0, err
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.tobytes() == b.tobytes() and a.text["parameters"] == b.text["parameters"]
    for name, graph, fragment in [
        ("i2i.png", comfy_graph(latent={"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0]}}),
         "does not start from an EmptyLatentImage"),
        ("two.png", {**comfy_graph(), "10": comfy_graph()["3"]}, "with 2 samplers"),
    ]:
        comfy_image(tmp_path / name, graph)
        code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / name), "--out", str(tmp_path / "x.png"))
        assert_one_line_error(code, err, f"--from-image {tmp_path / name}: holds a ComfyUI graph")
        assert fragment in err


def comfy_hires_graph(**second):
    """ComfyUI's hires fix: the default graph, its latents enlarged 1.5 times (LatentUpscaleBy) and painted again by
    a second KSampler at its denoise."""
    graph = comfy_graph()
    graph["10"] = {"class_type": "LatentUpscaleBy", "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5,
                                                               "samples": ["3", 0]}}
    graph["11"] = {"class_type": "KSampler", "inputs": {**graph["3"]["inputs"], "latent_image": ["10", 0],
                                                        "denoise": 0.6, "steps": 8, **second}}
    graph["8"]["inputs"]["samples"] = ["11", 0]
    return graph


def test_from_image_reads_a_comfyui_hires_fix(capsys, tmp_path):
    """ComfyUI's hires fix (a second KSampler painting the first one's enlarged result again) is the hires pass: its
    factor, denoise, steps and latent upscale method, as the flags given by hand draw it; what it does not take is
    said on stderr (the second KSampler's own seed). An upscale model and an image scale: their product, the model
    named."""
    graph = comfy_hires_graph(seed=99)
    comfy_image(tmp_path / "hires.png", graph)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "hires.png"), "--out", str(tmp_path / "a.png"),
                           "--no-progress")
    assert code == 0, err
    assert "upscaler" not in err  # its latents enlarged as ComfyUI enlarges them
    assert f"note: {tmp_path / 'hires.png'}: its second KSampler's own seed (99) is not taken" in err
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps",
                           "5", "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler-a", "--height", "32",
                           "--width", "32", "--hires", "1.5", "--hires-strength", "0.6", "--hires-steps", "8",
                           "--hires-upscaler", "latent-nearest-exact", "--out", str(tmp_path / "b.png"),
                           "--no-progress")
    assert code == 0, err
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.size == (48, 48) and a.tobytes() == b.tobytes()

    from diffblocks.cli import comfy

    graph = comfy_hires_graph()
    graph["10"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["13", 0], "vae": ["4", 2]}}
    graph["12"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    graph["13"] = {"class_type": "ImageScaleBy", "inputs": {"upscale_method": "lanczos", "scale_by": 0.5,
                                                            "image": ["14", 0]}}
    graph["14"] = {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["15", 0], "image": ["12", 0]}}
    graph["15"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}}
    _, _, fields, notes = comfy.settings(graph)
    assert (fields["Hires upscale"], fields["Hires upscaler"], notes) == (2, "4x-UltraSharp", [])
    graph["15"]["inputs"]["model_name"] = "SwinIR.pth"  # a factor not known: not a hires fix read here
    with pytest.raises(ValueError, match="with 2 samplers"):
        comfy.settings(graph)


def comfy_flux_graph():
    """ComfyUI's FLUX.1-dev example graph: SamplerCustomAdvanced with RandomNoise, BasicGuider, KSamplerSelect and
    BasicScheduler, the prompt through FluxGuidance at 5, from an EmptySD3LatentImage, the transformer a
    UNETLoader's."""
    return {
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["11", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors",
                                                          "clip_name2": "clip_l.safetensors", "type": "flux"}},
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "13": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0],
                                                                 "sampler": ["16", 0], "sigmas": ["17", 0],
                                                                 "latent_image": ["27", 0]}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 3, "denoise": 1.0,
                                                          "model": ["12", 0]}},
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["12", 0], "conditioning": ["26", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 4}},
        "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 5.0, "conditioning": ["6", 0]}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
    }


def test_from_image_reads_a_comfyui_flux_graph(capsys, tmp_path):
    """ComfyUI's FLUX.1 graph: its prompt, FluxGuidance (the distilled guidance), seed, steps and size, as the
    flags given by hand draw them on a FLUX.1 folder; its UNETLoader's file is named, to give as --transformer. A
    KSampler through FluxGuidance reads the same."""
    from tiny_flux import make_flux_repo

    from diffblocks.cli import comfy

    repo = make_flux_repo(tmp_path / "flux", dev=True)
    comfy_image(tmp_path / "flux.png", comfy_flux_graph())
    flux = ["--model", str(repo), "--preset", "flux-text2image", "--no-progress"]
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "flux.png"), *flux,
                           "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    assert (f"note: {tmp_path / 'flux.png'}: its transformer is the UNETLoader's flux1-dev.safetensors: give it as "
            "--transformer FILE") in err
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--seed", "4", "--steps", "3", "--distilled-guidance",
                           "5", "--height", "32", "--width", "32", *flux, "--out", str(tmp_path / "b.png"))
    assert code == 0, err
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.tobytes() == b.tobytes() and read_infotext(tmp_path / "a.png")[2]["Distilled CFG Scale"] == "5"

    graph = comfy_flux_graph()
    graph["13"] = {"class_type": "KSampler", "inputs": {
        "seed": 4, "steps": 3, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
        "model": ["12", 0], "positive": ["26", 0], "negative": ["6", 0], "latent_image": ["27", 0]}}
    prompt, _, fields, _ = comfy.settings(graph)
    assert (prompt, fields["Distilled CFG Scale"], fields["Seed"], fields["Steps"], fields["CFG scale"]) == (
        "a cat", 5.0, 4, 3, 1.0)


def test_from_image_names_a_comfyui_graphs_controlnet_and_loras(capsys, tmp_path):
    """A ControlNet between the prompts and the KSampler (ControlNetApplyAdvanced) and a LoRA on the model's way:
    the prompts are read through them, and each is named on stderr with the flags to give (their files are not
    read from ComfyUI's folders); the settings draw as before."""
    graph = comfy_graph()
    graph["20"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "control_v11p_sd15_canny.pth"}}
    graph["21"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
        "positive": ["6", 0], "negative": ["7", 0], "control_net": ["20", 0], "image": ["22", 0], "strength": 0.7,
        "start_percent": 0.0, "end_percent": 1.0}}
    graph["22"] = {"class_type": "LoadImage", "inputs": {"image": "edges.png"}}
    graph["23"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors", "strength_model": 0.8,
                                                          "strength_clip": 0.8, "model": ["4", 0], "clip": ["4", 1]}}
    graph["3"]["inputs"].update(positive=["21", 0], negative=["21", 1], model=["23", 0])
    comfy_image(tmp_path / "cn.png", graph)
    comfy_image(tmp_path / "plain.png", comfy_graph())
    for name in ("cn", "plain"):
        code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / f"{name}.png"),
                               "--out", str(tmp_path / f"{name}-out.png"), "--no-progress")
        assert code == 0, err
        if name == "cn":
            assert (f"note: {tmp_path / 'cn.png'}: its ControlNet is control_v11p_sd15_canny.pth at strength 0.7: give "
                    "it as --controlnet FILE --control-image IMAGE --controlnet-scale STRENGTH") in err
            assert (f"note: {tmp_path / 'cn.png'}: its LoRA is ink.safetensors at strength 0.8: give it as --lora "
                    "FILE:STRENGTH") in err
    assert Image.open(tmp_path / "cn-out.png").tobytes() == Image.open(tmp_path / "plain-out.png").tobytes()


def test_from_image_reads_a_comfyui_inpainting_graph_given_the_image_and_mask(capsys, tmp_path):
    """ComfyUI's inpainting graph (VAEEncodeForInpaint over a LoadImage, its mask the image's transparency): its
    settings and its denoise as the strength, drawing what the flags draw with the image and mask given; stderr
    says to give them."""
    import numpy as np

    graph = comfy_graph(latent={"class_type": "VAEEncodeForInpaint", "inputs": {
        "pixels": ["10", 0], "vae": ["4", 2], "mask": ["10", 1], "grow_mask_by": 0}}, denoise=0.8)
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": "four.png"}}
    comfy_image(tmp_path / "inpaint.png", graph)
    Image.fromarray((np.indices((32, 32))[1] * 8 % 256).astype("uint8")).convert("RGB").save(tmp_path / "four.png")
    Image.fromarray(((np.indices((32, 32))[0] > 16) * 255).astype("uint8")).save(tmp_path / "mask.png")
    images = ["--preset", "sd15-inpaint", "--image", str(tmp_path / "four.png"),
              "--mask-image", str(tmp_path / "mask.png")]
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "inpaint.png"), *images,
                           "--out", str(tmp_path / "a.png"), "--no-progress")
    assert code == 0, err
    assert (f"note: {tmp_path / 'inpaint.png'}: an inpainting graph: give its image (four.png) as --image and its mask "
            "(white where it is painted again; ComfyUI reads it from the image's transparency) as --mask-image") in err
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps",
                           "5", "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler-a", "--strength", "0.8",
                           *images, "--out", str(tmp_path / "b.png"), "--no-progress")
    assert code == 0, err
    assert Image.open(tmp_path / "a.png").tobytes() == Image.open(tmp_path / "b.png").tobytes()


def test_from_image_reads_a_comfyui_graphs_model_sampling(capsys, tmp_path):
    """ModelSamplingDiscrete on the model's way (a v-prediction checkpoint whose file does not say so) is
    --prediction-type and --zero-snr; a sampling those do not take is named."""
    graph = comfy_graph()
    graph["20"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"sampling": "v_prediction", "zsnr": True,
                                                                     "model": ["4", 0]}}
    graph["3"]["inputs"]["model"] = ["20", 0]
    comfy_image(tmp_path / "vpred.png", graph)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "vpred.png"), "--out", str(tmp_path / "a.png"),
                           "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps",
                           "5", "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler-a", "--height", "32",
                           "--width", "32", "--prediction-type", "v_prediction", "--zero-snr",
                           "--out", str(tmp_path / "b.png"), "--no-progress")
    assert code == 0, err
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.tobytes() == b.tobytes() and a.text["parameters"] == b.text["parameters"]
    assert "Prediction type: v_prediction, Zero SNR: True" in a.text["parameters"]

    graph["3"]["inputs"].update(sampler_name="dpmpp_2m", scheduler="karras")  # the commonest setting
    comfy_image(tmp_path / "karras.png", graph)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "karras.png"), "--out",
                           str(tmp_path / "k.png"), "--no-progress")
    assert code == 0, err
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in Image.open(tmp_path / "k.png").text["parameters"]

    graph["20"]["inputs"]["sampling"] = "lcm"
    comfy_image(tmp_path / "lcm.png", graph)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "lcm.png"), "--out", str(tmp_path / "c.png"),
                           "--no-progress")
    assert code == 0, err
    assert "its ModelSamplingDiscrete's sampling 'lcm' is not taken" in err
    assert "Prediction type" not in Image.open(tmp_path / "c.png").text["parameters"]


def test_from_image_reads_a_comfyui_graphs_clip_skip(capsys, tmp_path):
    """CLIPSetLastLayer on the prompt's CLIP (through a LoRA loader, as graphs have it): its -2 is --clip-skip 2."""
    graph = comfy_graph()
    graph["20"] = {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["4", 1]}}
    graph["21"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors", "strength_model": 0.8,
                                                          "strength_clip": 0.8, "model": ["4", 0], "clip": ["20", 0]}}
    graph["6"]["inputs"]["clip"] = graph["7"]["inputs"]["clip"] = ["21", 1]
    comfy_image(tmp_path / "skip.png", graph)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "skip.png"), "--out", str(tmp_path / "a.png"),
                           "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps",
                           "5", "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler-a", "--height", "32",
                           "--width", "32", "--clip-skip", "2", "--out", str(tmp_path / "b.png"), "--no-progress")
    assert code == 0, err
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.tobytes() == b.tobytes() and a.text["parameters"] == b.text["parameters"]
    assert "Clip skip: 2" in a.text["parameters"]


@pytest.mark.parametrize("sampler, flag", [("dpm_2", "dpm2"), ("dpm_2_ancestral", "dpm2-a")])
def test_from_image_reads_comfyuis_dpm2_samplers(capsys, tmp_path, sampler, flag):
    """ComfyUI's dpm_2 and dpm_2_ancestral with its karras scheduler: A1111's DPM2 and DPM2 a, Karras."""
    comfy_image(tmp_path / "comfy.png", comfy_graph(sampler_name=sampler, scheduler="karras"))
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "comfy.png"), "--out", str(tmp_path / "a.png"),
                           "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps",
                           "5", "--seed", "3", "--guidance-scale", "5", "--scheduler", flag, "--schedule-type",
                           "karras", "--height", "32", "--width", "32", "--out", str(tmp_path / "b.png"),
                           "--no-progress")
    assert code == 0, err
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.tobytes() == b.tobytes() and a.text["parameters"] == b.text["parameters"]
    assert f"Sampler: {'DPM2 a' if flag == 'dpm2-a' else 'DPM2'}, Schedule type: Karras" in a.text["parameters"]


def test_from_image_reads_comfyuis_sgm_uniform_scheduler_as_trailing_timesteps(capsys, tmp_path):
    """ComfyUI's sgm_uniform scheduler (Lightning / Turbo graphs): A1111's SGM Uniform, trailing timesteps."""
    comfy_image(tmp_path / "comfy.png", comfy_graph(sampler_name="euler", scheduler="sgm_uniform"))
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "comfy.png"), "--out", str(tmp_path / "a.png"),
                           "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps",
                           "5", "--seed", "3", "--guidance-scale", "5", "--scheduler", "euler", "--schedule-type",
                           "sgm-uniform", "--height", "32", "--width", "32", "--out", str(tmp_path / "b.png"),
                           "--no-progress")
    assert code == 0, err
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.tobytes() == b.tobytes() and a.text["parameters"] == b.text["parameters"]
    assert "Sampler: Euler, Schedule type: SGM Uniform" in a.text["parameters"]
