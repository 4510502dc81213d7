"""Model folders laid out as ComfyUI's ``models/``: what they list, what a name resolves to, what it never reaches,
and a workflow that names its model run as one that gives the path."""

import os

import pytest
import torch
from node_workflows import link

from diffblocks.nodes import Executor, catalog
from diffblocks.nodes.model_files import KINDS, SCHEMA_KEY, ModelFolders
from diffblocks.presets import embedded_model_path


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def model_folder(path, marker="config.json"):
    touch(path / marker, b"{}")
    touch(path / "diffusion_pytorch_model.safetensors")
    return path


@pytest.fixture
def roots(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    touch(first / "checkpoints" / "b.safetensors")
    touch(first / "checkpoints" / "sd15" / "A.ckpt")
    touch(first / "checkpoints" / "notes.txt")
    touch(first / "checkpoints" / ".hidden" / "c.safetensors")
    touch(first / "loras" / "style.safetensors")
    touch(first / "embeddings" / "EasyNegative.safetensors")
    touch(first / "unet" / "flux1-dev.sft")
    model_folder(first / "controlnet" / "canny")
    touch(first / "controlnet" / "control_v11p_sd15_openpose.pth")
    model_folder(first / "diffusers" / "sd15", marker="model_index.json")
    touch(second / "checkpoints" / "b.safetensors", b"second")
    touch(second / "checkpoints" / "z.safetensors")
    touch(second / "diffusion_models" / "flux1-schnell.safetensors")
    return first, second


def test_every_kind_lists_its_files_and_model_folders_first_folder_first(roots):
    listing = ModelFolders(roots).listing()
    assert set(listing) == set(KINDS)
    # weights files only, subfolders as name/..., hidden folders skipped, a name in two roots once
    assert listing["checkpoints"] == ["b.safetensors", "sd15/A.ckpt", "z.safetensors"]
    assert listing["loras"] == ["style.safetensors"]
    assert listing["diffusion_models"] == ["flux1-dev.sft", "flux1-schnell.safetensors"]  # unet/ as well
    # a model folder is one entry, not the files in it; ControlNets come as either
    assert listing["controlnet"] == ["canny", "control_v11p_sd15_openpose.pth"]
    assert listing["diffusers"] == ["sd15"]
    assert listing["embeddings"] == ["EasyNegative.safetensors"]
    assert listing["vae"] == []
    assert ModelFolders([]).listing() == {kind: [] for kind in KINDS}


def test_automatic1111s_models_folder_works_as_it_is(tmp_path):
    for name in ("Stable-diffusion/v1-5-pruned-emaonly.safetensors", "Lora/detail.safetensors",
                 "VAE/vae-ft-mse-840000-ema-pruned.ckpt", "ControlNet/control_v11p_sd15_canny.pth"):
        touch(tmp_path / name)
    folders = ModelFolders([tmp_path])
    assert folders.listing() == {"checkpoints": ["v1-5-pruned-emaonly.safetensors"], "loras": ["detail.safetensors"],
                                 "vae": ["vae-ft-mse-840000-ema-pruned.ckpt"],
                                 "controlnet": ["control_v11p_sd15_canny.pth"], "diffusion_models": [], "diffusers": [],
                                 "embeddings": [], "ipadapter": [], "clip_vision": []}
    assert folders.resolve("vae", "vae-ft-mse-840000-ema-pruned.ckpt") == tmp_path / "VAE" / "vae-ft-mse-840000-ema-pruned.ckpt"


def test_a_name_resolves_in_the_first_folder_that_has_it(roots):
    first, second = roots
    folders = ModelFolders(roots)
    assert folders.resolve("checkpoints", "b.safetensors") == first / "checkpoints" / "b.safetensors"
    assert folders.resolve("checkpoints", "z.safetensors") == second / "checkpoints" / "z.safetensors"
    assert folders.resolve("checkpoints", "sd15/A.ckpt") == first / "checkpoints" / "sd15" / "A.ckpt"
    # as ComfyUI on Windows writes names in its workflows
    assert folders.resolve("checkpoints", "sd15\\A.ckpt") == first / "checkpoints" / "sd15" / "A.ckpt"
    assert folders.resolve("diffusers", "sd15") == first / "diffusers" / "sd15"
    assert folders.resolve("controlnet", "canny") == first / "controlnet" / "canny"
    # the kind decides where to look and what counts: a checkpoint is no LoRA, a note is no checkpoint
    assert folders.resolve("loras", "b.safetensors") is None
    assert folders.resolve("checkpoints", "notes.txt") is None
    assert folders.resolve("checkpoints", "sd15") is None
    assert folders.resolve("diffusers", "embedded") is None


@pytest.mark.parametrize("name", ["../loras/style.safetensors", "sd15/../b.safetensors", "/etc/passwd",
                                  "sd15\\..\\b.safetensors", "./b.safetensors", "C:b.safetensors", "", "sd15//A.ckpt",
                                  "\\b.safetensors"])
def test_a_name_never_reaches_outside_the_folders(roots, name):
    assert ModelFolders(roots).resolve("checkpoints", name) is None


def test_links_inside_a_folder_are_followed(roots, tmp_path):
    shared = touch(tmp_path / "shared-drive" / "big.safetensors")
    first, _ = roots
    os.symlink(shared.parent, first / "checkpoints" / "drive")
    folders = ModelFolders(roots)
    assert "drive/big.safetensors" in folders.names("checkpoints")
    assert folders.resolve("checkpoints", "drive/big.safetensors").resolve() == shared


def test_a_link_cycle_ends(tmp_path):
    touch(tmp_path / "checkpoints" / "a.safetensors")
    os.symlink(tmp_path / "checkpoints", tmp_path / "checkpoints" / "loop")
    names = ModelFolders([tmp_path]).names("checkpoints")
    assert names[0] == "a.safetensors" and len(names) <= 10 and all(name.endswith("a.safetensors") for name in names)


def test_the_loaders_say_which_kind_each_input_names():
    marked = {(node, name): spec["schema"][SCHEMA_KEY] for node, info in catalog().items()
              for name, spec in info["inputs"].items() if SCHEMA_KEY in spec["schema"]}
    assert marked[("LoadCheckpoint", "file")] == "checkpoints"
    assert marked[("LoadVAE", "file")] == "vae"
    assert marked[("LoadLoRA", "repo")] == "loras"
    assert marked[("LoadFluxTransformer", "file")] == "diffusion_models"
    assert marked[("LoadFluxTransformer", "checkpoint")] == "checkpoints"
    assert marked[("LoadControlNet", "repo")] == "controlnet"
    assert marked[("LoadComponents", "repo")] == "diffusers"
    assert marked[("LoadTextualInversion", "file")] == "embeddings"
    assert marked[("LoadIPAdapter", "repo")] == "ipadapter"
    assert marked[("LoadIPAdapter", "image_encoder")] == "clip_vision"
    assert set(marked.values()) <= set(KINDS)


def text2image(repo):
    return {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": repo}},
        "t2i": {"type": "preset:sd15-text2image", "inputs": {"components": link("load", "components"),
                "prompt": "a seven", "num_inference_steps": 2, "seed": 3, "output_type": "pt"}}}}


