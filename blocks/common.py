"""Small pure helpers shared by the Stable Diffusion family blocks (SD 1.x/2.x and SDXL)."""

from __future__ import annotations

import inspect
from typing import Any

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


_PROCESSORS: dict[tuple, Any] = {}


def image_processor_for(components, name: str = "image_processor"):
    """The pipeline's image processor, rebuilt for the loaded VAE's scale factor when they differ
    (cached by class and config, so equal processors share one rebuilt copy)."""
    processor = getattr(components, name)
    factor = vae_scale_factor(components)
    if processor.config.get("vae_scale_factor") == factor:
        return processor
    config = {**processor.config, "vae_scale_factor": factor}
    key = (type(processor), repr(sorted(config.items())))
    if key not in _PROCESSORS:
        _PROCESSORS[key] = type(processor).from_config(config)
    return _PROCESSORS[key]


def default_size(components, height: int | None, width: int | None) -> tuple[int, int]:
    """``unet.sample_size * vae_scale_factor`` for whichever of height and width is None."""
    sample = components.unet.config.sample_size
    sample_h, sample_w = (sample, sample) if isinstance(sample, int) else sample
    factor = vae_scale_factor(components)
    return (sample_h * factor if height is None else height), (sample_w * factor if width is None else width)


def set_scheduler_timesteps(scheduler, num_inference_steps=None, device=None, timesteps=None, sigmas=None):
    """Set the schedule from a step count or custom ``timesteps`` / ``sigmas``; returns (timesteps, n)."""
    if timesteps is not None and sigmas is not None:
        raise ConfigError("give either custom timesteps or custom sigmas, not both")
    params = inspect.signature(scheduler.set_timesteps).parameters
    if timesteps is not None:
        if "timesteps" not in params:
            raise ConfigError(f"{type(scheduler).__name__} does not take custom timesteps")
        scheduler.set_timesteps(timesteps=timesteps, device=device)
    elif sigmas is not None:
        if "sigmas" not in params:
            raise ConfigError(f"{type(scheduler).__name__} does not take custom sigmas")
        scheduler.set_timesteps(sigmas=sigmas, device=device)
    else:
        scheduler.set_timesteps(num_inference_steps, device=device)
    return scheduler.timesteps, len(scheduler.timesteps)


def strength_timesteps(scheduler, num_inference_steps: int, strength: float, denoising_start: float | None = None):
    """The tail of the schedule img2img runs: by ``strength``, or from ``denoising_start`` (base+refiner).

    Returns ``(timesteps, num_inference_steps)`` and sets the scheduler's begin index.
    """
    order = getattr(scheduler, "order", 1)
    if denoising_start is None:
        init = min(int(num_inference_steps * strength), num_inference_steps)
        t_start = max(num_inference_steps - init, 0)
        timesteps = scheduler.timesteps[t_start * order:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * order)
        return timesteps, num_inference_steps - t_start
    cutoff = int(round(scheduler.config.num_train_timesteps - denoising_start * scheduler.config.num_train_timesteps))
    num_steps = int((scheduler.timesteps < cutoff).sum().item())
    if order == 2 and num_steps % 2 == 0:
        num_steps += 1  # a 2nd-order scheduler must start on its first-order half step
    t_start = len(scheduler.timesteps) - num_steps
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start)
    return scheduler.timesteps[t_start:], num_steps


def denoising_end_timesteps(scheduler, timesteps, num_inference_steps: int, denoising_end: float | None):
    """Cut the schedule where the base model of a base+refiner pair stops."""
    if denoising_end is None or not 0 < denoising_end < 1:
        return timesteps, num_inference_steps
    cutoff = int(round(scheduler.config.num_train_timesteps - denoising_end * scheduler.config.num_train_timesteps))
    keep = len([t for t in timesteps if t >= cutoff])
    return timesteps[:keep], keep


def retrieve_latents(encoder_output, generator=None, sample_mode: str = "sample") -> torch.Tensor:
    dist = encoder_output.latent_dist
    return dist.sample(generator) if sample_mode == "sample" else dist.mode()


def encode_image(vae, image: torch.Tensor, generator=None) -> torch.Tensor:
    """Scaled VAE latents of ``image``, drawing from each generator of a list per sample, as diffusers does."""
    if isinstance(generator, list):
        latents = torch.cat([retrieve_latents(vae.encode(image[i:i + 1]), generator[i]) for i in range(image.shape[0])])
    else:
        latents = retrieve_latents(vae.encode(image), generator)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def repeat_to(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat a batch of 1 (or a divisor of ``batch``) up to ``batch`` rows."""
    if tensor.shape[0] == batch:
        return tensor
    if batch % tensor.shape[0]:
        raise ConfigError(f"cannot repeat a batch of {tensor.shape[0]} to {batch}")
    return tensor.repeat(batch // tensor.shape[0], *([1] * (tensor.dim() - 1)))


def step_kwargs(scheduler, generator, eta: float | None) -> dict[str, Any]:
    """``eta`` and ``generator`` for schedulers whose ``step`` takes them."""
    params = inspect.signature(scheduler.step).parameters
    kwargs = {}
    if "eta" in params and eta is not None:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


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
