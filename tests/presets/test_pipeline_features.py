"""ModularPipeline features on the real presets: loading paths, component lists, sharing, saving,
guider switching, progress / callbacks / interrupt, and no state carried between calls."""

import json
import logging

import pytest
import torch
from tiny_models import build_pipeline

from diffblocks import ComponentsManager, ModularPipeline, SequentialPipelineBlocks
from diffblocks.guiders import ClassifierFreeGuidance, PerturbedAttentionGuidance
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

STEPS = 3


def gen():
    return torch.Generator().manual_seed(0)


def run(pipe, **kwargs):
    return pipe(prompt="a cat", generator=gen(), num_inference_steps=STEPS, output_type="pt", output="images", **kwargs)


@pytest.fixture
def sd_pipe(sd_repo):
    return build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)


def test_standard_repo_picks_the_family_auto_blocks(sd_repo, sdxl_repo):
    for repo, family in ((sd_repo, stable_diffusion), (sdxl_repo, stable_diffusion_xl)):
        pipe = ModularPipeline.from_pretrained(repo)
        assert list(pipe.blocks.sub_blocks) == list(family.AUTO_BLOCKS)
        pipe.load_components()
        pipe.set_progress_bar_config(disable=True)
        images = pipe(prompt="a cat", num_inference_steps=2, output="images")
        assert images[0].size == (32, 32)


def test_component_loading_status_lists(sdxl_repo):
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion_xl.TEXT2IMAGE_BLOCKS).init_pipeline(sdxl_repo)
    expected = {"text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "guider", "scheduler", "unet", "vae",
                "image_processor"}
    assert set(pipe.component_names) == expected
    pretrained = {"text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler", "unet", "vae"}
    assert set(pipe.null_component_names) == pretrained
    assert set(pipe.pretrained_component_names) == pretrained
    assert pipe.config_component_names == ["guider", "image_processor"]
    assert pipe.force_zeros_for_empty_prompt is True  # a config value read from the repo
    pipe.load_components(names=["unet", "vae"])
    assert set(pipe.null_component_names) == pretrained - {"unet", "vae"}
    assert "unet: UNet2DConditionModel" in repr(pipe) and "tokenizer: not loaded" in repr(pipe)


def test_pipelines_on_one_manager_share_components(sd_repo):
    manager = ComponentsManager()
    first = ModularPipeline.from_pretrained(sd_repo, components_manager=manager, collection="a")
    first.load_components()
    second = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.IMAGE2IMAGE_BLOCKS).init_pipeline(
        sd_repo, components_manager=manager, collection="b")
    second.load_components()
    assert second.unet is first.unet and second.text_encoder is first.text_encoder
    assert manager.get_one(name="unet", collection="a") is first.unet


def test_modular_repo_round_trip_gives_the_same_images(sd_pipe, tmp_path):
    sd_pipe.save_pretrained(tmp_path / "modular")
    index = json.loads((tmp_path / "modular" / "modular_model_index.json").read_text())
    assert index["unet"][:2] == ["diffusers", "UNet2DConditionModel"] and "guider" not in index
    assert not (tmp_path / "modular" / "block.py").exists()  # preset blocks need no custom code
    loaded = ModularPipeline.from_pretrained(tmp_path / "modular")
    assert loaded.null_component_names == sd_pipe.pretrained_component_names
    loaded.load_components()
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(run(loaded), run(sd_pipe))


def test_switching_and_tuning_guiders(sd_pipe, caplog):
    spec = sd_pipe.get_component_spec("guider")
    assert spec.default_creation_method == "from_config" and spec.config["guidance_scale"] == 7.5
    base = run(sd_pipe)
    sd_pipe.update_components(guider=spec.create(guidance_scale=10))
    assert sd_pipe.guider.guidance_scale == 10 and sd_pipe.get_component_spec("guider").config["guidance_scale"] == 10
    assert not torch.equal(run(sd_pipe), base)
    spec = sd_pipe.get_component_spec("guider")
    spec.config["guidance_scale"] = 7.5
    sd_pipe.update_components(guider=spec)
    assert torch.equal(run(sd_pipe), base)
    with caplog.at_level(logging.INFO, logger="diffblocks"):
        sd_pipe.update_components(guider=PerturbedAttentionGuidance(perturbed_guidance_layers=[0]))
    assert "adding guider with new type: PerturbedAttentionGuidance, previous type: ClassifierFreeGuidance" in caplog.text


def test_guider_saved_in_a_modular_repo_loads_as_a_pretrained_component(sd_pipe, tmp_path, caplog):
    PerturbedAttentionGuidance(perturbed_guidance_layers=[0], guidance_scale=5.0).save_pretrained(tmp_path / "g" / "pag_guider")
    spec = sd_pipe.get_component_spec("guider")
    spec.default_creation_method = "from_pretrained"
    spec.repo, spec.subfolder = str(tmp_path / "g"), "pag_guider"
    spec.type_hint = PerturbedAttentionGuidance
    with caplog.at_level(logging.INFO, logger="diffblocks"):
        sd_pipe.update_components(guider=spec.load())
    assert "default_creation_method of guider from from_config to from_pretrained" in caplog.text
    sd_pipe.save_pretrained(tmp_path / "modular")
    loaded = ModularPipeline.from_pretrained(tmp_path / "modular")
    assert loaded.guider is None  # not created at init: it is a from_pretrained component now
    loaded.load_components()
    assert isinstance(loaded.guider, PerturbedAttentionGuidance) and loaded.guider.guidance_scale == 5.0


