"""A workflow with a ``FreeU`` node equals the pipeline whose UNet has FreeU enabled, one with a ``TiledVAE`` node the
pipeline whose VAE decodes in tiles, bitwise (tolerance 0); the shared models, and a plain workflow run afterwards,
stay as they were."""

import pytest
import torch
from node_workflows import changed, link, preset_text2image
from tiny_models import build_pipeline

from diffblocks.nodes import ArtifactStore, Executor, NodeRunError, catalog
from diffblocks.nodes.catalog import node_type
from diffblocks.presets import embedded_model_path, stable_diffusion

STEPS = 2
FACTORS = dict(b1=1.5, b2=1.6, s1=0.9, s2=0.2)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


def with_freeu(workflow, source="load", **inputs):
    workflow["nodes"]["freeu"] = {"type": "FreeU", "inputs": {"components": link(source, "components"), **inputs}}
    workflow["nodes"]["run"]["inputs"]["components"] = link("freeu", "components")
    return workflow


def test_freeu_is_in_the_catalog_with_comfyuis_defaults():
    described = catalog()["FreeU"]
    defaults = {name: described["inputs"][name]["schema"]["default"] for name in ("b1", "b2", "s1", "s2", "version")}
    assert defaults == dict(b1=1.1, b2=1.2, s1=0.9, s2=0.2, version=1)
    assert described["inputs"]["components"]["socket"] == "components"
    assert node_type("FreeU").check_value("b1", float("inf")) == "must be a finite number, got inf"
    assert node_type("FreeU").check_value("version", True) == "must be 1 or 2, got True"


def test_freeu_workflows_equal_the_pipeline_and_leave_the_shared_unet_alone(sd_repo, tmp_path):
    executor = Executor(artifacts=ArtifactStore(tmp_path))
    plain = preset_text2image(str(sd_repo), steps=STEPS)
    before = executor.run(plain)["run"]["images"]
    one = with_freeu(preset_text2image(str(sd_repo), steps=STEPS), **FACTORS)
    two = changed(one, "freeu", version=2)
    got_one, got_two = executor.run(one)["run"]["images"], executor.run(two)["run"]["images"]

    pipe = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)
    call = dict(prompt="a cat", num_inference_steps=STEPS, output_type="pt", output="images")
    for version, got in ((1, got_one), (2, got_two)):
        pipe.unet.enable_freeu(**FACTORS, version=version)
        assert torch.equal(got, pipe(generator=torch.Generator().manual_seed(0), **call)), version
    assert not torch.equal(got_one, before) and not torch.equal(got_two, got_one)

    unets = [c for c in executor.components_manager.components.values() if hasattr(c, "enable_freeu")]
    assert len(unets) == 1 and unets[0].freeu is None  # the shared UNet
    assert torch.equal(executor.run(plain)["run"]["images"], before)
    executor.free()  # computed again, on the shared UNet
    assert torch.equal(executor.run(plain)["run"]["images"], before)


def test_a_bundle_without_a_conditioned_unet_is_named(tmp_path):
    workflow = with_freeu(preset_text2image("embedded"))
    workflow["nodes"]["load"]["inputs"]["without"] = ["unet"]
    with pytest.raises(NodeRunError) as caught:
        Executor(artifacts=ArtifactStore(tmp_path)).run(workflow)
    problem = caught.value.error_json()
    assert problem["node"] == "freeu"
    assert problem["message"].startswith("FreeU failed: FreeU needs a bundle with an SD or SDXL UNet")


def test_tiled_vae_workflows_equal_the_pipeline_with_tiling_and_leave_the_shared_vae_alone(tmp_path):
    """The embedded model's VAE is 32 px: at 64 px the TiledVAE node's decode is the pipeline's with tiling on."""
    executor = Executor(artifacts=ArtifactStore(tmp_path))
    plain = preset_text2image("embedded", steps=STEPS, height=64, width=64)
    before = executor.run(plain)["run"]["images"]
    tiled = preset_text2image("embedded", steps=STEPS, height=64, width=64)
    tiled["nodes"]["tiles"] = {"type": "TiledVAE", "inputs": {"components": link("load", "components")}}
    tiled["nodes"]["run"]["inputs"]["components"] = link("tiles", "components")
    got = executor.run(tiled)["run"]["images"]

    pipe = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, embedded_model_path())
    pipe.vae.enable_tiling()
    call = dict(prompt="a cat", num_inference_steps=STEPS, height=64, width=64, output_type="pt", output="images")
    assert torch.equal(got, pipe(generator=torch.Generator().manual_seed(0), **call))
    assert not torch.equal(got, before)
    vaes = [c for c in executor.components_manager.components.values() if hasattr(c, "enable_tiling")]
    assert len(vaes) == 1 and not vaes[0].use_tiling  # the shared VAE
    assert torch.equal(executor.run(plain)["run"]["images"], before)
