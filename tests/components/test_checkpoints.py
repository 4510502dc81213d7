"""Original SD 1.x / 2.x / SDXL checkpoints (one .safetensors or .ckpt, as A1111 and ComfyUI keep them): every model equals the
repo's it was written from, bitwise (tolerance 0), and so do the images of a pipeline loaded from the file; diffusers'
own single-file loader reads the same files into the same weights (so the test files are genuine)."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_checkpoints import (CALL, make_controlnet_file, pipeline_with, save_tensors, to_original, write_checkpoint,
                              write_vae)
from tiny_models import build_pipeline

from diffblocks.components.checkpoint_names import unet_table, vae_table
from diffblocks.components.checkpoints import checkpoint_family, file_family, load_checkpoint
from diffblocks.components.models import AutoencoderKL, ControlNetModel
from diffblocks.components.errors import ComponentLoadError, ConfigError, UnsafeFileError, WeightsMismatchError
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

def assert_same_weights(expected, got):
    a, b = expected.state_dict(), got.state_dict()
    assert not [k for k in a if k not in b or b[k].is_meta or not torch.equal(a[k], b[k])]


def test_an_sd15_checkpoint_holds_the_repos_models(sd_repo, sd_file):
    import diffusers

    pipe, file = sd_file
    models = load_checkpoint(file, sd_repo)
    assert set(models) == {"unet", "vae", "text_encoder"}
    for name, model in models.items():
        assert_same_weights(getattr(pipe, name), model)
    theirs = diffusers.StableDiffusionPipeline.from_single_file(str(file), config=str(sd_repo), safety_checker=None)
    for name in models:  # diffusers reads the file into the same weights: the file is a genuine original one
        assert_same_weights(getattr(pipe, name), getattr(theirs, name))


def test_an_sdxl_checkpoint_holds_the_repos_models(sdxl_repo, sdxl_file):
    import diffusers
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from safetensors.torch import load_file

    pipe, file = sdxl_file
    models = load_checkpoint(file, sdxl_repo)
    assert set(models) == {"unet", "vae", "text_encoder", "text_encoder_2"}
    for name, model in models.items():
        assert_same_weights(getattr(pipe, name), model)
    theirs = diffusers.StableDiffusionXLPipeline.from_single_file(str(file), config=str(sdxl_repo))
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(getattr(pipe, name), getattr(theirs, name))
    # diffusers' from_single_file leaves this transformers version's projection unloaded; its converter is the check
    converted = convert_open_clip_checkpoint(pipe.text_encoder_2, load_file(str(file)),
                                             prefix="conditioner.embedders.1.model.")
    expected = pipe.text_encoder_2.state_dict()
    assert converted.keys() == expected.keys() and all(torch.equal(converted[k], expected[k]) for k in expected)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_pipeline_from_the_file_renders_what_the_repo_renders(family, sd_repo, sdxl_repo, sd_file, sdxl_file):
    from diffblocks import SequentialPipelineBlocks

    repo, (tuned, file), blocks = ((sd_repo, sd_file, stable_diffusion.TEXT2IMAGE_BLOCKS) if family == "sd15" else
                                   (sdxl_repo, sdxl_file, stable_diffusion_xl.TEXT2IMAGE_BLOCKS))
    expected = pipeline_with(blocks, repo, tuned)(generator=torch.Generator().manual_seed(0), **CALL)
    pipe = SequentialPipelineBlocks.from_blocks_dict(blocks).init_pipeline(str(repo))
    pipe.load_single_file(file)
    pipe.set_progress_bar_config(disable=True)
    got = pipe(generator=torch.Generator().manual_seed(0), **CALL)
    assert torch.equal(got, expected)
    assert not torch.equal(got, build_pipeline(blocks, repo)(generator=torch.Generator().manual_seed(0), **CALL))


def test_a_half_precision_file_with_training_leftovers_loads_in_the_dtype_asked(sd_repo, sd_file, tmp_path):
    pipe, _ = sd_file
    leftovers = {"first_stage_model.loss.logvar": torch.zeros(1),  # a training file's VAE loss
                 "model_ema.decay": torch.ones(()), "model_ema.diffusion_modelout2weight": torch.zeros(1),  # EMA copy
                 "alphas_cumprod": torch.ones(1000),  # the noise schedule
                 "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(8)[None]}
    file = write_checkpoint(pipe, tmp_path / "fp16.safetensors", dtype=torch.float16, extra=leftovers)
    models = load_checkpoint(file, sd_repo, torch_dtype=torch.float32)
    unet = models["unet"]
    assert unet.dtype == torch.float32
    rounded = {k: v.half().float() for k, v in pipe.unet.state_dict().items()}
    assert all(torch.equal(rounded[k], v) for k, v in unet.state_dict().items())


def test_other_files_and_configs_say_what_is_wrong(sd_repo, sdxl_repo, sd_file, tmp_path):
    from diffblocks import SequentialPipelineBlocks

    _, file = sd_file
    with pytest.raises(ConfigError, match="FLUX.1 transformer"):
        checkpoint_family(["double_blocks.0.img_attn.qkv.weight"])
    assert checkpoint_family(["cond_stage_model.model.token_embedding.weight"]) == "sd2"
    refiner = ["conditioner.embedders.0.model.token_embedding.weight", "model.diffusion_model.label_emb.0.0.weight"]
    with pytest.raises(ConfigError, match="this file is SDXL's refiner .* load the SDXL base checkpoint"):
        checkpoint_family(refiner)
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(1)}, str(tmp_path / "lora.safetensors"))
    with pytest.raises(ConfigError, match="a LoRA"):
        load_checkpoint(tmp_path / "lora.safetensors", sd_repo)
    with pytest.raises(WeightsMismatchError, match=r"UNet2DConditionModel .*missing keys: add_embedding"):
        load_checkpoint(file, sdxl_repo)  # an SD 1.5 file with SDXL's configs
    bare = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline()
    with pytest.raises(ComponentLoadError, match=r"init_pipeline\(repo\) first"):
        bare.load_single_file(file)


def test_the_cli_reads_a_checkpoint_and_picks_its_family(sd_repo, sdxl_repo, sd_file, sdxl_file, tmp_path, capsys):
    from PIL import Image
    from test_cli import assert_one_line_error, run_cli

    common = ["--prompt", "a cat", "--steps", "3", "--device", "cpu", "--no-progress"]
    for family, repo, (tuned, file), blocks in (("sd15", sd_repo, sd_file, stable_diffusion.TEXT2IMAGE_BLOCKS),
                                                ("sdxl", sdxl_repo, sdxl_file, stable_diffusion_xl.TEXT2IMAGE_BLOCKS)):
        out = tmp_path / f"{family}.png"
        code, _, err = run_cli(capsys, "run", *common, "--model", str(file), "--config", str(repo), "--out", str(out))
        assert code == 0, err
        expected = pipeline_with(blocks, repo, tuned)(prompt="a cat", num_inference_steps=3, output="images",
                                                      generator=torch.Generator().manual_seed(0))[0]
        assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(expected))
    code, _, err = run_cli(capsys, "run", *common, "--model", str(sdxl_file[1]), "--config", str(sdxl_repo),
                           "--preset", "sd15-text2image", "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "is an SDXL checkpoint; preset 'sd15-text2image' is not")
    code, _, err = run_cli(capsys, "run", *common, "--config", str(sd_repo), "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "--config needs --model FILE.safetensors")


def test_a_vae_file_alone_in_either_layout(sd_repo, sd_file, tmp_path):
    import diffusers

    tuned, _ = sd_file
    original = write_vae(tmp_path / "vae-ft.safetensors", to_original(tuned.vae.state_dict(), vae_table(tuned.vae.config)))
    assert_same_weights(tuned.vae, AutoencoderKL.from_single_file(original, config=sd_repo))
    theirs = diffusers.AutoencoderKL.from_single_file(str(original), config=str(sd_repo), subfolder="vae")
    assert_same_weights(tuned.vae, theirs)  # diffusers reads the file the same: it is a genuine original VAE
    ours_layout = write_vae(tmp_path / "diffusion_pytorch_model.safetensors", tuned.vae.state_dict())
    assert_same_weights(tuned.vae, AutoencoderKL.from_single_file(ours_layout, config=sd_repo))


def test_the_cli_swaps_in_a_vae_file(sd_repo, sd_file, tmp_path, capsys):
    from PIL import Image
    from test_cli import assert_one_line_error, run_cli

    tuned, _ = sd_file
    file = write_vae(tmp_path / "vae.safetensors", to_original(tuned.vae.state_dict(), vae_table(tuned.vae.config)))
    common = ["run", "--prompt", "a cat", "--model", str(sd_repo), "--steps", "3", "--device", "cpu", "--no-progress"]
    code, _, err = run_cli(capsys, *common, "--vae", str(file), "--out", str(tmp_path / "out.png"))
    assert code == 0, err
    pipe = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)
    plain = pipe(prompt="a cat", num_inference_steps=3, output="images", generator=torch.Generator().manual_seed(0))[0]
    pipe.update_components(vae=AutoencoderKL.from_single_file(file, config=sd_repo))
    expected = pipe(prompt="a cat", num_inference_steps=3, output="images", generator=torch.Generator().manual_seed(0))[0]
    got = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    assert np.array_equal(got, np.asarray(expected)) and not np.array_equal(got, np.asarray(plain))
    code, _, err = run_cli(capsys, *common, "--vae", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "--vae", "not found")


def test_an_inpainting_checkpoint_holds_a_unet_reading_9_channels(sd_inpaint_repo, tmp_path):
    import diffusers

    inpaint = diffusers.StableDiffusionPipeline.from_pretrained(sd_inpaint_repo, safety_checker=None)
    file = write_checkpoint(inpaint, tmp_path / "inpainting.safetensors")
    models = load_checkpoint(file, sd_inpaint_repo)
    assert models["unet"].config.in_channels == 9
    assert_same_weights(inpaint.unet, models["unet"])


@pytest.fixture(scope="module")
def controlnet_file(sd_repo, tmp_path_factory):
    """The control-image encoder with the usual widths: diffusers' converter knows no others."""
    return make_controlnet_file(sd_repo, tmp_path_factory.mktemp("controlnet"), (16, 32, 96, 256))


