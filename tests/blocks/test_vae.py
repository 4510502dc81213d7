"""VAE encode / decode (blocks/vae.py): the latent scaling, and one dtype rule for the float32 upcast: the VAE
runs the call in float32 and is restored to the dtype it had before, in encode and decode alike."""

import pytest
import torch

from diffblocks.blocks.vae import decode_latents, encode_image
from diffblocks.components.models import AutoencoderKL


def tiny_vae(**config):
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4, sample_size=16,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         **config).eval()


def rounded_to(vae, dtype):
    """The float32 VAE with weights rounded through ``dtype``: what an upcast ``dtype`` VAE computes with."""
    with torch.no_grad():
        for param in vae.parameters():
            param.copy_(param.to(dtype).float())
    return vae


IMAGE = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_encode_upcasts_then_restores_the_vae_s_own_dtype(dtype):
    reference = rounded_to(tiny_vae(force_upcast=True), dtype)
    expected = encode_image(reference, IMAGE, torch.Generator().manual_seed(0))
    vae = tiny_vae(force_upcast=True).to(dtype)
    latents = encode_image(vae, IMAGE, torch.Generator().manual_seed(0), upcast=True)
    assert vae.dtype == dtype  # restored to what it was, whatever the image's dtype
    assert latents.dtype == IMAGE.dtype and torch.equal(latents, expected)


def test_decode_upcasts_a_float16_vae_then_restores_it():
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    expected = decode_latents(rounded_to(tiny_vae(force_upcast=True), torch.float16), latents)
    vae = tiny_vae(force_upcast=True).half()
    pixels = decode_latents(vae, latents.half(), upcast=True)
    assert vae.dtype == torch.float16 and pixels.dtype == torch.float32
    torch.testing.assert_close(pixels, expected, atol=1e-3, rtol=0)  # only the fp16 rounding of the latents


@pytest.mark.parametrize("config", [{"force_upcast": False}, {"force_upcast": True}])
def test_without_upcast_or_force_upcast_the_vae_keeps_its_dtype(config):
    vae = tiny_vae(**config).to(torch.bfloat16)
    calls = []
    vae.to = lambda *args, **kwargs: calls.append(args)  # any move would show here
    if not config["force_upcast"]:
        encode_image(vae, IMAGE.to(torch.bfloat16), torch.Generator().manual_seed(0), upcast=True)
    decode_latents(vae, torch.zeros(1, 4, 8, 8, dtype=torch.bfloat16), upcast=True)  # bfloat16: no upcast
    assert calls == []


def test_latents_are_scaled_by_mean_and_std_when_the_config_has_them():
    plain = tiny_vae(scaling_factor=0.5)
    stats = tiny_vae(scaling_factor=0.5, latents_mean=[0.1, 0.2, 0.3, 0.4], latents_std=[2.0, 2.0, 4.0, 4.0])
    raw = encode_image(plain, IMAGE, torch.Generator().manual_seed(0)) / 0.5
    scaled = encode_image(stats, IMAGE, torch.Generator().manual_seed(0))
    mean = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, -1, 1, 1)
    std = torch.tensor([2.0, 2.0, 4.0, 4.0]).view(1, -1, 1, 1)
    torch.testing.assert_close(scaled, (raw - mean) * 0.5 / std)
    torch.testing.assert_close(decode_latents(stats, scaled), decode_latents(plain, raw * 0.5))
