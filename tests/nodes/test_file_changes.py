"""A model file saved again under the same path (a LoRA's next training epoch, a VAE swapped in place) is read again
at the next run, and what it feeds is recomputed; a file left as it was is served from the cache."""

import shutil

import pytest
import torch
from node_workflows import link, preset_text2image
from safetensors.torch import load_file, save_file

from diffblocks.nodes import Executor
from diffblocks.nodes.keys import file_stamp
from diffblocks.presets import embedded_model_path

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


def run(executor, workflow):
    """The run's images and the nodes it computed (the others came from the cache)."""
    events = []
    images = executor.run(workflow, on_event=events.append)["run"]["images"]
    return images, [event["node"] for event in events if event["type"] == "node.started"]


def perturbed(source, target, seed):
    """``source``'s tensors, each nudged by seeded noise, saved at ``target`` (the same size: only the time and the
    contents tell the two apart)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = load_file(source)
    save_file({k: v + 0.05 * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in tensors.items()},
              target)


def test_a_lora_saved_again_is_read_again_and_the_image_recomputed(sd_repo, tmp_path):
    import diffusers
    from tiny_lora import make_lora

    ref = diffusers.StableDiffusionPipeline.from_pretrained(sd_repo)
    path = tmp_path / "epoch.safetensors"
    save_file(make_lora(ref, "kohya", seed=1, alpha=2.0), path)
    workflow = preset_text2image(str(sd_repo))
    workflow["nodes"]["lora"] = {"type": "LoadLoRA", "inputs": {"components": link("load", "components"),
                                                                "repo": str(path), "scale": 0.8}}
    workflow["nodes"]["run"]["inputs"]["components"] = link("lora", "components")
    executor = Executor()
    first, computed = run(executor, workflow)
    assert computed == ["load", "lora", "run"]
    assert run(executor, workflow)[1] == []  # the file as it was: every node from the cache

    stamp = file_stamp(str(path))
    save_file(make_lora(ref, "kohya", seed=2, alpha=2.0), path)  # the next epoch, same name and size
    assert file_stamp(str(path)) != stamp
    second, computed = run(executor, workflow)
    assert computed == ["lora", "run"]  # the base model stays cached
    assert not torch.equal(second, first)
    assert torch.equal(second, run(Executor(), workflow)[0])  # what a fresh engine draws with the new file


def test_a_vae_file_replaced_is_not_taken_from_the_shared_components(tmp_path):
    """LoadVAE keeps the models it read in the ComponentsManager, found again by file: a file saved again is a
    new model there, not the one read before."""
    embedded = str(embedded_model_path())
    original = embedded_model_path() / "vae" / "diffusion_pytorch_model.safetensors"
    path = tmp_path / "vae.safetensors"
    shutil.copy(original, path)
    workflow = preset_text2image(embedded, vae=link("vae", "vae"))
    workflow["nodes"]["vae"] = {"type": "LoadVAE", "inputs": {"file": str(path), "config": embedded}}
    executor = Executor()
    first, _ = run(executor, workflow)
    perturbed(original, path, seed=0)
    second, computed = run(executor, workflow)
    assert computed == ["vae", "run"]
    assert not torch.equal(second, first)
    assert torch.equal(second, run(Executor(), workflow)[0])
    assert file_stamp(str(tmp_path)) is None and file_stamp("stable-diffusion-v1-5/stable-diffusion-v1-5") is None
