"""FluxTransformer2DModel.from_single_file: a FLUX.1 transformer saved in Black Forest Labs' original layout (the
``flux1-dev.safetensors`` that ComfyUI loads) equals the diffusers model it was written from: bitwise (tolerance 0)
in float32, and after an fp8 round trip equal to the same round trip done in diffusers' model; a pipeline with it
equals diffusers' FluxPipeline with the same weights (max abs difference <= 1e-4).

The file is written here from a tiny diffusers transformer whose heads have FLUX.1's 128 channels, so its config
can be read off the shapes. diffusers' own converter cannot read it: it assumes FLUX.1's 3072-wide blocks."""

import pytest
import torch
from safetensors.torch import save_file

from diffblocks.components.errors import ConfigError, MissingFileError, WeightsMismatchError
from diffblocks.components.models import FluxTransformer2DModel
from tiny_flux import to_original

SIZE = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=128,
            num_attention_heads=1, joint_attention_dim=32, pooled_projection_dim=24, axes_dims_rope=(16, 56, 56))
@pytest.fixture(scope="module")
def reference():
    from diffusers import FluxTransformer2DModel as Reference

    torch.manual_seed(0)
    model = Reference(**SIZE, guidance_embeds=True).eval()
    with torch.no_grad():  # the q/k norms start at ones: make every tensor tell where it went
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model


