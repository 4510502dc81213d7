"""Saving keeps what the user made (swapped scheduler, another guider, a model built in code), saved paths
resolve from anywhere, and a save that fails midway leaves the old copy loadable and unchanged."""

import json
import os
import shutil

import pytest
import torch

from diffblocks import ModularPipeline, SequentialPipelineBlocks
from diffblocks.components.models import UNet2DConditionModel
from diffblocks.components.schedulers import EulerDiscreteScheduler
from diffblocks.guiders import PerturbedAttentionGuidance
from diffblocks.presets import stable_diffusion

STEPS = 3


def run(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), num_inference_steps=STEPS,
                output_type="pt", output="images")


def changed_pipeline(repo):
    """The tiny SD pipeline with a swapped scheduler, a PAG guider and a UNet built in code."""
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(repo)
    pipe.load_components()
    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_config(pipe.unet.config).eval()
    pipe.update_components(
        scheduler=EulerDiscreteScheduler.from_config(pipe.scheduler.config),
        guider=PerturbedAttentionGuidance(guidance_scale=5.0, perturbed_guidance_layers=[0]),
        unet=unet,
    )
    return pipe


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_changed_components_round_trip_to_the_same_images(sd_repo, tmp_path):
    pipe = changed_pipeline(sd_repo)
    expected = run(pipe)
    pipe.save_pretrained(tmp_path / "saved")

    index = json.loads((tmp_path / "saved" / "modular_model_index.json").read_text())
    assert index["scheduler"][2] == {"repo": ".", "subfolder": "scheduler", "default_creation_method": "from_config",
                                     "config_file": "scheduler_config.json",
                                     "type_hint": ["diffusers", "EulerDiscreteScheduler"]}
    assert index["guider"][2]["config_file"] == "guider_config.json"
    assert index["unet"][2]["repo"] == "." and index["unet"][2]["subfolder"] == "unet"
    assert index["vae"][2]["repo"] == str(sd_repo)  # untouched parts stay references
    assert (tmp_path / "saved" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "saved" / "scheduler" / "scheduler_config.json").is_file()

    loaded = ModularPipeline.from_pretrained(tmp_path / "saved")
    assert isinstance(loaded.scheduler, EulerDiscreteScheduler)  # from_config parts are created at init
    assert isinstance(loaded.guider, PerturbedAttentionGuidance) and loaded.guider.guidance_scale == 5.0
    assert dict(loaded.guider.config) == dict(pipe.guider.config)
    loaded.load_components()
    assert torch.equal(run(loaded), expected)


def test_a_saved_folder_moved_elsewhere_still_loads_its_own_parts(sd_repo, tmp_path):
    pipe = changed_pipeline(sd_repo)
    expected = run(pipe)
    pipe.save_pretrained(tmp_path / "saved")
    shutil.move(tmp_path / "saved", tmp_path / "moved")
    loaded = ModularPipeline.from_pretrained(tmp_path / "moved")
    loaded.load_components()
    assert loaded.get_component_spec("unet").repo == str(tmp_path / "moved")
    assert torch.equal(run(loaded), expected)


def test_resaving_into_the_same_folder_keeps_it_loadable(sd_repo, tmp_path):
    pipe = changed_pipeline(sd_repo)
    expected = run(pipe)
    pipe.save_pretrained(tmp_path / "saved")
    loaded = ModularPipeline.from_pretrained(tmp_path / "saved")
    loaded.load_components()
    loaded.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "modular_model_index.json").read_text())
    assert index["unet"][2]["repo"] == "." and index["unet"][2]["subfolder"] == "unet"
    again = ModularPipeline.from_pretrained(tmp_path / "saved")
    again.load_components()
    assert torch.equal(run(again), expected)


def test_relative_paths_are_saved_as_paths_that_resolve_elsewhere(sd_repo, tmp_path, monkeypatch):
    monkeypatch.chdir(sd_repo.parent)
    pipe = ModularPipeline.from_pretrained(sd_repo.name)  # a relative path
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "modular_model_index.json").read_text())
    assert index["unet"][2]["repo"] == str(sd_repo)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = ModularPipeline.from_pretrained(tmp_path / "saved")
    loaded.load_components(names=["unet", "scheduler"])
    assert loaded.unet is not None and loaded.scheduler is not None


def test_unchanged_from_config_parts_are_not_written(sd_repo, tmp_path):
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(sd_repo)
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "modular_model_index.json").read_text())
    assert "guider" not in index and "image_processor" not in index
    assert not (tmp_path / "saved" / "guider").exists()


# --- a failed save leaves the old copy ------------------------------------------------------------


def fail_on_call(monkeypatch, number):
    """Make safetensors' writer raise on its ``number``-th call (after writing nothing for it)."""
    import safetensors.torch

    real, calls = safetensors.torch.save_file, []

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == number:
            raise OSError("disk full")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    return calls


def tiny_unet(seed):
    from tiny_models import tiny_unet as reference_config

    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(dict(reference_config().config)).eval()


def test_failed_sharded_save_leaves_the_old_shards(tmp_path, monkeypatch):
    folder = tmp_path / "unet"
    tiny_unet(0).save_pretrained(folder, max_shard_size="200KB")
    shards = sorted(p.name for p in folder.glob("*-of-*.safetensors"))
    assert len(shards) > 2
    before = snapshot(folder)
    calls = fail_on_call(monkeypatch, 2)
    with pytest.raises(OSError, match="disk full"):
        tiny_unet(1).save_pretrained(folder, max_shard_size="200KB")
    assert len(calls) == 2
    assert snapshot(folder) == before  # bit for bit, and no temporaries left
    monkeypatch.undo()
    loaded = UNet2DConditionModel.from_pretrained(folder)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny_unet(0).state_dict().values()))


def test_successful_save_swaps_layouts_and_removes_stale_shards(tmp_path):
    folder = tmp_path / "unet"
    tiny_unet(0).save_pretrained(folder, max_shard_size="200KB")
    tiny_unet(1).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = UNet2DConditionModel.from_pretrained(folder)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny_unet(1).state_dict().values()))


def test_failed_pipeline_save_keeps_the_old_index_and_configs(sd_repo, tmp_path, monkeypatch):
    pipe = changed_pipeline(sd_repo)
    expected = run(pipe)
    pipe.save_pretrained(tmp_path / "saved")
    before = snapshot(tmp_path / "saved")
    torch.manual_seed(2)
    pipe.update_components(unet=UNet2DConditionModel.from_config(pipe.unet.config).eval(),
                           guider=PerturbedAttentionGuidance(guidance_scale=9.0, perturbed_guidance_layers=[0]))
    fail_on_call(monkeypatch, 1)
    with pytest.raises(OSError, match="disk full"):
        pipe.save_pretrained(tmp_path / "saved")
    assert snapshot(tmp_path / "saved") == before
    monkeypatch.undo()
    loaded = ModularPipeline.from_pretrained(tmp_path / "saved")
    loaded.load_components()
    assert torch.equal(run(loaded), expected)


def test_nothing_is_written_when_a_component_cannot_be_saved(tmp_path):
    from toy_components import Scale, UsesScale

    from diffblocks.modular_pipelines.errors import ConfigError

    pipe = UsesScale().init_pipeline()
    pipe.update_components(scale=Scale(factor=object()))
    with pytest.raises(ConfigError, match="cannot save component 'scale' \\(Scale\\): its config is not JSON"):
        pipe.save_pretrained(tmp_path / "saved")
    assert not os.path.exists(tmp_path / "saved")
