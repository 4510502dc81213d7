"""diffusers as the reference, for the benchmarks (diffusers is a test-only dependency: it is imported
only under tests/). Each function returns a ready diffusers object for a local repo."""

from __future__ import annotations

import torch


def unet_class():
    """diffusers' UNet2DConditionModel (to build full-size checkpoints)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel


def model_class(class_name: str):
    """A diffusers model class by name (e.g. ``FluxTransformer2DModel``)."""
    import diffusers

    return getattr(diffusers, class_name)


def classic_pipeline(class_name: str, repo, **kwargs):
    """A classic diffusers pipeline (e.g. ``StableDiffusionXLPipeline``) with its progress bar off."""
    import diffusers

    pipe = getattr(diffusers, class_name).from_pretrained(repo, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def modular_sdxl(repo, guider_kwargs: dict | None = None, layer_skip: dict | None = None):
    """diffusers' own modular SDXL pipeline, optionally with its PerturbedAttentionGuidance."""
    from diffusers import LayerSkipConfig, PerturbedAttentionGuidance
    from diffusers.modular_pipelines.stable_diffusion_xl import StableDiffusionXLAutoBlocks

    pipe = StableDiffusionXLAutoBlocks().init_pipeline(str(repo))  # its loader needs a str
    pipe.load_components(torch_dtype=torch.float32)  # it reports (and skips) the optional parts the repo lacks
    pipe.set_progress_bar_config(disable=True)
    if guider_kwargs is not None:
        config = LayerSkipConfig(**layer_skip) if layer_skip else None
        pipe.update_components(guider=PerturbedAttentionGuidance(**guider_kwargs, perturbed_guidance_config=config))
    return pipe
