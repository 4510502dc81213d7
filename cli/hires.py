"""A1111's hires fix for ``run`` and ``batch`` (``--hires``): the text-to-image result enlarged and painted again by
image-to-image, enlarged as an image (lanczos) or as latents (A1111's "Latent" upscalers, ComfyUI's LatentUpscaleBy:
no decode and encode between the passes)."""

from __future__ import annotations

from typing import Any

from ..components.errors import FlagError
from .flags import HIRES_STRENGTH, single

HIRES_HELP = ("hires fix, as in A1111: enlarge the text-to-image result SCALE times (lanczos, or --hires-upscaler) "
              "and paint it again with image-to-image (1.5-2 is usual)")
HIRES_STRENGTH_HELP = ("with --hires: how much the second pass repaints (in (0, 1]; default 0.5, A1111's denoising "
                       "strength)")
HIRES_STEPS_HELP = ("with --hires: the second pass's steps, of which it takes as many as its strength says (20 at 0.5: "
                    "10), as A1111's Hires steps (default: --steps)")
# A1111's hires upscalers that enlarge the latents -> how (image_processor.LATENT_SCALING); ComfyUI's
# LatentUpscaleBy methods are among them ("Latent (area)": ComfyUI's area, named as A1111 would)
LATENT_UPSCALERS = {"Latent": "bilinear", "Latent (antialiased)": "bilinear-antialiased",
                    "Latent (bicubic)": "bicubic", "Latent (bicubic antialiased)": "bicubic-antialiased",
                    "Latent (nearest)": "nearest", "Latent (nearest-exact)": "nearest-exact", "Latent (area)": "area"}
UPSCALERS = ["Lanczos", *LATENT_UPSCALERS]  # A1111's names, as images hold them
HIRES_UPSCALER_HELP = ("with --hires: how the first pass's result is enlarged: lanczos (the image; default) or, as "
                       "A1111's Latent upscalers and ComfyUI's LatentUpscaleBy, its latents: latent (bilinear), "
                       "latent-antialiased, latent-bicubic, latent-bicubic-antialiased, latent-nearest, "
                       "latent-nearest-exact, latent-area (SD 1.x / 2.x, SDXL; a strength of 0.5 or more cleans "
                       "them up, as in A1111)")


def slug(name: str) -> str:
    """The flag's form of an upscaler's name: ``Latent (bicubic antialiased)`` -> ``latent-bicubic-antialiased``."""
    return "-".join(name.lower().replace("(", " ").replace(")", " ").split())


def upscaler_name(value: str | None) -> str | None:
    """A1111's name of the upscaler ``--hires-upscaler`` (or an image's ``Hires upscaler``) gives, in either form;
    None for one not here (a model such as 4x-UltraSharp)."""
    if value is None:
        return None
    return next((name for name in UPSCALERS if slug(name) == slug(value)), None)


def check_upscaler(args, preset: str) -> str:
    """A1111's name of ``--hires-upscaler`` (``Lanczos`` without it); ``FlagError`` for one not known, without
    ``--hires``, or a latent one for FLUX.1 (its latents are packed)."""
    value = getattr(args, "hires_upscaler", None)
    if value is None:
        return "Lanczos"
    if getattr(args, "hires", None) is None:
        raise FlagError.needs("--hires-upscaler", "--hires")
    name = upscaler_name(value)
    if name is None:
        raise FlagError.unknown_choice("hires upscaler", value, [slug(n) for n in UPSCALERS], flag="--hires-upscaler")
    if name in LATENT_UPSCALERS and preset.startswith("flux"):
        raise FlagError.unsupported("--hires-upscaler latent", preset, ["SD 1.x / 2.x", "SDXL"])
    return name


class HiresFix:
    """A1111's hires fix around a text-to-image pipeline, called as it is: its images enlarged ``--hires`` times
    (sides rounded to a multiple of 8; lanczos, or its latents by ``--hires-upscaler``) and painted again by
    image-to-image at ``--hires-strength``, with the first pass's models, inputs and seeds (each generator's own
    seed, drawn anew)."""

    def __init__(self, args, plan, pipe):
        from .run import quiet

        self.first, self.scale = pipe, args.hires
        self.strength = HIRES_STRENGTH if args.hires_strength is None else args.hires_strength
        self.steps = getattr(args, "hires_steps", None)
        self.latent = LATENT_UPSCALERS.get(plan.hires_upscaler)  # how the latents are enlarged; None: the image
        self.second = plan.hires.init_pipeline(plan.model)
        with quiet():
            self.second.update_components(**{name: component for name, component in pipe.components.items()
                                             if name in self.second.component_names and component is not None})
        self.second.set_progress_bar_config(disable=args.no_progress, desc="hires")

    def __call__(self, generator, **inputs) -> list:
        import torch

        from ..blocks.common import vae_scale_factor
        from ..components.image_processor import scale_latents, scaled_size

        if self.latent is None:
            from PIL import Image

            images = self.first(generator=generator, **inputs)
            self.first_size = images[0].size
            size = scaled_size(images[0].size, self.scale)
            enlarged: Any = single([image.resize(size, Image.Resampling.LANCZOS) for image in images])
        else:  # image-to-image takes the enlarged latents as its image: no decode and encode between the passes
            latents = self.first(generator=generator, **{**inputs, "output_type": "latent"})
            factor = vae_scale_factor(self.first)
            self.first_size = (latents.shape[-1] * factor, latents.shape[-2] * factor)
            enlarged = scale_latents(latents, self.scale, self.latent)
            size = (enlarged.shape[-1] * factor, enlarged.shape[-2] * factor)
        seeds = [g.initial_seed() for g in (generator if isinstance(generator, list) else [generator])]
        # the enlarged size is said: FLUX.1's image-to-image would paint at the model's default size otherwise
        rest = {k: v for k, v in inputs.items() if k not in ("height", "width", "latents")}  # the first pass's noise
        if self.steps is not None:
            rest["num_inference_steps"] = self.steps
        return self.second(image=enlarged, width=size[0], height=size[1], strength=self.strength,
                           generator=[torch.Generator().manual_seed(seed) for seed in seeds], **rest)
