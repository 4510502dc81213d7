"""The existing AutoencoderKL with FLUX.1's config (16 latent channels, scaling 0.3611, shift 0.1159, no
quant convs) loads a diffusers-saved tiny FLUX VAE and matches it to 1e-6; the blocks' latent scaling is
FluxPipeline's."""

import torch
from tiny_flux import tiny_flux_vae

from diffblocks.blocks.vae import decode_latents, encode_image
from diffblocks.components import AutoencoderKL

TOL = 1e-6


def test_flux_vae_loads_and_matches(tmp_path):
    torch.manual_seed(0)
    reference = tiny_flux_vae()
    reference.save_pretrained(tmp_path)
    vae = AutoencoderKL.from_pretrained(tmp_path)
    assert (vae.config.latent_channels, vae.config.scaling_factor, vae.config.shift_factor) == (16, 0.3611, 0.1159)
    assert vae.quant_conv is None and vae.post_quant_conv is None
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ours_dist, ref_dist = vae.encode(image).latent_dist, reference.encode(image).latent_dist
        assert (ours_dist.mean - ref_dist.mean).abs().max() <= TOL
        assert (ours_dist.std - ref_dist.std).abs().max() <= TOL
        z = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(2))
        assert (vae.decode(z).sample - reference.decode(z).sample).abs().max() <= TOL

        # the scaling FluxPipeline applies: (z - shift) * scale to encode, z / scale + shift to decode
        latents = encode_image(vae, image, torch.Generator().manual_seed(3))
        expected = (ref_dist.sample(torch.Generator().manual_seed(3)) - 0.1159) * 0.3611
        assert (latents - expected).abs().max() <= TOL
        pixels = decode_latents(vae, latents)
        assert (pixels - reference.decode(latents / 0.3611 + 0.1159).sample).abs().max() <= TOL
