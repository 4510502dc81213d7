"""Previews: small images of latents, no VAE decode."""

import torch

from diffblocks.nodes.preview import latents_to_image


def test_previews_unpack_packed_latents_to_their_square_grid():
    packed = torch.randn(1, 16, 64)  # FLUX: a 4x4 grid of 2x2 patches of 16 channels
    assert latents_to_image(packed).size == latents_to_image(torch.randn(1, 16, 8, 8)).size == (64, 64)
    assert latents_to_image(torch.randn(1, 4, 8, 8)).mode == "RGB"