def test_a_workflow_that_names_a_model_in_the_folders_runs_as_with_its_path(tmp_path):
    os.makedirs(tmp_path / "diffusers")
    os.symlink(embedded_model_path(), tmp_path / "diffusers" / "digits")
    named = Executor(model_folders=[tmp_path]).run(text2image("digits"))
    assert named["load"]["components"].source == str(tmp_path / "diffusers" / "digits")  # found there
    by_path = Executor().run(text2image(str(embedded_model_path())))
    assert torch.equal(named["t2i"]["images"], by_path["t2i"]["images"])
    # without the folder, the name is what it was before: a folder or Hub id, which this one is not
    with pytest.raises(Exception, match="digits"):
        Executor().run(text2image("digits"))


def test_a_name_that_is_not_there_is_a_missing_file_not_a_corrupted_one(tmp_path):
    from diffblocks.nodes import NodeRunError

    (tmp_path / "checkpoints").mkdir()
    workflow = {"nodes": {"c": {"type": "LoadCheckpoint", "inputs": {"file": "sd15/gone.safetensors"}}}}
    with pytest.raises(NodeRunError) as caught:
        Executor(model_folders=[tmp_path]).run(workflow)
    assert "node 'c'" in str(caught.value) and "weights file not found; looked for: sd15/gone.safetensors" in str(caught.value)
    assert "corrupted" not in str(caught.value)


def test_a_name_the_folders_lack_is_one_clear_error_before_anything_runs(tmp_path):
    from diffblocks.nodes import WorkflowError

    touch(tmp_path / "checkpoints" / "sd15" / "dreamshaper_8.safetensors")
    executor = Executor(model_folders=[tmp_path])
    events = []
    for typo in ("sd15/dreamshaper8.safetensors", "dreamshaper_8.safetensors"):
        workflow = {"nodes": {"c": {"type": "LoadCheckpoint", "inputs": {"file": typo}}}}
        with pytest.raises(WorkflowError) as caught:
            executor.run(workflow, on_event=events.append)
        assert caught.value.errors == [{"node": "c", "input": "file", "message": (
            f"'{typo}' is not in the checkpoints folder ({tmp_path / 'checkpoints'}) (did you mean "
            f"sd15/dreamshaper_8.safetensors?); expected one of its files, a path or a Hub id")}]
    assert events == []  # refused before the job started
    with pytest.raises(WorkflowError, match=r"'digits' is not there: no diffusers/ in the model folder"):
        executor.run({"nodes": {"c": {"type": "LoadComponents", "inputs": {"repo": "digits"}}}})


@pytest.mark.parametrize("value", ["owner/repo/flux1-dev.safetensors", "embedded"])
def test_paths_hub_ids_and_the_embedded_model_are_left_to_the_loaders(tmp_path, value):
    from diffblocks.nodes.model_files import model_problems

    touch(tmp_path / "checkpoints" / "sd15" / "a.safetensors")
    touch(tmp_path / "elsewhere.safetensors")
    folders = ModelFolders([tmp_path])
    for node_type, name in (("LoadCheckpoint", "file"), ("LoadComponents", "repo")):
        for given in (value, str(tmp_path / "elsewhere.safetensors")):
            workflow = {"nodes": {"n": {"type": node_type, "inputs": {name: given}}}}
            assert model_problems(workflow, folders) == []
    assert model_problems({"nodes": {"n": {"type": "LoadCheckpoint", "inputs": {"file": "b.ckpt"}}}}, ModelFolders([])) == []
