"""A1111's variation seed (``--variation-seed``, ``--variation-strength``; its "Variation seed" and "Variation seed
strength"): the starting noise of each image is the seed's noise turned towards the variation seed's by spherical
interpolation, so that a small strength gives a near copy of the seed's image and 1 the variation seed's. The
pipeline is handed the noise as its ``latents``, drawn from the image's own generator as it would have drawn it
(which then goes on to the sampler's noise, as without a variation)."""

from __future__ import annotations

import math

from ..components.errors import FlagError

VARIATION_SEED_HELP = ("A1111's variation seed: each image's starting noise turned towards this seed's by "
                       "--variation-strength (SD 1.x / 2.x, SDXL text-to-image)")
VARIATION_STRENGTH_HELP = ("with --variation-seed: how far the noise turns towards it, in [0, 1] (0: the seed's "
                           "image, 1: the variation seed's; A1111's Variation seed strength)")


def check_variation(args, preset: str) -> tuple[int, float] | None:
    """``(variation seed, strength)``, or None without ``--variation-seed``; ``FlagError`` for a strength out of
    [0, 1], one without the seed, or a workflow that does not start from noise of its own (FLUX.1's latents are
    packed; image-to-image and inpainting start from the image)."""
    seed, strength = getattr(args, "variation_seed", None), getattr(args, "variation_strength", None)
    if seed is None:
        if strength is not None:
            raise FlagError.needs("--variation-strength", "--variation-seed")
        return None
    if strength is None or not (math.isfinite(strength) and 0 <= strength <= 1):
        raise FlagError.bad_value("--variation-strength", "a number in [0, 1] (given with --variation-seed)", strength)
    if not (preset.startswith(("sd15", "sdxl")) and preset.endswith("-text2image")):
        raise FlagError.unsupported("--variation-seed", preset, ["SD 1.x / 2.x and SDXL text2image"])
    return seed, strength


def slerp(strength: float, low, high):
    """A1111's spherical interpolation of noise ``low`` towards ``high`` (each ``(channels, height, width)``), by
    ``strength``: per channel and column, along the height (linear when they are nearly parallel, as A1111 does)."""
    import torch

    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * strength + high * (1 - strength)
    omega = torch.acos(dot)
    sine = torch.sin(omega)
    return ((torch.sin((1.0 - strength) * omega) / sine).unsqueeze(1) * low
            + (torch.sin(strength * omega) / sine).unsqueeze(1) * high)


def variation_latents(pipe, generators: list, inputs: dict, variation: tuple[int, float]):
    """The starting noise of each image (one per generator, each drawn from it as the pipeline would draw it),
    turned towards the variation seed's noise; the pipeline's ``latents``."""
    import torch

    from ..blocks.common import default_size, execution_device, vae_scale_factor
    from ..components.noise import randn_tensor

    seed, strength = variation
    height, width = default_size(pipe, inputs.get("height"), inputs.get("width"))
    factor = vae_scale_factor(pipe)
    shape = (1, pipe.unet.config.in_channels, height // factor, width // factor)
    encoder = pipe.components.get("text_encoder") or pipe.components.get("text_encoder_2")
    dtype = encoder.dtype if encoder is not None else pipe.unet.dtype
    device = execution_device(pipe)
    other = randn_tensor(shape, generator=torch.Generator().manual_seed(seed), device=device, dtype=dtype)[0]
    noises = [randn_tensor(shape, generator=generator, device=device, dtype=dtype)[0] for generator in generators]
    return torch.stack([slerp(strength, noise, other) for noise in noises])