def test_a_controlnet_file_in_the_original_layout(sd_repo, controlnet_file):
    import diffusers

    from diffblocks.components.models import ControlNetModel

    net, folder, file = controlnet_file
    ours = ControlNetModel.from_single_file(file, config=sd_repo)  # the encoder's config from the base model's UNet
    assert tuple(ours.config.conditioning_embedding_out_channels) == (16, 32, 96, 256)
    assert_same_weights(net, ours)
    theirs = diffusers.ControlNetModel.from_single_file(str(file), config=str(folder))
    assert_same_weights(net, theirs)  # diffusers reads the file the same: a genuine original ControlNet


def test_the_cli_takes_a_controlnet_file(sd_repo, tmp_path, capsys):
    from PIL import Image
    from test_cli import run_cli
    from tiny_models import make_image

    from diffblocks.components.models import ControlNetModel

    # the control image scaled down 2x, as the tiny VAE scales: widths (16, 32), read off the file
    net, _, file = make_controlnet_file(sd_repo, tmp_path, (16, 32))
    assert_same_weights(net, ControlNetModel.from_single_file(file, config=sd_repo))
    make_image(7, size=32).save(tmp_path / "edges.png")
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--model", str(sd_repo), "--controlnet", str(file),
                           "--control-image", str(tmp_path / "edges.png"), "--steps", "3", "--device", "cpu",
                           "--no-progress", "--out", str(tmp_path / "out.png"))
    assert code == 0, err
    pipe = build_pipeline(stable_diffusion.CONTROLNET_BLOCKS, sd_repo)
    pipe.update_components(controlnet=ControlNetModel.from_single_file(file, config=sd_repo))
    expected = pipe(prompt="a cat", num_inference_steps=3, control_image=Image.open(tmp_path / "edges.png").convert("RGB"),
                    generator=torch.Generator().manual_seed(0), output="images")[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), np.asarray(expected))


