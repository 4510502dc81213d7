"""Previews of latents while a loop runs: a linear map from latent channels to RGB, no VAE decode.

For 4-channel latents (the Stable Diffusion VAEs) the map is the widely used least-squares fit of SD 1.x latents
to their decoded colours; other channel counts are shown as the channels' mean, in grey. Packed latents (FLUX:
``[batch, tokens, channels * 4]``, 2x2 patches) are unpacked first when the token grid is square.
"""

from __future__ import annotations

import math

SD_LATENT_RGB = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
                 [-0.2120, -0.2616, -0.7177]]
MAX_SIDE = 128
MIN_SIDE = 64


def latents_to_image(latents):
    """A small PIL image of the first latent in the batch (at least 64 and at most 128 pixels a side)."""
    import torch
    from PIL import Image

    sample = _unpacked(latents[0].detach().float().cpu())
    if sample.shape[0] == 4:
        rgb = torch.einsum("chw,cr->rhw", sample, torch.tensor(SD_LATENT_RGB))
    else:
        rgb = sample.mean(dim=0, keepdim=True).expand(3, -1, -1)
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels, "RGB")
    side = max(image.size)
    scale = MIN_SIDE / side if side < MIN_SIDE else min(1.0, MAX_SIDE / side)
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)
    return image


def _unpacked(sample):
    """``[tokens, channels * 4]`` of 2x2 patches on a square grid as ``[channels, height, width]``."""
    if sample.ndim != 2:
        return sample
    tokens, packed = sample.shape
    side = math.isqrt(tokens)
    if side * side != tokens or packed % 4:
        return sample.T.reshape(packed, 1, tokens)  # a strip: still shows the change from step to step
    channels = packed // 4
    grid = sample.reshape(side, side, channels, 2, 2).permute(2, 0, 3, 1, 4)
    return grid.reshape(channels, side * 2, side * 2)
