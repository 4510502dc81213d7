"""LoadCheckpoint in workflows: a checkpoint file (by path or by its name in the model folders) draws what the
pipeline draws with its weights, bitwise (tolerance 0); a preset given another family's models says which preset
takes them, before anything runs or, for what only a run can tell, before any step. (Without a config:
tests/components/test_family_configs.py.)"""

import pytest
import torch
from tiny_checkpoints import CALL, pipeline_with

from diffblocks.presets import stable_diffusion


def test_a_load_checkpoint_node_equals_the_pipeline(sd_repo, sd_file, tmp_path):
    from node_workflows import link

    from diffblocks.nodes import ArtifactStore, Executor

    tuned, file = sd_file
    workflow = {"nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"file": str(file), "config": str(sd_repo)}},
        "run": {"type": "preset:sd15-text2image", "inputs": {"components": link("ckpt", "components"),
                                                              "prompt": "a cat", "seed": 0, "num_inference_steps": 3,
                                                              "output_type": "pt"}}}}
    got = Executor(artifacts=ArtifactStore(tmp_path)).run(workflow)["run"]["images"]
    expected = pipeline_with(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo, tuned)(
        generator=torch.Generator().manual_seed(0), **CALL)
    assert torch.equal(got, expected)


def test_a_load_checkpoint_node_takes_names_from_model_folders(sd_repo, sd_file, tmp_path):
    import os

    from node_workflows import link

    from diffblocks.nodes import Executor

    tuned, file = sd_file
    (tmp_path / "checkpoints" / "sd15").mkdir(parents=True)
    (tmp_path / "diffusers").mkdir()
    os.symlink(file, tmp_path / "checkpoints" / "sd15" / "tuned.safetensors")
    os.symlink(sd_repo, tmp_path / "diffusers" / "sd15-base")
    workflow = {"nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"file": "sd15/tuned.safetensors", "config": "sd15-base"}},
        "run": {"type": "preset:sd15-text2image", "inputs": {"components": link("ckpt", "components"),
                                                              "prompt": "a cat", "seed": 0, "num_inference_steps": 3,
                                                              "output_type": "pt"}}}}
    got = Executor(model_folders=[tmp_path]).run(workflow)["run"]["images"]
    expected = pipeline_with(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo, tuned)(
        generator=torch.Generator().manual_seed(0), **CALL)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("family, preset, instead", [("sdxl", "sd15-text2image", "sdxl-text2image"),
                                                     ("sd15", "sdxl-text2image", "sd15-text2image")])
def test_another_familys_models_into_a_preset_are_one_clear_error_before_anything_runs(
        sd_repo, sd_file, sdxl_repo, sdxl_file, family, preset, instead):
    """A checkpoint file's family (read off its tensor names) and a model folder's (its model_index.json) are known
    when the workflow is checked: a WorkflowError before anything runs, on the preset's components input, naming
    the preset to use, also through a node that passes the bundle on."""
    from node_workflows import link

    from diffblocks.nodes import Executor, WorkflowError

    (_, file), repo = (sdxl_file, sdxl_repo) if family == "sdxl" else (sd_file, sd_repo)
    sd, xl = "a Stable Diffusion 1.x / 2.x", "an SDXL"
    given, takes = (xl, sd) if family == "sdxl" else (sd, xl)
    run = {"type": f"preset:{preset}", "inputs": {"components": link("lora", "components"), "prompt": "a cat",
                                                   "seed": 0, "num_inference_steps": 3}}
    through_lora = {"type": "LoadLoRA", "inputs": {"components": link("load", "components"), "repo": "some/lora"}}
    for loader, source in (({"type": "LoadCheckpoint", "inputs": {"file": str(file), "config": str(repo)}}, file),
                           ({"type": "LoadComponents", "inputs": {"repo": str(repo)}}, repo)):
        events = []
        with pytest.raises(WorkflowError) as caught:
            Executor().run({"nodes": {"load": loader, "lora": through_lora, "run": run}}, on_event=events.append)
        assert caught.value.errors == [{"node": "run", "input": "components", "message": (
            f"the components from {source} are {given} model's; preset '{preset}' takes {takes} model's: use "
            f"preset:{instead}")}]
        assert events == []  # nothing ran