def test_an_sd2_checkpoint_reads_openclip_without_its_last_layer(sd_repo, sd_file, tmp_path, capsys):
    """SD 2.x keeps OpenCLIP's text tower, all its layers and its projection; the model reads the penultimate layer,
    so diffusers' config has one layer less and no projection. Here: the repo's 3-layer text encoder written as
    OpenCLIP with a 4th layer and a projection, which must be left out."""
    from PIL import Image
    from test_cli import run_cli
    from tiny_checkpoints import write_sd2_checkpoint

    from diffblocks.components.checkpoints import FAMILY_CONFIGS, config_repo

    tuned, _ = sd_file
    file = write_sd2_checkpoint(tuned, tmp_path / "sd21-tiny.safetensors")
    assert config_repo("sd2", None, file) == str(FAMILY_CONFIGS / "sd2")
    models = load_checkpoint(file, sd_repo)
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(getattr(tuned, name), models[name])
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--model", str(file), "--config", str(sd_repo), "--steps",
                           "3", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out.png"))
    assert code == 0, err  # SD 2.x runs the SD 1.x presets
    expected = pipeline_with(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo, tuned)(
        prompt="a cat", num_inference_steps=3, output="images", generator=torch.Generator().manual_seed(0))[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), np.asarray(expected))


def test_vae_and_controlnet_files_in_a_workflow_equal_the_pipeline(sd_repo, sd_file, tmp_path):
    from node_workflows import link, preset_text2image
    from tiny_models import make_image

    from diffblocks.components.errors.nodes import NodeRunError
    from diffblocks.components.models import ControlNetModel
    from diffblocks.nodes import ArtifactStore, Executor

    tuned, _ = sd_file
    vae_file = write_vae(tmp_path / "vae.safetensors", to_original(tuned.vae.state_dict(), vae_table(tuned.vae.config)))
    _, _, controlnet = make_controlnet_file(sd_repo, tmp_path, (16, 32))
    store = ArtifactStore(tmp_path / "artifacts")
    sha = store.put_image(make_image(7, size=32))
    workflow = preset_text2image(str(sd_repo), steps=3, preset="sd15-controlnet")
    workflow["nodes"].update({
        "vae": {"type": "LoadVAE", "inputs": {"file": str(vae_file), "config": str(sd_repo)}},
        "cn": {"type": "LoadControlNet", "inputs": {"repo": str(controlnet), "config": str(sd_repo)}},
        "edges": {"type": "LoadImage", "inputs": {"image": {"artifact": sha}}}})
    workflow["nodes"]["run"]["inputs"].update(vae=link("vae", "vae"), controlnet=link("cn", "controlnet"),
                                              control_image=link("edges", "image"))
    got = Executor(artifacts=store).run(workflow)["run"]["images"]
    pipe = build_pipeline(stable_diffusion.CONTROLNET_BLOCKS, sd_repo)
    pipe.update_components(vae=AutoencoderKL.from_single_file(vae_file, config=sd_repo),
                           controlnet=ControlNetModel.from_single_file(controlnet, config=sd_repo))
    expected = pipe(control_image=store.open_image(sha), generator=torch.Generator().manual_seed(0), **CALL)
    assert torch.equal(got, expected)
    del workflow["nodes"]["cn"]["inputs"]["config"]  # the tiny model's width is no shipped family's
    with pytest.raises(NodeRunError) as caught:
        Executor(artifacts=store).run(workflow)
    assert caught.value.error_json()["input"] == "config"
    assert "cannot tell which model the ControlNet file" in str(caught.value)


