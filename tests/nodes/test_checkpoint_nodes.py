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
