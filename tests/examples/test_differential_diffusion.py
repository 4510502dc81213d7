"""The quickstart's Differential Diffusion pipeline: built from presets, a zero change map keeps the input,
a full map is image-to-image at strength 1."""

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_models import make_image

from diffblocks import SequentialPipelineBlocks
from diffblocks.presets.stable_diffusion_xl import IMAGE2IMAGE_BLOCKS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from differential_diffusion import DIFFDIFF_BLOCKS  # noqa: E402


def run(pipe, change, **kwargs):
    return pipe(prompt="a pear", image=make_image(), diffdiff_map=change, generator=torch.Generator().manual_seed(0),
                num_inference_steps=5, **kwargs)


def test_blocks_are_the_preset_with_three_swaps():
    blocks = SequentialPipelineBlocks.from_blocks_dict(DIFFDIFF_BLOCKS)
    assert list(blocks.sub_blocks) == list(IMAGE2IMAGE_BLOCKS)
    assert "strength" not in blocks.input_names and "diffdiff_map" in blocks.input_names
    assert type(blocks.sub_blocks["denoise"].sub_blocks["before_denoiser"]).__name__ == "SDXLDiffDiffLoopBeforeDenoiser"


def test_zero_map_keeps_the_input_and_full_map_is_img2img(sdxl_repo):
    pipe = SequentialPipelineBlocks.from_blocks_dict(DIFFDIFF_BLOCKS).init_pipeline(sdxl_repo)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    half = torch.zeros(32, 32, dtype=torch.uint8)
    half[:, 16:] = 255  # left half kept, right half repainted
    state = run(pipe, Image.fromarray(half.numpy()), output_type="latent")
    latents, clean = state.get("latents"), state.get("image_latents")
    kept = (latents - clean)[..., :6].abs().max()
    changed = (latents - clean)[..., 10:].abs().max()
    # the kept half only sees the last step's small noise level; the repainted half is far from the input
    assert kept < 0.3 and changed > 5.0, (kept, changed)

    img2img = SequentialPipelineBlocks.from_blocks_dict(IMAGE2IMAGE_BLOCKS).init_pipeline(sdxl_repo)
    img2img.load_components()
    img2img.set_progress_bar_config(disable=True)
    full = run(pipe, Image.new("L", (32, 32), 255), output_type="pt", output="images")
    plain = img2img(prompt="a pear", image=make_image(), strength=1.0, generator=torch.Generator().manual_seed(0),
                    num_inference_steps=5, output_type="pt", output="images")
    assert (full - plain).abs().max() <= 1e-5


@pytest.mark.slow  # SDXL runs with ControlNet / IP-Adapter: 10-30 s each on a CPU
def test_auto_pipeline_runs_controlnet_only_when_control_image_is_given(sdxl_repo, tmp_path):
    import diffusers

    from diffblocks import ComponentSpec
    from diffblocks.components.models import ControlNetModel
    from differential_diffusion import DIFFDIFF_AUTO_BLOCKS, SDXLDiffDiffControlNetDenoiseStep, SDXLDiffDiffDenoiseStep

    blocks = SequentialPipelineBlocks.from_blocks_dict(DIFFDIFF_AUTO_BLOCKS)
    assert {"control_image", "diffdiff_map", "ip_adapter_image"} <= set(blocks.input_names)
    assert {"controlnet", "image_encoder", "feature_extractor"} <= set(blocks.component_names)
    assert "ip_adapter_image" in repr(blocks) and "image_encoder" in repr(blocks)
    assert isinstance(blocks.get_execution_blocks("control_image").sub_blocks["denoise"], SDXLDiffDiffControlNetDenoiseStep)
    assert isinstance(blocks.get_execution_blocks().sub_blocks["denoise"], SDXLDiffDiffDenoiseStep)
    assert "controlnet_input" not in blocks.get_execution_blocks().sub_blocks

    unet = diffusers.UNet2DConditionModel.from_pretrained(sdxl_repo, subfolder="unet")
    torch.manual_seed(0)
    net = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    net.save_pretrained(tmp_path / "cn")
    pipe = blocks.init_pipeline(sdxl_repo)
    pipe.load_components()
    pipe.update_components(controlnet=ComponentSpec("controlnet", ControlNetModel, repo=str(tmp_path / "cn")).load())
    pipe.set_progress_bar_config(disable=True)
    plain_blocks = SequentialPipelineBlocks.from_blocks_dict(DIFFDIFF_BLOCKS).init_pipeline(sdxl_repo)
    plain_blocks.load_components()
    plain_blocks.set_progress_bar_config(disable=True)
    ramp = Image.linear_gradient("L").resize((32, 32))
    without = run(pipe, ramp, output_type="pt", output="images")
    assert torch.equal(without, run(plain_blocks, ramp, output_type="pt", output="images"))
    controlled = run(pipe, ramp, control_image=make_image(5), controlnet_conditioning_scale=0.8, output_type="pt",
                     output="images")
    assert (controlled - without).abs().max() > 1e-3


@pytest.mark.slow  # SDXL runs with ControlNet / IP-Adapter: 10-30 s each on a CPU
def test_auto_pipeline_adds_the_ip_adapter_when_its_image_is_given(sdxl_repo, tmp_path):
    from tiny_ip_adapter import make_ip_adapter_repo

    from differential_diffusion import DIFFDIFF_AUTO_BLOCKS

    adapter = make_ip_adapter_repo(tmp_path / "ip", sdxl_repo)
    pipe = SequentialPipelineBlocks.from_blocks_dict(DIFFDIFF_AUTO_BLOCKS).init_pipeline(sdxl_repo)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    ramp = Image.linear_gradient("L").resize((32, 32))
    without = run(pipe, ramp, output_type="pt", output="images")
    pipe.loader.load_ip_adapter(str(adapter), subfolder="", weight_name="ip-adapter.bin")
    pipe.loader.set_ip_adapter_scale(0.6)
    with_adapter = run(pipe, ramp, ip_adapter_image=make_image(3), output_type="pt", output="images")
    assert (with_adapter - without).abs().max() > 1e-3
    pipe.loader.set_ip_adapter_scale(0.0)
    torch.testing.assert_close(run(pipe, ramp, ip_adapter_image=make_image(3), output_type="pt", output="images"),
                               without, atol=1e-5, rtol=0)
