"""``ScaleLatents``: a hires fix in latent space as a workflow (a preset's latents, enlarged, into image-to-image)
equals the two presets called from Python with the latents enlarged by torch's interpolation, bitwise (tolerance 0);
a value it cannot take is one error naming it."""

import pytest
import torch
from node_workflows import link, preset_text2image
from tiny_models import build_pipeline

from diffblocks.nodes import ArtifactStore, Executor, NodeRunError
from diffblocks.nodes.catalog import node_type
from diffblocks.presets import embedded_model_path, stable_diffusion

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


def latent_hires(method: str) -> dict:
    workflow = preset_text2image("embedded", steps=3, output_type="latent")
    workflow["nodes"]["scale"] = {"type": "ScaleLatents", "inputs": {"latents": link("run", "images"), "scale_by": 2,
                                                                     "method": method}}
    workflow["nodes"]["hires"] = {"type": "preset:sd15-image2image", "inputs": {
        "components": link("load", "components"), "prompt": "a cat", "image": link("scale", "latents"),
        "strength": 0.6, "num_inference_steps": 3, "seed": 0, "output_type": "pt"}}
    return workflow


@pytest.mark.parametrize("method, mode, antialias", [("bilinear", "bilinear", False), ("bicubic-antialiased", "bicubic",
                                                                                        True)])
def test_scaled_latents_paint_again_as_the_presets_do(tmp_path, method, mode, antialias):
    got = Executor(artifacts=ArtifactStore(tmp_path)).run(latent_hires(method))["hires"]["images"]
    repo = embedded_model_path()
    latents = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, repo)(
        prompt="a cat", num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="latent",
        output="images")
    enlarged = torch.nn.functional.interpolate(latents, size=(16, 16), mode=mode, antialias=antialias)
    expected = build_pipeline(stable_diffusion.IMAGE2IMAGE_BLOCKS, repo)(
        prompt="a cat", image=enlarged, strength=0.6, num_inference_steps=3, height=64, width=64,
        generator=torch.Generator().manual_seed(0), output_type="pt", output="images")
    assert got.shape[-2:] == (64, 64) and torch.equal(got, expected)


def test_what_scale_latents_cannot_take_is_named(tmp_path):
    scale = node_type("ScaleLatents")
    assert scale.check_value("method", "bislerp").startswith("must be one of bilinear, bilinear-antialiased")
    assert scale.check_value("scale_by", 0) == "must be a number in (0, 8], got 0"
    workflow = latent_hires("bilinear")
    workflow["nodes"]["run"]["inputs"]["output_type"] = "pil"  # images, not latents
    with pytest.raises(NodeRunError) as caught:
        Executor(artifacts=ArtifactStore(tmp_path)).run(workflow)
    problem = caught.value.error_json()
    assert problem["node"] == "scale" and "set output_type 'latent' on the preset that makes it" in problem["message"]
