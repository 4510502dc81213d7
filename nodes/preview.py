"""Previews of latents while a loop runs: a linear map from latent channels to RGB, no VAE decode.

The map is fitted once per VAE (:func:`rgb_map`): the VAE decodes a few latents drawn as a run starts them, and
a least-squares fit from each latent pixel to the colour of its patch gives weights and a bias, so any VAE, the
embedded model's as much as SD's or FLUX's, previews in its own colours (one small decode per VAE). Without a VAE, 4-channel latents use the widely used fit
for SD 1.x latents and others show the channels' mean in grey. Packed latents (FLUX: ``[batch, tokens,
channels * 4]``, 2x2 patches) are unpacked first when the token grid is square.
"""

from __future__ import annotations

import math
import threading
import weakref

SD_LATENT_RGB = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
                 [-0.2120, -0.2616, -0.7177]]
MAX_SIDE = 128
MIN_SIDE = 64


_fits: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_fit_lock = threading.Lock()


def rgb_map(vae):
    """``(weights [channels, 3], bias [3])`` mapping this VAE's scaled latents to RGB in [-1, 1] (fitted on first
    use, then kept for as long as the VAE lives); None for a VAE under an offload hook (fitting would move it
    to the device in the middle of a run) or one the fit fails on: a preview never costs the run anything."""
    with _fit_lock:
        if vae not in _fits:
            offloaded = any(hasattr(module, "_hf_hook") for module in vae.modules())
            try:
                _fits[vae] = None if offloaded else _fit(vae)
            except Exception:  # a preview is a nicety: fall back to the fixed map
                _fits[vae] = None
        return _fits[vae]


def _fit(vae):
    """Decode a few latents drawn as the denoiser starts them (unit normal, scaled), average the images over
    each latent pixel's patch, and fit RGB to the latent channels by least squares (one sample per pixel)."""
    import torch

    config = vae.config
    factor = 2 ** (len(config.block_out_channels) - 1)
    param = next(vae.parameters())
    scaled = torch.randn(4, config.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    shift = getattr(config, "shift_factor", None) or 0.0
    with torch.no_grad():
        images = vae.decode((scaled / config.scaling_factor + shift).to(device=param.device, dtype=param.dtype)).sample
    pooled = torch.nn.functional.avg_pool2d(images.float().cpu().clamp(-1, 1), factor)
    inputs = torch.cat([scaled.permute(0, 2, 3, 1).reshape(-1, config.latent_channels),
                        torch.ones(scaled.numel() // config.latent_channels, 1)], dim=1)
    solution = torch.linalg.lstsq(inputs, pooled.permute(0, 2, 3, 1).reshape(-1, 3)).solution
    return solution[:-1], solution[-1]


def latents_to_image(latents, vae=None):
    """A small PIL image of the first latent in the batch (at least 64 and at most 128 pixels a side), in the
    colours of ``vae`` when it is given."""
    import torch
    from PIL import Image

    sample = _unpacked(latents[0].detach().float().cpu())
    fitted = rgb_map(vae) if vae is not None and sample.shape[0] == vae.config.latent_channels else None
    if fitted is not None:
        rgb = torch.einsum("chw,cr->rhw", sample, fitted[0]) + fitted[1][:, None, None]
    elif sample.shape[0] == 4:
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
