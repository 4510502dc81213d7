"""VAE encode and decode with the Stable Diffusion family's latent scaling, and the float32 upcast.

Latents are scaled as the VAE's config says: ``(z - latents_mean) * scaling_factor / latents_std`` when the
config has ``latents_mean`` and ``latents_std``, else ``(z - shift_factor) * scaling_factor``; decoding undoes it.

**The dtype rule.** With ``upcast=True`` (SDXL, whose fp16 VAE overflows) a VAE whose config sets
``force_upcast`` runs the call in float32 and is then restored to the dtype it had before the call, in
encode and decode alike. Encode upcasts any VAE that is not float32 and returns latents in the image's
dtype; decode upcasts a float16 VAE only (bfloat16 has float32's range) and returns float32 pixels, as
diffusers' SDXL pipelines do.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def float32_vae(vae, needed: bool) -> Iterator[None]:
    """Run ``vae`` in float32 inside the block when ``needed``; afterwards it has the dtype it had before."""
    before = vae.dtype
    if not needed or before == torch.float32:
        yield
        return
    vae.to(torch.float32)
    try:
        yield
    finally:
        vae.to(before)


def retrieve_latents(encoder_output, generator=None, sample_mode: str = "sample") -> torch.Tensor:
    """A draw from (``"sample"``) or the mode of (``"argmax"``) the encoder's latent distribution."""
    dist = encoder_output.latent_dist
    return dist.sample(generator) if sample_mode == "sample" else dist.mode()


def _stats(config, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is None or std is None:
        return None
    return torch.tensor(mean).view(1, -1, 1, 1).to(like), torch.tensor(std).view(1, -1, 1, 1).to(like)


def encode_image(vae, image: torch.Tensor, generator=None, upcast: bool = False,
                 sample_mode: str = "sample") -> torch.Tensor:
    """Scaled VAE latents of ``image``, drawing from each generator of a list per sample, as diffusers does.

    Args:
        upcast: encode in float32 when the VAE's config sets ``force_upcast`` (see the module's dtype rule).
        sample_mode: ``"sample"`` draws from the latent distribution, ``"argmax"`` takes its mode (no draw).
    """
    dtype = image.dtype
    upcast = upcast and bool(getattr(vae.config, "force_upcast", False))
    with float32_vae(vae, upcast):
        pixels = image.float() if upcast else image
        if isinstance(generator, list):
            latents = torch.cat([retrieve_latents(vae.encode(pixels[i:i + 1]), generator[i], sample_mode)
                                 for i in range(pixels.shape[0])])
        else:
            latents = retrieve_latents(vae.encode(pixels), generator, sample_mode)
    latents = latents.to(dtype)
    config = vae.config
    stats = _stats(config, latents)
    if stats is not None:
        return (latents - stats[0]) * config.scaling_factor / stats[1]
    return (latents - (getattr(config, "shift_factor", None) or 0.0)) * config.scaling_factor


def decode_latents(vae, latents: torch.Tensor, generator=None, upcast: bool = False) -> torch.Tensor:
    """VAE pixels in [-1, 1] for scaled latents (undoing ``latents_mean`` / ``shift_factor`` when set).

    Args:
        upcast: decode in float32 when the VAE is float16 and its config sets ``force_upcast`` (see the
            module's dtype rule).
    """
    upcast = upcast and vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    with float32_vae(vae, upcast):
        latents = latents.float() if upcast else latents
        config = vae.config
        stats = _stats(config, latents)
        if stats is not None:
            latents = latents * stats[1] / config.scaling_factor + stats[0]
        else:
            latents = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
        kwargs = {"generator": generator} if "generator" in inspect.signature(vae.decode).parameters else {}
        return vae.decode(latents, return_dict=False, **kwargs)[0]