def inputs(seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(1, 16, 64, generator=g), encoder_hidden_states=torch.randn(1, 8, 32, generator=g),
                pooled_projections=torch.randn(1, 24, generator=g), timestep=torch.tensor([0.7]),
                guidance=torch.tensor([3.5]), img_ids=torch.stack(torch.meshgrid(
                    torch.zeros(1), torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(-1, 3),
                txt_ids=torch.zeros(8, 3), return_dict=False)


def write(path, tensors: dict, prefix: str = "", extra: dict | None = None):
    save_file({**{prefix + key: value for key, value in tensors.items()}, **(extra or {})}, str(path))
    return path


def test_an_original_file_equals_the_model_it_was_written_from(reference, tmp_path):
    original = to_original(reference.state_dict(), SIZE)
    assert len(original) < len(reference.state_dict())  # fused layers: fewer tensors than ours
    file = write(tmp_path / "flux1-tiny.safetensors", original)
    model = FluxTransformer2DModel.from_single_file(file)
    assert model.config.num_layers == 2 and model.config.num_single_layers == 2
    assert model.config.guidance_embeds and model.config.pooled_projection_dim == 24
    with torch.no_grad():
        assert torch.equal(model(**inputs())[0], reference(**inputs())[0])
    sft = file.rename(tmp_path / "flux1-tiny.sft")  # early FLUX.1 releases' name for a safetensors file
    from_sft = FluxTransformer2DModel.from_single_file(sft).state_dict()
    assert all(torch.equal(v, from_sft[k]) for k, v in model.state_dict().items())


def test_a_comfyui_checkpoint_with_a_vae_and_an_fp8_transformer(reference, tmp_path):
    fp8 = {k: v.to(torch.float8_e4m3fn) for k, v in to_original(reference.state_dict(), SIZE).items()}
    file = write(tmp_path / "flux1-tiny-fp8.safetensors", fp8, prefix="model.diffusion_model.",
                 extra={"vae.decoder.conv_in.weight": torch.zeros(4, 4)})  # the rest of a full checkpoint, not read
    model = FluxTransformer2DModel.from_single_file(file, torch_dtype=torch.float32)
    rounded = type(reference)(**SIZE, guidance_embeds=True).eval()
    rounded.load_state_dict({k: v.to(torch.float8_e4m3fn).float() for k, v in reference.state_dict().items()})
    with torch.no_grad():
        assert torch.equal(model(**inputs())[0], rounded(**inputs())[0])


@pytest.fixture(scope="module")
def finetune(tmp_path_factory):
    """``(FLUX repo whose heads have 128 channels, a "fine-tune" of its transformer in the original layout)``."""
    from diffusers import FluxTransformer2DModel as Reference
    from tiny_flux import make_flux_repo

    root = tmp_path_factory.mktemp("flux_single_file")
    repo = make_flux_repo(root / "repo", dev=True, transformer=dict(attention_head_dim=128, num_attention_heads=1,
                                                                      axes_dims_rope=(16, 56, 56)))
    tuned = Reference.from_pretrained(repo, subfolder="transformer")
    torch.manual_seed(2)
    with torch.no_grad():
        for param in tuned.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return repo, write(root / "finetune.safetensors", to_original(tuned.state_dict(), tuned.config))


CALL = dict(prompt="a cat", num_inference_steps=2, height=32, width=32, output="images")


def test_a_pipeline_runs_with_the_transformer_from_one_file(finetune):
    from diffusers import FluxTransformer2DModel as Reference
    from tiny_models import build_pipeline

    from diffblocks.presets import flux

    repo, file = finetune
    pipe = build_pipeline(flux.TEXT2IMAGE_BLOCKS, repo)
    before = pipe(generator=torch.Generator().manual_seed(0), output_type="pt", **CALL)
    pipe.update_components(transformer=FluxTransformer2DModel.from_single_file(file))
    got = pipe(generator=torch.Generator().manual_seed(0), output_type="pt", **CALL)
    assert not torch.equal(got, before)
    import diffusers  # the fine-tune in diffusers' own pipeline: the repo with its weights

    tuned = Reference.from_pretrained(repo, subfolder="transformer")
    tuned.load_state_dict(FluxTransformer2DModel.from_single_file(file).state_dict())
    reference = diffusers.FluxPipeline.from_pretrained(repo, transformer=tuned)
    reference.set_progress_bar_config(disable=True)
    expected = reference("a cat", num_inference_steps=2, height=32, width=32, output_type="pt",
                         generator=torch.Generator().manual_seed(0)).images
    assert (got - expected).abs().max().item() <= 1e-4


def test_the_cli_takes_a_transformer_file(finetune, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from test_cli import assert_one_line_error, run_cli
    from tiny_models import build_pipeline

    from diffblocks.presets import flux

    repo, file = finetune
    common = ["run", "--prompt", "a cat", "--model", str(repo), "--steps", "2", "--height", "32", "--width", "32",
              "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out.png")]
    code, _, err = run_cli(capsys, *common, "--preset", "flux-text2image", "--transformer", str(file))
    assert code == 0, err
    pipe = build_pipeline(flux.TEXT2IMAGE_BLOCKS, repo)
    pipe.update_components(transformer=FluxTransformer2DModel.from_single_file(file))
    expected = pipe(generator=torch.Generator().manual_seed(0), **CALL)[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), np.asarray(expected))
    code, _, err = run_cli(capsys, *common, "--preset", "flux-text2image", "--transformer", str(tmp_path / "no.safetensors"))
    assert_one_line_error(code, err, "--transformer", "not found")
    code, _, err = run_cli(capsys, *common, "--preset", "sd15-text2image", "--transformer", str(file))
    assert_one_line_error(code, err, "--transformer works with the FLUX.1 workflows, not preset 'sd15-text2image'")


def test_what_cannot_be_read_says_so(reference, tmp_path):
    original = to_original(reference.state_dict(), SIZE)
    with pytest.raises(MissingFileError, match="weights file not found"):
        FluxTransformer2DModel.from_single_file(tmp_path / "missing.safetensors")
    extra = write(tmp_path / "extra.safetensors", {**original, "double_blocks.0.img_attn.lora.weight": torch.zeros(1)})
    with pytest.raises(WeightsMismatchError, match=r"unexpected keys: double_blocks.0.img_attn.lora.weight"):
        FluxTransformer2DModel.from_single_file(extra)
    cut = write(tmp_path / "cut.safetensors", {k: v for k, v in original.items() if not k.startswith("txt_in.")})
    with pytest.raises(WeightsMismatchError, match="missing keys: txt_in.weight"):
        FluxTransformer2DModel.from_single_file(cut)
    ours = write(tmp_path / "diffusers-layout.safetensors", reference.state_dict())
    with pytest.raises(ConfigError, match="not in Black Forest Labs' layout; pass config="):
        FluxTransformer2DModel.from_single_file(ours)
    model = FluxTransformer2DModel.from_single_file(ours, config={**SIZE, "guidance_embeds": True})
    with torch.no_grad():
        assert torch.equal(model(**inputs())[0], reference(**inputs())[0])


def test_a_workflow_loads_the_file_once_and_equals_the_pipeline(finetune, tmp_path):
    from node_workflows import link, preset_text2image
    from tiny_models import build_pipeline

    from diffblocks.components import ComponentsManager
    from diffblocks.nodes import ArtifactStore, Executor
    from diffblocks.presets import flux

    repo, file = finetune
    workflow = preset_text2image(str(repo), steps=2, preset="flux-text2image", height=32, width=32)
    workflow["nodes"]["file"] = {"type": "LoadFluxTransformer", "inputs": {"file": str(file)}}
    workflow["nodes"]["run"]["inputs"]["transformer"] = link("file", "transformer")
    manager = ComponentsManager()
    executor = Executor(artifacts=ArtifactStore(tmp_path), components_manager=manager)
    got = executor.run(workflow)["run"]["images"]
    pipe = build_pipeline(flux.TEXT2IMAGE_BLOCKS, repo)
    pipe.update_components(transformer=FluxTransformer2DModel.from_single_file(file))
    assert torch.equal(got, pipe(generator=torch.Generator().manual_seed(0), output_type="pt", **CALL))
    loaded = manager.get_ids("transformer", collection="nodes:single-file")
    executor.free()  # the outputs are dropped; the file's transformer is found in the manager, not read again
    executor.run(workflow)
    assert manager.get_ids("transformer", collection="nodes:single-file") == loaded and len(loaded) == 1


def test_a_bundle_loaded_without_its_transformer_takes_the_files(finetune, tmp_path):
    """LoadComponents ``without: ["transformer"]`` never loads the folder's transformer; LoadFluxTransformer puts the
    file's into that bundle (as ComfyUI's UNETLoader beside its CLIP and VAE loaders), so the preset (and a LoRA on
    the way) takes it from the bundle: the same images as the file's transformer wired to the preset, bitwise. A
    name the model has no component of is refused on that input, before anything loads."""
    from node_workflows import link, preset_text2image

    from diffblocks.components import ComponentsManager
    from diffblocks.components.errors import NodeRunError
    from diffblocks.nodes import ArtifactStore, Executor

    repo, file = finetune
    workflow = preset_text2image(str(repo), steps=2, preset="flux-text2image", height=32, width=32)
    workflow["nodes"]["load"]["inputs"]["without"] = ["transformer"]
    workflow["nodes"]["file"] = {"type": "LoadFluxTransformer", "inputs": {"file": str(file),
                                                                          "components": link("load", "components")}}
    workflow["nodes"]["run"]["inputs"]["components"] = link("file", "components")
    manager = ComponentsManager()
    executor = Executor(artifacts=ArtifactStore(tmp_path), components_manager=manager)
    got = executor.run(workflow)["run"]["images"]
    run = workflow["nodes"]["run"]
    wired = dict(workflow, nodes={
        **workflow["nodes"], "load": {"type": "LoadComponents", "inputs": {"repo": str(repo)}},
        "run": {**run, "inputs": {**run["inputs"], "components": link("load", "components"),
                                  "transformer": link("file", "transformer")}}})
    assert torch.equal(got, Executor(artifacts=ArtifactStore(tmp_path)).run(wired)["run"]["images"])
    assert len(manager.get_ids("transformer")) == 1  # the file's: the folder's was never loaded
    workflow["nodes"]["load"]["inputs"]["without"] = ["transformr"]
    with pytest.raises(NodeRunError) as caught:
        Executor(artifacts=ArtifactStore(tmp_path)).run(workflow)
    assert (caught.value.node, caught.value.input) == ("load", "without")
    assert "has no component 'transformr' (did you mean transformer?)" in caught.value.message


def test_the_transformer_of_an_all_in_one_checkpoint(finetune, tmp_path):
    """LoadFluxTransformer ``checkpoint``: ComfyUI's all-in-one FLUX.1 file (the transformer under
    ``model.diffusion_model.``, beside its VAE and text encoders) gives the transformer the file alone gives; one of
    ``file`` and ``checkpoint`` is needed, not both, each refused on its input before anything loads."""
    from safetensors.torch import load_file

    from diffblocks.components.errors import NodeRunError
    from diffblocks.nodes import ArtifactStore, Executor

    _, file = finetune
    whole = write(tmp_path / "flux1-dev-fp8.safetensors", load_file(str(file)), prefix="model.diffusion_model.",
                  extra={"vae.decoder.conv_in.weight": torch.zeros(4, 4),
                         "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": torch.ones(4)})

    def transformer(**inputs):
        workflow = {"nodes": {"t": {"type": "LoadFluxTransformer", "inputs": inputs}}}
        return Executor(artifacts=ArtifactStore(tmp_path)).run(workflow)["t"]["transformer"]

    from_checkpoint = transformer(checkpoint=str(whole)).state_dict()
    assert all(torch.equal(v, from_checkpoint[k]) for k, v in transformer(file=str(file)).state_dict().items())
    for inputs, message in (({}, "needs 'file' or 'checkpoint', and neither was given"),
                            ({"file": str(file), "checkpoint": str(whole)}, "give one: a transformer file")):
        with pytest.raises(NodeRunError) as caught:
            transformer(**inputs)
        assert caught.value.input == "file" and message in caught.value.message