# ---- pickled files: A1111's .ckpt (a Lightning training record), VAEs' .pt, ControlNet 1.1's .pth


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "pre-zip-pickle"])
def test_a_ckpt_training_checkpoint_holds_what_its_safetensors_holds(sd_repo, sd_file, tmp_path, legacy):
    """The same tensors as the .safetensors test file, pickled as SD 1.x's .ckpt files are: under ``state_dict``, beside
    numpy counters and Lightning's ModelCheckpoint; in torch's zip format (memory-mapped) and the older one."""
    tuned, file = sd_file
    ckpt = save_tensors(load_file(str(file)), tmp_path / "tiny-sd15.ckpt", legacy=legacy)
    assert file_family(ckpt) == "sd15"
    models = load_checkpoint(ckpt, sd_repo)
    assert set(models) == {"unet", "vae", "text_encoder"}
    for name, model in models.items():
        assert_same_weights(getattr(tuned, name), model)


def test_vae_and_controlnet_files_pickled_as_a1111_keeps_them(sd_repo, sd_file, controlnet_file, tmp_path):
    tuned, _ = sd_file
    vae = {**to_original(tuned.vae.state_dict(), vae_table(tuned.vae.config)), "loss.logvar": torch.zeros(())}
    for name in ("vae-ft-mse-840000-ema-pruned.ckpt", "tiny.vae.pt"):  # a training record; a bare state dict
        assert_same_weights(tuned.vae, AutoencoderKL.from_single_file(save_tensors(vae, tmp_path / name), config=sd_repo))
    net, _, file = controlnet_file
    pth = save_tensors(load_file(str(file)), tmp_path / "control_v11p_sd15_canny.pth")
    assert_same_weights(net, ControlNetModel.from_single_file(pth, config=sd_repo))


