"""The configs shipped for checkpoint files (components/family_configs: the reference repos' configs, tokenizers and
schedulers): they load with the Hub out of reach, LoadCheckpoint and ``run --model FILE`` use them when no config
is given, and a checkpoint they do not fit says which input to fill. At full size, on the meta device, our models
built from them equal diffusers' built from them, and the original checkpoint layout our loader reads is the one
diffusers' own converter reads into diffusers' models: a real checkpoint of each family loads."""

import json
import shutil

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import save_file
from tiny_checkpoints import CALL, pipeline_with, to_original

from diffblocks.components.checkpoint_names import unet_table, vae_table
from diffblocks.components.checkpoints import FAMILY_CONFIGS, config_repo
from diffblocks.presets import stable_diffusion

FAMILIES = ["sd15", "sd15-inpainting", "sd2", "sd2-inpainting", "sdxl", "sdxl-inpainting"]
EMBEDDED_TOKENIZER = FAMILY_CONFIGS.parent.parent / "presets" / "tiny_digits" / "tokenizer"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Hub and an empty cache, whatever the machine."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


CLIP_VISION = {"clip-vision-vit-l-14": (1024, 24, 768), "clip-vision-vit-h-14": (1280, 32, 1024),
               "clip-vision-vit-bigg-14": (1664, 48, 1280)}  # width, layers, projection: OpenAI's and LAION's


