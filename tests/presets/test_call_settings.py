"""Settings for one call: the guider's knobs as call keywords (``pipe(..., guidance_scale=9)``), leaving the
pipeline's guider as it was."""

import pytest
import torch
from tiny_models import build_pipeline

from diffblocks.guiders import ClassifierFreeGuidance, PerturbedAttentionGuidance
from diffblocks.modular_pipelines.errors import UnknownInputError
from diffblocks.presets import stable_diffusion


@pytest.fixture
def pipe(sd_repo):
    return build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)


def run(pipe, **kwargs):
    return pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="pt",
                output="images", **kwargs)


def test_guidance_scale_for_one_call(pipe):
    default = run(pipe)
    nine = run(pipe, guidance_scale=9.0)
    assert not torch.equal(nine, default)
    assert pipe.guider.config["guidance_scale"] == 7.5  # the pipeline's guider is unchanged
    assert torch.equal(run(pipe), default)
    pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=9.0))
    assert torch.equal(run(pipe), nine)


def test_knobs_of_the_current_guider(pipe):
    pipe.update_components(guider=PerturbedAttentionGuidance(perturbed_guidance_layers=[0]))
    strong = run(pipe, perturbed_guidance_scale=6.0, perturbed_guidance_stop=1.0)
    pipe.update_components(guider=PerturbedAttentionGuidance(perturbed_guidance_layers=[0], perturbed_guidance_scale=6.0,
                                                             perturbed_guidance_stop=1.0))
    assert torch.equal(run(pipe), strong)


def test_a_name_neither_input_nor_knob_lists_the_knobs(pipe):
    with pytest.raises(UnknownInputError, match="guidance_scal") as err:
        run(pipe, guidance_scal=9.0)
    assert "guidance_scale" in str(err.value)
    pipe.update_components(guider=ClassifierFreeGuidance())
    with pytest.raises(UnknownInputError, match="perturbed_guidance_scale"):
        run(pipe, perturbed_guidance_scale=2.0)
