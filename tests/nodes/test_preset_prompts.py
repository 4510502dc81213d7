"""The ``preset:`` node types read SD's and SDXL's prompts as ``diffblocks run`` does, in A1111's syntax: a weighted,
BREAK-split prompt draws what the preset draws with the weighted text encoder swapped in (tolerance 0: the same
computation), and a prompt without that syntax what the plain preset draws."""

import pytest
import torch
from node_workflows import preset_text2image
from tiny_models import build_pipeline

from diffblocks.blocks.stable_diffusion import StableDiffusionWeightedTextEncoderStep
from diffblocks.blocks.stable_diffusion_xl import StableDiffusionXLWeightedTextEncoderStep
from diffblocks.nodes import ArtifactStore, Executor
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

FAMILIES = {"sd15": (stable_diffusion, StableDiffusionWeightedTextEncoderStep, "sd_repo"),
            "sdxl": (stable_diffusion_xl, StableDiffusionXLWeightedTextEncoderStep, "sdxl_repo")}


@pytest.mark.parametrize("family", FAMILIES)
def test_preset_nodes_read_a1111s_prompt_syntax(request, tmp_path, family):
    module, weighted, repo_fixture = FAMILIES[family]
    repo = str(request.getfixturevalue(repo_fixture))
    prompt = "a (cat:1.4) BREAK on a [mat]"
    executor = Executor(artifacts=ArtifactStore(tmp_path))
    got = executor.run(preset_text2image(repo, prompt, preset=f"{family}-text2image"))["run"]["images"]
    blocks = module.TEXT2IMAGE_BLOCKS.copy()
    blocks["text_encoder"] = weighted
    call = dict(prompt=prompt, num_inference_steps=3, output_type="pt", output="images")
    expected = build_pipeline(blocks, repo)(generator=torch.Generator().manual_seed(0), **call)
    assert torch.equal(got, expected)
    literal = build_pipeline(module.TEXT2IMAGE_BLOCKS, repo)(generator=torch.Generator().manual_seed(0), **call)
    assert not torch.equal(got, literal)  # the plain preset reads the brackets as text
    plain = executor.run(preset_text2image(repo, "a cat on a mat", preset=f"{family}-text2image"))["run"]["images"]
    call["prompt"] = "a cat on a mat"
    assert torch.equal(plain, build_pipeline(module.TEXT2IMAGE_BLOCKS, repo)(
        generator=torch.Generator().manual_seed(0), **call))
