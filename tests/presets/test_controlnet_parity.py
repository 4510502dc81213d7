"""ControlNet blocks inserted into the SD / SDXL presets against diffusers' classic ControlNet pipelines
(text2image and img2img) on the same tiny weights. Tolerance: max abs diff <= 1e-4 (pt output)."""

import pytest
import torch
from tiny_models import make_image

from diffblocks import ComponentSpec, SequentialPipelineBlocks
from diffblocks.components.models.controlnet import ControlNetModel, MultiControlNetModel
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

TOL = 1e-4
FAMILY = {
    "sd": (stable_diffusion, "sd_repo", "StableDiffusion{}ControlNet{}Pipeline", "StableDiffusion"),
    "sdxl": (stable_diffusion_xl, "sdxl_repo", "StableDiffusionXL{}ControlNet{}Pipeline", "StableDiffusionXL"),
}


@pytest.fixture(scope="module")
def controlnets(request, tmp_path_factory):
    """Two tiny ControlNets per family, made from that family's UNet and saved to disk."""
    import diffusers

    paths = {}
    for family, (_, repo_fixture, _, _) in FAMILY.items():
        unet = diffusers.UNet2DConditionModel.from_pretrained(request.getfixturevalue(repo_fixture), subfolder="unet")
        for k in range(2):
            torch.manual_seed(10 + k)
            net = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
            for p in net.parameters():  # from_unet zero-initialises the output convs: make them matter
                p.data += 0.05 * torch.randn_like(p)
            path = tmp_path_factory.mktemp(f"cn-{family}-{k}")
            net.save_pretrained(path)
            paths[family, k] = path
    return paths


def controlnet_blocks(preset, prefix, img2img: bool):
    from diffblocks.blocks import stable_diffusion as sd_blocks
    from diffblocks.blocks import stable_diffusion_xl as sdxl_blocks

    module = sdxl_blocks if prefix.endswith("XL") else sd_blocks
    blocks = (preset.IMAGE2IMAGE_BLOCKS if img2img else preset.TEXT2IMAGE_BLOCKS).copy()
    blocks.insert("controlnet_input", getattr(module, f"{prefix}ControlNetInputStep"), list(blocks).index("denoise"))
    blocks["denoise"] = getattr(module, f"{prefix}ControlNetDenoiseStep")
    return SequentialPipelineBlocks.from_blocks_dict(blocks)




@pytest.mark.parametrize("family", ["sd", "sdxl"])
@pytest.mark.parametrize("img2img", [False, True])
@pytest.mark.parametrize("guess_mode, multi", [(False, False), (True, False), (False, True)])
def test_controlnet_matches_classic(request, controlnets, family, img2img, guess_mode, multi):
    import diffusers

    preset, repo_fixture, ref_name, prefix = FAMILY[family]
    repo = request.getfixturevalue(repo_fixture)
    nets = [ComponentSpec("controlnet", ControlNetModel, repo=str(controlnets[family, k])).load() for k in range(2 if multi else 1)]
    pipe = controlnet_blocks(preset, prefix, img2img).init_pipeline(repo)
    pipe.load_components()
    pipe.update_components(controlnet=MultiControlNetModel(nets) if multi else nets[0])
    pipe.set_progress_bar_config(disable=True)
    ref_nets = [diffusers.ControlNetModel.from_pretrained(controlnets[family, k]) for k in range(2 if multi else 1)]
    ref_cls = getattr(diffusers, ref_name.format("", "Img2Img") if img2img else ref_name.format("", ""))
    ref = ref_cls.from_pretrained(repo, controlnet=ref_nets if multi else ref_nets[0])
    ref.set_progress_bar_config(disable=True)

    control = [make_image(7), make_image(8)] if multi else make_image(7)
    scale = [0.7, 0.4] if multi else 0.7
    kwargs = dict(num_inference_steps=4, output_type="pt", controlnet_conditioning_scale=scale, guess_mode=guess_mode,
                  control_guidance_start=0.0, control_guidance_end=0.75)
    if img2img:
        kwargs.update(image=make_image(), strength=0.75)
    a = pipe(prompt="a cat", control_image=control, generator=torch.Generator().manual_seed(0), output="images", **kwargs)
    ref_image_key = "control_image" if img2img else "image"
    ref_kwargs = {k: v for k, v in kwargs.items()}
    b = ref("a cat", **{ref_image_key: control}, guidance_scale=7.5, generator=torch.Generator().manual_seed(0),
            **ref_kwargs).images
    assert (a - b).abs().max() <= TOL

    without = pipe(prompt="a cat", control_image=control, generator=torch.Generator().manual_seed(0), output="images",
                   **{**kwargs, "controlnet_conditioning_scale": [0.0, 0.0] if multi else 0.0})
    assert (a - without).abs().max() > 1e-3  # the ControlNet mattered


def sd_controlnet_pipe(request, controlnets):
    pipe = controlnet_blocks(stable_diffusion, "StableDiffusion", False).init_pipeline(request.getfixturevalue("sd_repo"))
    pipe.load_components()
    pipe.update_components(controlnet=ComponentSpec("controlnet", ControlNetModel, repo=str(controlnets["sd", 0])).load())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_control_image_of_another_size_is_resized_like_diffusers(request, controlnets):
    pipe = sd_controlnet_pipe(request, controlnets)
    state = pipe(prompt="a cat", control_image=make_image(7, size=48), num_inference_steps=2, output_type="pt",
                 generator=torch.Generator().manual_seed(0))
    assert state.get("controlnet_cond").shape[-2:] == state.get("images").shape[-2:] == (32, 32)


def test_controlnet_with_pag_matches_the_classic_controlnet_pag_pipeline(request, controlnets):
    import diffusers

    from diffblocks.guiders import LayerSkipConfig, PerturbedAttentionGuidance

    pipe = sd_controlnet_pipe(request, controlnets)
    config = LayerSkipConfig(indices=[0], fqn="mid_block.attentions.0.transformer_blocks", skip_attention=False,
                             skip_attention_scores=True, skip_ff=False)
    pipe.update_components(guider=PerturbedAttentionGuidance(guidance_scale=7.5, perturbed_guidance_scale=3.0,
                                                             perturbed_guidance_start=0.0, perturbed_guidance_stop=1.0,
                                                             perturbed_guidance_config=config))
    ref = diffusers.StableDiffusionControlNetPAGPipeline.from_pretrained(
        request.getfixturevalue("sd_repo"), controlnet=diffusers.ControlNetModel.from_pretrained(controlnets["sd", 0]),
        pag_applied_layers=["mid"])
    ref.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=4, output_type="pt", controlnet_conditioning_scale=0.7)
    a = pipe(prompt="a cat", control_image=make_image(7), generator=torch.Generator().manual_seed(0), output="images", **kwargs)
    b = ref("a cat", image=make_image(7), guidance_scale=7.5, pag_scale=3.0, generator=torch.Generator().manual_seed(0),
            **kwargs).images
    assert (a - b).abs().max() <= TOL
