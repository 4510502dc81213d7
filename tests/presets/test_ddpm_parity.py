"""The DDPM preset against diffusers' DDPMPipeline on the same tiny weights (max abs diff <= 1e-4)."""

import torch

from diffblocks import ModularPipeline, SequentialPipelineBlocks
from diffblocks.presets.ddpm import UNCONDITIONAL_BLOCKS


def make_ddpm_repo(path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
                       norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(path)
    return path


def test_unconditional_preset_matches_ddpm_pipeline(tmp_path):
    from diffusers import DDPMPipeline

    repo = make_ddpm_repo(tmp_path / "ddpm")
    ours = SequentialPipelineBlocks.from_blocks_dict(UNCONDITIONAL_BLOCKS).init_pipeline(repo)
    ours.load_components()
    ours.set_progress_bar_config(disable=True)
    ref = DDPMPipeline.from_pretrained(repo)
    ref.set_progress_bar_config(disable=True)
    a = ours(batch_size=2, num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="pt", output="images")
    b = ref(batch_size=2, num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert (a - b).abs().max() <= 1e-4
    # a standard DDPM repo picks this preset by its _class_name
    pipe = ModularPipeline.from_pretrained(repo)
    assert list(pipe.blocks.sub_blocks) == list(UNCONDITIONAL_BLOCKS)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    images = pipe(num_inference_steps=2, generator=torch.Generator().manual_seed(0), output="images")
    assert images[0].size == (16, 16)