def test_disabled_guider_and_no_state_between_calls(sd_pipe):
    first = run(sd_pipe)
    assert torch.equal(run(sd_pipe), first)  # nothing carried over
    sd_pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=7.5, stop=0.5))
    windowed = run(sd_pipe)
    assert torch.equal(run(sd_pipe), windowed)  # a window ending early does not change the next call
    assert run(sd_pipe, negative_prompt="blurry").sub(windowed).abs().max() > 0  # negative prompt still used
    sd_pipe.guider.enabled = False
    plain = run(sd_pipe)
    sd_pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=1.0))
    assert torch.equal(plain, run(sd_pipe))


def test_split_guidance_batches_gives_the_same_result(sd_pipe):
    torch.testing.assert_close(run(sd_pipe, split_guidance_batches=True), run(sd_pipe), atol=1e-5, rtol=0)


def test_step_callback_sees_every_step_and_can_stop(sd_pipe):
    seen = []
    run(sd_pipe, step_callback=lambda i, t, latents: seen.append((i, int(t), tuple(latents.shape))))
    assert [s[0] for s in seen] == list(range(STEPS)) and seen[0][2] == (1, 4, 16, 16)
    stopped = []
    run(sd_pipe, step_callback=lambda i, t, latents: stopped.append(i) or i < 1)
    assert stopped == [0, 1]


def test_interrupt_stops_the_loop(sd_pipe):
    steps = []

    def callback(i, t, latents):
        steps.append(i)
        sd_pipe.interrupt()

    run(sd_pipe, step_callback=callback)
    assert steps == [0]
    run(sd_pipe, step_callback=lambda i, t, latents: steps.append(i))  # the next call starts afresh
    assert steps == [0, 0, 1, 2]


def test_progress_bar_can_be_turned_on_and_off(sd_pipe, capsys):
    sd_pipe.set_progress_bar_config(disable=False)
    run(sd_pipe)
    assert f"{STEPS}/{STEPS}" in capsys.readouterr().err
    sd_pipe.set_progress_bar_config(disable=True)
    run(sd_pipe)
    assert capsys.readouterr().err == ""


def test_auto_offload_through_a_pipeline_evicts_and_keeps_outputs(sd_repo):
    """A simulated device that holds about one model at a time: the manager must evict as blocks call
    models (the VAE through encode/decode, not forward), and the images stay the same."""
    from diffblocks.components.offload import module_size_bytes

    manager = ComponentsManager()
    pipe = ModularPipeline.from_pretrained(sd_repo, components_manager=manager)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(prompt="a cat", generator=gen(), num_inference_steps=2, output_type="pt", output="images")
    biggest = max(module_size_bytes(m) for m in (pipe.unet, pipe.vae, pipe.text_encoder))
    state = {"free": biggest + 10}

    def probe(device):  # free memory shrinks by what the offloader has placed on the "device"
        resident = manager.offloader.resident_ids if manager.offloader is not None else []
        return state["free"] - sum(module_size_bytes(manager.components[i]) for i in resident)

    manager.enable_auto_cpu_offload(device="cpu", memory_reserve_margin=0, memory_probe=probe)
    evicted = []
    original = manager.offloader.prepare

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        evicted.extend(manager.offloader.last_evicted)
        return result

    manager.offloader.prepare = spy
    got = pipe(prompt="a cat", generator=gen(), num_inference_steps=2, output_type="pt", output="images")
    assert torch.equal(got, expected)
    assert any(i.startswith("unet") for i in evicted) and any(i.startswith("text_encoder") for i in evicted)


def test_unload_components_keeps_specs(sd_pipe):
    sd_pipe.unload_components(["unet", "vae"])
    assert {"unet", "vae"} <= set(sd_pipe.null_component_names) and sd_pipe.unet is None
    sd_pipe.load_components(names="unet")
    assert sd_pipe.unet is not None and "vae" in sd_pipe.null_component_names


def test_hub_repo_ids_go_through_huggingface_hub(sd_repo, monkeypatch):
    """A repo id is resolved file by file with hf_hub_download (stood in for here: no network)."""
    import huggingface_hub

    asked = []

    def fake_download(repo_id, filename, subfolder=None, revision=None, **kwargs):
        asked.append((repo_id, subfolder, filename))
        path = sd_repo / (subfolder or "") / filename
        if not path.is_file():
            raise huggingface_hub.errors.EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    pipe = ModularPipeline.from_pretrained("someone/tiny-sd")
    assert pipe.get_component_spec("unet").load_id == "someone/tiny-sd|unet|null|null"
    pipe.load_components(names=["unet", "vae", "scheduler"])
    assert ("someone/tiny-sd", "unet", "config.json") in asked
    assert type(pipe.unet).__name__ == "UNet2DConditionModel" and pipe.scheduler is not None