def test_a_preset_given_another_familys_bundle_says_so_when_it_runs_before_any_step(sdxl_repo):
    """What the check before the run cannot see (a Hub repo's models, a bundle made in a node), the preset sees
    when it runs, before its first step."""
    import threading

    from diffblocks.components.errors import ComponentTypeError
    from diffblocks.nodes import Executor
    from diffblocks.nodes.catalog import node_type
    from diffblocks.nodes.node_type import RunContext

    bundle = Executor().run({"nodes": {"load": {"type": "LoadComponents", "inputs": {"repo": str(sdxl_repo)}}}})
    events = []
    ctx = RunContext(node="run", job=None, stop=threading.Event(), emit=events.append)
    with pytest.raises(ComponentTypeError) as caught:
        node_type("preset:sd15-text2image").run(ctx, {"components": bundle["load"]["components"], "prompt": "a cat"})
    assert str(caught.value) == (f"the components from {sdxl_repo} are an SDXL model's; preset 'sd15-text2image' "
                                 "takes a Stable Diffusion 1.x / 2.x model's: use preset:sdxl-text2image")
    assert caught.value.input_name == "components" and events == []


def test_a_vae_file_takes_the_config_of_the_bundles_vae(sd_file, sdxl_repo, sdxl_file, tmp_path):
    """LoadVAE between a checkpoint and its preset, config left empty: the file's weights with the bundle's VAE config
    (here the SDXL model's, which upcasts; the file is an SD 1.x VAE's), in the bundle it passes on. The image equals
    the pipeline's with that VAE read with the SDXL repo's config; without a bundle or a config it says it needs one."""
    from node_workflows import link
    from tiny_checkpoints import to_original, write_vae

    from diffblocks.components.checkpoint_names import vae_table
    from diffblocks.components.models import AutoencoderKL
    from diffblocks.nodes import Executor, NodeRunError
    from diffblocks.presets import stable_diffusion_xl

    tuned, _ = sd_file
    vae_file = write_vae(tmp_path / "vae.safetensors", to_original(tuned.vae.state_dict(), vae_table(tuned.vae.config)))
    xl, checkpoint = sdxl_file
    workflow = {"nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"file": str(checkpoint), "config": str(sdxl_repo)}},
        "vae": {"type": "LoadVAE", "inputs": {"file": str(vae_file), "components": link("ckpt", "components")}},
        "run": {"type": "preset:sdxl-text2image", "inputs": {"components": link("vae", "components"),
                                                              "prompt": "a cat", "seed": 0, "num_inference_steps": 3,
                                                              "output_type": "pt"}}}}
    results = Executor().run(workflow)
    vae = results["vae"]["vae"]
    assert vae.config.force_upcast is True and results["vae"]["components"].components["vae"] is vae
    expected_vae = AutoencoderKL.from_single_file(vae_file, config=sdxl_repo)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), expected_vae.state_dict().values()))
    pipe = pipeline_with(stable_diffusion_xl.TEXT2IMAGE_BLOCKS, sdxl_repo, xl)
    pipe.update_components(vae=expected_vae)
    assert torch.equal(results["run"]["images"], pipe(generator=torch.Generator().manual_seed(0), **CALL))
    with pytest.raises(NodeRunError) as caught:
        Executor().run({"nodes": {"vae": {"type": "LoadVAE", "inputs": {"file": str(vae_file)}}}})
    problem = caught.value.error_json()
    assert (problem["node"], problem["input"]) == ("vae", "config")
    assert problem["message"] == ("LoadVAE failed: a VAE file needs 'config' or 'components', and neither was given: the "
                                  "config of a model's VAE goes with the file (its latents' scaling): a folder or Hub "
                                  "repo, or a bundle with a VAE")