@pytest.fixture
def tiny_shipped(monkeypatch, sd_repo, tmp_path):
    """A folder of the tiny SD 1.x repo's configs (no weights) in place of the shipped SD 1.x folder, so that the
    tiny checkpoint fits what is shipped; returns the folder holding it."""
    import diffblocks.components.checkpoints as checkpoints

    shipped = tmp_path / "family_configs"
    shutil.copytree(sd_repo, shipped / "sd15", ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    monkeypatch.setattr(checkpoints, "FAMILY_CONFIGS", shipped)
    return shipped


@pytest.fixture
def without_vae(sd_file, tmp_path):
    """``(the tiny checkpoint without its VAE, its VAE alone in a file)``, as checkpoints are shared without one."""
    from safetensors.torch import load_file
    from tiny_checkpoints import write_vae

    from diffblocks.components.checkpoint_names import vae_table

    tuned, file = sd_file
    no_vae = write_vae(tmp_path / "no-vae.safetensors",
                       {k: v for k, v in load_file(file).items() if not k.startswith("first_stage_model.")})
    return no_vae, write_vae(tmp_path / "vae.safetensors", to_original(tuned.vae.state_dict(),
                                                                       vae_table(tuned.vae.config)))


def test_every_family_folder_is_shipped():
    assert sorted(p.name for p in FAMILY_CONFIGS.iterdir() if p.is_dir()) == sorted([*FAMILIES, *CLIP_VISION])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_shipped_configs_load_offline(offline, family):
    """The preset of the family, its tokenizers (the CLIP vocabulary: the embedded model's, byte for byte; OpenCLIP's
    encoders pad with "!", CLIP's with its end token, as the reference repos say) and its scheduler."""
    from transformers import CLIPTokenizer

    from diffblocks.modular_pipelines.pipeline import ModularPipeline

    pipe = ModularPipeline.from_pretrained(str(FAMILY_CONFIGS / family))
    xl = family.startswith("sdxl")
    adapters = {"controlnet", "image_encoder"}  # the auto preset's: given to it, not in the repo
    assert set(pipe.pretrained_component_names) - adapters == {
        "unet", "vae", "text_encoder", "tokenizer", "scheduler", *(["text_encoder_2", "tokenizer_2"] if xl else [])}
    tokenizers = [n for n in pipe.pretrained_component_names if n.startswith("tokenizer")]
    pipe.load_components([*tokenizers, "scheduler"])
    embedded = CLIPTokenizer.from_pretrained(EMBEDDED_TOKENIZER)
    open_clip = {"tokenizer_2"} if xl else {"tokenizer"} if family.startswith("sd2") else set()
    for name in tokenizers:
        tokenizer = pipe.components[name]
        for folder_file in ("vocab.json", "merges.txt"):
            assert (FAMILY_CONFIGS / family / name / folder_file).read_bytes() == (EMBEDDED_TOKENIZER / folder_file).read_bytes()
        assert tokenizer("a photo of a cat, 4k").input_ids == embedded("a photo of a cat, 4k").input_ids
        assert tokenizer.pad_token == ("!" if name in open_clip else embedded.eos_token)
    v_prediction = family == "sd2"  # 2.1 predicts v; its inpainting model and the rest predict the noise
    assert pipe.components["scheduler"].config.get("prediction_type", "epsilon") == (
        "v_prediction" if v_prediction else "epsilon")


def test_config_repo_picks_the_shipped_folder_by_the_unets_inputs(sd_file, sd_inpaint_repo, tmp_path):
    import diffusers
    from tiny_checkpoints import write_checkpoint

    assert config_repo("sd15", None, sd_file[1]) == str(FAMILY_CONFIGS / "sd15")
    assert config_repo("sdxl", None) == str(FAMILY_CONFIGS / "sdxl")
    assert config_repo("sd15", "my/repo", sd_file[1]) == "my/repo"
    inpaint = diffusers.StableDiffusionPipeline.from_pretrained(sd_inpaint_repo, safety_checker=None)
    for name in ("inpainting.safetensors", "inpainting.ckpt"):
        assert config_repo("sd15", None, write_checkpoint(inpaint, tmp_path / name)) == str(FAMILY_CONFIGS / "sd15-inpainting")


@pytest.mark.parametrize("family", FAMILIES)
def test_full_size_models_from_the_shipped_configs_read_what_diffusers_reads(family):
    """Our UNet and VAE from the shipped config (on the meta device) have diffusers' parameters, names and shapes;
    and the original layout our loader maps them from (its tables, reversed) is what diffusers' single-file
    converter turns into exactly those parameters, each tensor into the same one."""
    import diffusers
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    from diffblocks.components.models import AutoencoderKL, UNet2DConditionModel
    from diffblocks.components.models.modeling import empty_weights

    for ours_cls, theirs_cls, subfolder, table, convert, prefix in (
            (UNet2DConditionModel, diffusers.UNet2DConditionModel, "unet", unet_table, convert_ldm_unet_checkpoint,
             "model.diffusion_model."),
            (AutoencoderKL, diffusers.AutoencoderKL, "vae", vae_table, convert_ldm_vae_checkpoint, "first_stage_model.")):
        config = ours_cls.load_config(FAMILY_CONFIGS / family / subfolder)
        with empty_weights():
            ours = ours_cls.from_config(config)
        with torch.device("meta"):
            theirs = theirs_cls.from_config(config)
        shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert shapes == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}, subfolder
        # each of our parameters a tensor of its shape holding its own number, one element of memory
        marked = {k: torch.full((1,), float(i)).expand(shape) for i, (k, shape) in enumerate(shapes.items())}
        original = {prefix + k: v for k, v in to_original(marked, table(ours.config)).items()}
        converted = convert(original, theirs.config)
        assert {k: (tuple(v.shape), first(v)) for k, v in converted.items()} == {
            k: (shape, first(marked[k])) for k, shape in shapes.items()}, subfolder


def first(tensor: torch.Tensor) -> float:
    return float(tensor[(0,) * tensor.ndim])


def test_a_load_checkpoint_node_offline_uses_the_shipped_configs(offline, tiny_shipped, sd_repo, sd_file):
    """With ``config`` empty and the Hub out of reach, the family's shipped folder gives the configs: here a folder of
    the tiny repo's configs stands in for it, so that the tiny checkpoint fits; the image equals the pipeline's."""
    from node_workflows import link

    from diffblocks.nodes import Executor

    tuned, file = sd_file
    workflow = {"nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"file": str(file)}},
        "run": {"type": "preset:sd15-text2image", "inputs": {"components": link("ckpt", "components"),
                                                              "prompt": "a cat", "seed": 0, "num_inference_steps": 3,
                                                              "output_type": "pt"}}}}
    got = Executor().run(workflow)["run"]["images"]
    expected = pipeline_with(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo, tuned)(
        generator=torch.Generator().manual_seed(0), **CALL)
    assert torch.equal(got, expected)


