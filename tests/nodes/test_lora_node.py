"""A workflow with ``LoadLoRA`` equals the pipeline with the same LoRA loaded, bitwise (tolerance 0), and the shared
UNet and text encoder, and a plain workflow run afterwards, stay as they were."""

import pytest
import torch
from node_workflows import link, preset_text2image
from safetensors.torch import save_file
from tiny_lora import make_lora
from tiny_models import build_pipeline

from diffblocks.nodes import ArtifactStore, Executor, catalog
from diffblocks.nodes.catalog import node_type
from diffblocks.presets import stable_diffusion

STEPS = 2


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


@pytest.fixture(scope="module")
def lora_files(sd_repo, tmp_path_factory):
    import diffusers

    ref = diffusers.StableDiffusionPipeline.from_pretrained(sd_repo)
    folder = tmp_path_factory.mktemp("loras")
    save_file(make_lora(ref, "kohya", seed=1, alpha=2.0), folder / "style.safetensors")
    save_file(make_lora(ref, "peft", seed=2), folder / "pytorch_lora_weights.safetensors")
    return folder


def with_lora(workflow, node, source, repo, **inputs):
    workflow["nodes"][node] = {"type": "LoadLoRA", "inputs": {"components": link(source, "components"), "repo": repo,
                                                              **inputs}}
    workflow["nodes"]["run"]["inputs"]["components"] = link(node, "components")
    return workflow


def test_load_lora_is_in_the_catalog():
    described = catalog()["LoadLoRA"]
    assert {"components", "repo", "weight_name", "adapter_name", "scale"} <= set(described["inputs"])
    assert described["inputs"]["components"]["socket"] == "components"
    assert node_type("LoadLoRA").check_value("scale", "high") == "must be a number, got 'high'"


def test_lora_workflows_equal_the_pipeline_and_leave_the_shared_models_alone(sd_repo, lora_files, tmp_path):
    executor = Executor(artifacts=ArtifactStore(tmp_path))
    plain = preset_text2image(str(sd_repo), steps=STEPS)
    before = executor.run(plain)["run"]["images"]

    one = with_lora(preset_text2image(str(sd_repo), steps=STEPS), "lora", "load", str(lora_files),
                    weight_name="style.safetensors", scale=0.7)
    two = with_lora(with_lora(preset_text2image(str(sd_repo), steps=STEPS), "lora", "load", str(lora_files),
                              weight_name="style.safetensors", adapter_name="style", scale=0.7),
                    "lora2", "lora", str(lora_files), adapter_name="detail", scale=0.5)
    got_one, got_two = executor.run(one)["run"]["images"], executor.run(two)["run"]["images"]

    pipe = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)
    call = dict(prompt="a cat", num_inference_steps=STEPS, output_type="pt", output="images")
    pipe.loader.load_lora_weights(str(lora_files), weight_name="style.safetensors", adapter_name="style")
    pipe.loader.set_adapters("style", 0.7)
    assert torch.equal(got_one, pipe(generator=torch.Generator().manual_seed(0), **call))
    pipe.loader.load_lora_weights(str(lora_files), adapter_name="detail")
    pipe.loader.set_adapters(["style", "detail"], [0.7, 0.5])
    assert torch.equal(got_two, pipe(generator=torch.Generator().manual_seed(0), **call))
    assert not torch.equal(got_one, before) and not torch.equal(got_two, got_one)

    shared = executor.run(plain)  # cached: same key, since the shared models did not change
    assert torch.equal(shared["run"]["images"], before)
    executor.free()  # computed again, on the shared models
    assert torch.equal(executor.run(plain)["run"]["images"], before)


def test_text_encoder_scale_weights_the_text_encoders_apart_as_comfyuis_strength_clip(sd_repo, lora_files, tmp_path):
    """``text_encoder_scale`` equals the pipeline's per-component weights bitwise; 0 draws what the UNet's LoRA
    alone draws (ComfyUI's LoraLoaderModelOnly), and leaving it empty is ``scale`` everywhere."""
    executor = Executor(artifacts=ArtifactStore(tmp_path))

    def run(**inputs):
        workflow = with_lora(preset_text2image(str(sd_repo), steps=STEPS), "lora", "load", str(lora_files),
                             weight_name="style.safetensors", scale=0.7, **inputs)
        return executor.run(workflow)["run"]["images"]

    pipe = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)
    call = dict(prompt="a cat", num_inference_steps=STEPS, output_type="pt", output="images")
    pipe.loader.load_lora_weights(str(lora_files), weight_name="style.safetensors", adapter_name="style")
    for clip in (0.3, 0.0):
        pipe.loader.set_adapters("style", {"unet": 0.7, "text_encoder": clip})
        assert torch.equal(run(text_encoder_scale=clip), pipe(generator=torch.Generator().manual_seed(0), **call)), clip
    assert torch.equal(run(text_encoder_scale=None), run())
    assert not torch.equal(run(text_encoder_scale=0.3), run())
    assert node_type("LoadLoRA").check_value("text_encoder_scale", "low") == "must be a number or null, got 'low'"