class _RunsCode:
    """Pickles as a call to ``os.system``: what a malicious .ckpt does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(sd_repo, sd_file, tmp_path, capsys):
    from test_cli import assert_one_line_error, run_cli

    _, file = sd_file
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": load_file(str(file)), "payload": _RunsCode(marker)}, str(evil))
    with pytest.raises(UnsafeFileError, match=r"evil\.ckpt: its pickle calls \w+\.system, which is not a tensor"):
        load_checkpoint(evil, sd_repo)
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--model", str(evil), "--config", str(sd_repo),
                           "--steps", "3", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "--model", "refusing to read weights file")
    assert not marker.exists() and not (tmp_path / "x.png").exists()


def test_the_cli_takes_pickled_checkpoint_and_controlnet_files(sd_repo, sd_file, tmp_path, capsys):
    """``--model FILE.ckpt`` and ``--controlnet FILE.pth`` render the bytes their .safetensors files render."""
    from PIL import Image
    from test_cli import run_cli
    from tiny_models import make_image

    _, file = sd_file
    _, _, controlnet = make_controlnet_file(sd_repo, tmp_path, (16, 32))
    make_image(7, size=32).save(tmp_path / "edges.png")
    common = ["run", "--prompt", "a cat", "--config", str(sd_repo), "--control-image", str(tmp_path / "edges.png"),
              "--steps", "3", "--device", "cpu", "--no-progress"]
    pickled = (save_tensors(load_file(str(file)), tmp_path / "tiny.ckpt"),
               save_tensors(load_file(str(controlnet)), tmp_path / "control.pth"))
    images = []
    for model, net in ((file, controlnet), pickled):
        out = tmp_path / f"{model.suffix[1:]}.png"
        code, _, err = run_cli(capsys, *common, "--model", str(model), "--controlnet", str(net), "--out", str(out))
        assert code == 0, err
        images.append(np.asarray(Image.open(out).convert("RGB")))
    assert np.array_equal(*images)