def test_a_checkpoint_the_shipped_configs_do_not_fit_names_the_config_input(offline, sd_file, capsys):
    """The tiny checkpoint is no stable-diffusion-v1-5: the node's error points at ``config``, the CLI's names the
    file and --config, and both say which repo's configs were tried."""
    from test_cli import assert_one_line_error, run_cli

    from diffblocks.nodes import Executor, NodeRunError

    _, file = sd_file
    with pytest.raises(NodeRunError) as caught:
        Executor().run({"nodes": {"ckpt": {"type": "LoadCheckpoint", "inputs": {"file": str(file)}}}})
    problem = caught.value.error_json()
    assert (problem["node"], problem["input"]) == ("ckpt", "config")
    assert problem["message"].startswith(
        "LoadCheckpoint failed: this is a Stable Diffusion 1.x checkpoint of another size or layout than "
        "stable-diffusion-v1-5/stable-diffusion-v1-5, whose configs (shipped with diffblocks) are used when none are "
        "given: give the diffusers folder or Hub repo of its own model as 'config' (--config in the CLI). "
        "weights do not fit UNet2DConditionModel")
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--model", str(file), "--steps", "1",
                           "--out", "unused.png")
    assert_one_line_error(code, err, "--model", "stable-diffusion-v1-5/stable-diffusion-v1-5", "--config")


def test_a_controlnet_files_family_is_told_by_its_cross_attention_width(tmp_path):
    """A tensor named and shaped as in each family's ControlNets (SD 1.x's 768-wide text embeddings, 2.x's 1024,
    SDXL's 2048, as the shipped UNet configs say); a width no family has is refused, pointing at ``config``."""
    from diffblocks.components.families import controlnet_config_repo
    from diffblocks.components.errors import ConfigError

    key = "control_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    for family, shape in (("sd15", (640, 768)), ("sd2", (640, 1024)), ("sdxl", (640, 2048))):
        save_file({key: torch.zeros(shape, dtype=torch.float16)}, tmp_path / f"{family}.safetensors")
        assert controlnet_config_repo(tmp_path / f"{family}.safetensors") == str(FAMILY_CONFIGS / family)
    save_file({key: torch.zeros(8, 4096, dtype=torch.float16)}, tmp_path / "other.safetensors")
    with pytest.raises(ConfigError) as caught:
        controlnet_config_repo(tmp_path / "other.safetensors")
    assert caught.value.input_name == "config"
    assert str(caught.value).startswith(f"cannot tell which model the ControlNet file {tmp_path / 'other.safetensors'} "
                                        "is for: its cross-attention width is 4096, and the shipped configs' are 768 (sd15)")


def test_a_load_controlnet_node_without_config_uses_its_familys_shipped_configs(tiny_shipped, sd_repo, tmp_path):
    """A folder of the tiny repo's configs stands in for SD 1.x's shipped one (so its width tells SD 1.x): the
    ControlNet equals the one read with the base model's repo given."""
    from tiny_checkpoints import make_controlnet_file

    from diffblocks.nodes import Executor

    for family in ("sd2", "sdxl"):
        shutil.copytree(FAMILY_CONFIGS / family / "unet", tiny_shipped / family / "unet")
    _, _, file = make_controlnet_file(sd_repo, tmp_path, (16, 32))
    load = {"nodes": {"cn": {"type": "LoadControlNet", "inputs": {"repo": str(file)}}}}
    got = Executor().run(load)["cn"]["controlnet"]
    load["nodes"]["cn"]["inputs"]["config"] = str(sd_repo)
    expected = Executor().run(load)["cn"]["controlnet"]
    assert got.config == expected.config
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), expected.state_dict().values()))


@pytest.mark.parametrize("name", sorted(CLIP_VISION))
def test_a_clip_vision_files_config_is_the_shipped_one_of_its_size(name, tmp_path):
    """A file with the tensors a CLIP vision encoder of that size has (their shapes are all that is read), as
    ComfyUI's clip_vision folder keeps IP-Adapter's image encoders: the config of that size, which builds a model
    of the file's tensor names and shapes; a file one layer short of it is refused, pointing at image_encoder."""
    import transformers

    from diffblocks.components.clip_vision_files import clip_vision_config
    from diffblocks.components.errors import ConfigError

    width, layers, projection = CLIP_VISION[name]
    config = clip_vision_config(write_header(tmp_path / "encoder.safetensors", width, layers, projection))
    assert config == json.loads((FAMILY_CONFIGS / name / "config.json").read_text())
    with torch.device("meta"):
        model = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**config))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    assert shapes["vision_model.embeddings.patch_embedding.weight"] == (width, 3, 14, 14)
    assert shapes["visual_projection.weight"] == (projection, width)
    assert len({k.split(".")[3] for k in shapes if k.startswith("vision_model.encoder.layers.")}) == layers
    with pytest.raises(ConfigError) as caught:
        clip_vision_config(write_header(tmp_path / "short.safetensors", width, layers - 1, projection))
    assert caught.value.input_name == "image_encoder"
    assert f"no shipped config has its size (hidden_size {width}, patch_size 14, num_hidden_layers {layers - 1}" in str(
        caught.value)


