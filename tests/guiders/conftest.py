"""A tiny diffusers UNet with the SD/SDXL module layout, to test guider perturbations against."""

import pytest
import torch


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        transformer_layers_per_block=2,
        cross_attention_dim=8,
        attention_head_dim=2,
        norm_num_groups=4,
    ).eval()


@pytest.fixture(scope="session")
def unet():
    return _tiny_unet()


def latent_inputs(height: int, width: int, seed: int) -> dict:
    """One sample for the tiny UNet: latents (1, 4, height, width), a timestep, prompt and negative embeds."""
    g = torch.Generator().manual_seed(seed)
    return {
        "latents": torch.randn(1, 4, height, width, generator=g),
        "timestep": torch.tensor(10),
        "cond": torch.randn(1, 5, 8, generator=g),
        "uncond": torch.randn(1, 5, 8, generator=g),
    }


@pytest.fixture(scope="session")
def make_latent_inputs():
    return latent_inputs


@pytest.fixture(scope="session")
def unet_inputs():
    """Latents of 8x8: a 4x4 token grid in the mid block."""
    return latent_inputs(8, 8, seed=1)
