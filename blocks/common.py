"""Small pure helpers shared by the Stable Diffusion family blocks (SD 1.x/2.x and SDXL): they read the
components and compute; none changes a component or keeps state between calls.

Where the rest lives: fitting image processors to the VAE in :mod:`.processors`, driving the scheduler in
:mod:`.scheduling`, VAE encode / decode in :mod:`.vae`.
"""

from __future__ import annotations

import torch

from ..components.errors import ConfigError


def execution_device(components) -> torch.device:
    """Where the denoiser runs: the UNet's device when it is loaded, else the pipeline's."""
    unet = getattr(components, "unet", None)
    if unet is None:
        return components.device
    # an offload hook names it: on the model itself (model offload) or on its submodules (sequential offload,
    # whose weights wait on the meta device)
    for module in unet.modules():
        device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
        if device is not None:
            return torch.device(device)
    return next(unet.parameters()).device


def vae_scale_factor(components) -> int:
    """``2 ** (len(vae.block_out_channels) - 1)`` (8 for every released SD VAE; 8 when no VAE is loaded)."""
    vae = getattr(components, "vae", None)
    if vae is None:
        return 8
    return 2 ** (len(vae.config.block_out_channels) - 1)


def default_size(components, height: int | None, width: int | None) -> tuple[int, int]:
    """``unet.sample_size * vae_scale_factor`` for whichever of height and width is None."""
    sample = components.unet.config.sample_size
    sample_h, sample_w = (sample, sample) if isinstance(sample, int) else sample
    factor = vae_scale_factor(components)
    return (sample_h * factor if height is None else height), (sample_w * factor if width is None else width)


def repeat_to(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat a batch of 1 (or a divisor of ``batch``) up to ``batch`` rows."""
    if tensor.shape[0] == batch:
        return tensor
    if batch % tensor.shape[0]:
        raise ConfigError.batch_repeat(tensor.shape[0], batch)
    return tensor.repeat(batch // tensor.shape[0], *([1] * (tensor.dim() - 1)))


def guidance_scale_embedding(scale: torch.Tensor, dim: int = 512, dtype=torch.float32) -> torch.Tensor:
    """Sinusoidal embedding of ``w`` (LCM's guidance-scale conditioning; Luo et al., 2023, eq. 2 refs)."""
    w = scale * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=dtype) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    emb = w.to(dtype)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb
