"""PerturbedAttentionGuidance in the SD / SDXL presets against diffusers' classic PAG pipelines with
``pag_applied_layers=["mid"]`` on the same tiny weights. Tolerance: max abs diff <= 1e-4 (pt output)."""

import pytest
import torch

from diffblocks import SequentialPipelineBlocks
from diffblocks.guiders import LayerSkipConfig, PerturbedAttentionGuidance
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

TOL = 1e-4
FAMILIES = {
    "sd": (stable_diffusion, "StableDiffusionPAGPipeline", "sd_repo"),
    "sdxl": (stable_diffusion_xl, "StableDiffusionXLPAGPipeline", "sdxl_repo"),
}


def pag_guider(unet, guidance_scale):
    layers = len(unet.mid_block.attentions[0].transformer_blocks)
    config = LayerSkipConfig(indices=list(range(layers)), fqn="mid_block.attentions.0.transformer_blocks",
                             skip_attention=False, skip_attention_scores=True, skip_ff=False)
    return PerturbedAttentionGuidance(guidance_scale=guidance_scale, perturbed_guidance_scale=3.0,
                                      perturbed_guidance_start=0.0, perturbed_guidance_stop=1.0,
                                      perturbed_guidance_config=config)


@pytest.mark.parametrize("family", ["sd", "sdxl"])
@pytest.mark.parametrize("guidance_scale", [7.5, 1.0])
def test_pag_matches_classic_pipeline(request, family, guidance_scale):
    import diffusers

    preset, ref_name, repo_fixture = FAMILIES[family]
    repo = request.getfixturevalue(repo_fixture)
    pipe = SequentialPipelineBlocks.from_blocks_dict(preset.TEXT2IMAGE_BLOCKS).init_pipeline(repo)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    pipe.update_components(guider=pag_guider(pipe.unet, guidance_scale))
    ref = getattr(diffusers, ref_name).from_pretrained(repo, pag_applied_layers=["mid"])
    ref.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=4, output_type="pt")
    a = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **kwargs)
    b = ref("a cat", guidance_scale=guidance_scale, pag_scale=3.0, generator=torch.Generator().manual_seed(0), **kwargs).images
    assert (a - b).abs().max() <= TOL
    # and the perturbation mattered
    pipe.update_components(guider=pipe.get_component_spec("guider").create(perturbed_guidance_scale=0.0))
    plain = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **kwargs)
    assert (a - plain).abs().max() > 1e-3