def write_header(path, width, layers, projection):
    """A safetensors file with an encoder's patch embedding, projection and one small tensor per layer."""
    tensors = {"vision_model.embeddings.patch_embedding.weight": torch.zeros(width, 3, 14, 14, dtype=torch.float16),
               "visual_projection.weight": torch.zeros(projection, width, dtype=torch.float16)}
    tensors.update({f"vision_model.encoder.layers.{i}.layer_norm1.weight": torch.zeros(1) for i in range(layers)})
    save_file(tensors, path)
    return path


def test_a_checkpoint_shared_without_its_vae_takes_one_from_a_vae_file(offline, tiny_shipped, sd_file, without_vae):
    """With the shipped configs (which hold no weights; a folder of the tiny repo's configs stands in for them), a
    checkpoint without its VAE loads the rest; the preset then says, before any step, to wire a LoadVAE; with one
    (the same VAE, alone in a file: its config the family's) it draws what the whole checkpoint draws."""
    from node_workflows import link

    from diffblocks.nodes import Executor, NodeRunError

    (_, file), (no_vae, vae) = sd_file, without_vae
    run = {"type": "preset:sd15-text2image", "inputs": {"components": link("ckpt", "components"), "prompt": "a cat",
                                                         "seed": 0, "num_inference_steps": 3, "output_type": "pt"}}
    events = []
    with pytest.raises(NodeRunError) as caught:
        Executor().run({"nodes": {"ckpt": {"type": "LoadCheckpoint", "inputs": {"file": str(no_vae)}}, "run": run}},
                       on_event=events.append)
    assert caught.value.error_json() == {"node": "run", "input": "components", "message": (
        f"preset:sd15-text2image failed: the components from {no_vae} have no vae, and preset 'sd15-text2image' "
        "needs one: wire LoadVAE between them, or a vae into its vae input")}
    assert not [e for e in events if e["type"] == "node.progress"]  # no step ran
    with_vae = {"nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"file": str(no_vae)}},
        "vae": {"type": "LoadVAE", "inputs": {"file": str(vae), "components": link("ckpt", "components")}},
        "run": {**run, "inputs": {**run["inputs"], "components": link("vae", "components")}}}}
    whole = {"nodes": {"ckpt": {"type": "LoadCheckpoint", "inputs": {"file": str(file)}}, "run": run}}
    assert torch.equal(Executor().run(with_vae)["run"]["images"], Executor().run(whole)["run"]["images"])


def test_the_cli_asks_for_the_vae_a_checkpoint_lacks(offline, tiny_shipped, sd_file, without_vae, tmp_path, capsys):
    """``run --model`` a checkpoint without its VAE: one line naming --model and --vae, before anything runs; with
    ``--vae`` the same VAE alone, the image of the whole checkpoint."""
    from PIL import Image
    from test_cli import assert_one_line_error, run_cli

    (_, file), (no_vae, vae) = sd_file, without_vae
    common = ["run", "--prompt", "a cat", "--steps", "2", "--seed", "0", "--no-progress"]
    code, _, err = run_cli(capsys, *common, "--model", str(no_vae), "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, f"--model {no_vae}: holds no VAE (it was shared without one): give --vae FILE")
    assert not (tmp_path / "x.png").exists()
    for model, extra, out in ((no_vae, ["--vae", str(vae)], "a.png"), (file, [], "b.png")):
        code, _, err = run_cli(capsys, *common, "--model", str(model), *extra, "--out", str(tmp_path / out))
        assert code == 0, err
    assert Image.open(tmp_path / "a.png").tobytes() == Image.open(tmp_path / "b.png").tobytes()