@pytest.mark.parametrize("width, preset, given, takes", [
    (2048, "sd15-controlnet", "an SDXL", "a Stable Diffusion 1.x / 2.x"),
    (768, "sdxl-controlnet", "a Stable Diffusion 1.x / 2.x", "an SDXL"),
    (None, "sd15-controlnet", "a FLUX.1", "a Stable Diffusion 1.x / 2.x")])
def test_a_controlnet_file_for_another_family_is_refused_before_anything_runs(tmp_path, width, preset, given, takes):
    """A ControlNet file's family is read off its cross-attention width, a FLUX.1 one's off its transformer blocks
    (a tensor shaped as in real ones is all the file holds: nothing of it loads) when the workflow is checked: a
    WorkflowError on the preset's controlnet input."""
    from node_workflows import link
    from safetensors.torch import save_file

    from tiny_models import make_image

    from diffblocks.nodes import ArtifactStore, Executor, WorkflowError

    file = tmp_path / "control.safetensors"
    tensors = ({"double_blocks.0.img_attn.qkv.weight": torch.zeros(1), "controlnet_blocks.0.weight": torch.zeros(1)}
               if width is None else  # XLabs' FLUX.1 layout
               {"control_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(8, width)})
    save_file(tensors, file)
    store = ArtifactStore(tmp_path / "artifacts")
    workflow = {"nodes": {
        "cn": {"type": "LoadControlNet", "inputs": {"repo": str(file)}},
        "edges": {"type": "LoadImage", "inputs": {"image": {"artifact": store.put_image(make_image(1))}}},
        "run": {"type": f"preset:{preset}", "inputs": {"components": link("load", "components"),
                                                       "controlnet": link("cn", "controlnet"),
                                                       "control_image": link("edges", "image"), "prompt": "a cat"}},
        "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}}}}
    events = []
    with pytest.raises(WorkflowError) as caught:
        Executor(artifacts=store).run(workflow, on_event=events.append)
    assert {"node": "run", "input": "controlnet", "message": (
        f"the ControlNet {file} is {given} model's; preset '{preset}' takes {takes} model's: load one made for "
        f"{takes} model")} in caught.value.errors
    assert events == []


def test_a_lora_or_embedding_file_for_another_family_than_its_bundle_is_refused_before_anything_runs(
        sdxl_repo, sdxl_file, tmp_path):
    """A LoRA's family is read off its cross-attention width, an embedding's off its vectors' (the file holds only a
    tensor shaped as in real ones): on an SDXL checkpoint's bundle, SD 1.x's are a WorkflowError on their file
    input, before anything runs."""
    from node_workflows import link
    from safetensors.torch import save_file

    from diffblocks.nodes import Executor, WorkflowError

    lora, embedding = tmp_path / "sd-style.safetensors", tmp_path / "easyneg.safetensors"
    save_file({"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight":
               torch.zeros(4, 768)}, lora)
    save_file({"emb_params": torch.zeros(2, 768)}, embedding)
    _, file = sdxl_file
    workflow = {"nodes": {
        "load": {"type": "LoadCheckpoint", "inputs": {"file": str(file), "config": str(sdxl_repo)}},
        "lora": {"type": "LoadLoRA", "inputs": {"components": link("load", "components"), "repo": str(lora)}},
        "ti": {"type": "LoadTextualInversion", "inputs": {"components": link("lora", "components"),
                                                          "file": str(embedding)}},
        "run": {"type": "preset:sdxl-text2image", "inputs": {"components": link("ti", "components"), "prompt": "a cat"}}}}
    events = []
    with pytest.raises(WorkflowError) as caught:
        Executor().run(workflow, on_event=events.append)
    sd, xl = "a Stable Diffusion 1.x / 2.x", "an SDXL"
    assert caught.value.errors == [
        {"node": "lora", "input": "repo", "message": f"the LoRA {lora} is {sd} model's; the components it goes on are "
                                                     f"{xl} model's: load one made for {xl} model"},
        {"node": "ti", "input": "file", "message": f"the embedding {embedding} is {sd} model's; the components it goes "
                                                   f"on are {xl} model's: load one made for {xl} model"}]
    assert events == []
