"""``ScaleLatents``: a hires fix without a decode and an encode between its passes (A1111's Latent hires upscalers,
ComfyUI's LatentUpscaleBy): a preset's ``images`` with ``output_type`` ``latent`` enlarged, for an image-to-image
preset to take as its ``image``."""

from __future__ import annotations

from typing import Any

from ..components.latent_scaling import LATENT_SCALING
from .node_type import NodeInput, NodeOutput, NodeType, RunContext

MAX_SCALE = 8.0


class ScaleLatents(NodeType):
    name = "ScaleLatents"
    category = "latents"
    description = ("Enlarge latents (a preset's images with output_type 'latent') scale_by times, each side rounded to "
                   "a whole latent pixel, for an image-to-image preset to paint again as its image: a hires fix "
                   "without decoding between the passes (A1111's Latent upscalers, ComfyUI's LatentUpscaleBy).")

    def __init__(self):
        self.inputs = {
            # a preset's "images" socket carries them (its output_type 'latent'), as any tensor
            "latents": NodeInput({"description": "the latents: (batch, channels, height, width)"}, required=True,
                                 socket="image"),
            "scale_by": NodeInput({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SCALE, "default": 1.5,
                                   "description": "factor for both sides"}),
            "method": NodeInput({"type": "string", "enum": list(LATENT_SCALING), "default": "bilinear",
                                 "description": "interpolation (bilinear: A1111's Latent; nearest-exact: ComfyUI's "
                                                "default)"}),
        }
        self.outputs = {"latents": NodeOutput("tensor")}

    def check_value(self, name: str, value: Any) -> str | None:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name == "scale_by" and not (number and 0 < value <= MAX_SCALE):
            return f"must be a number in (0, {MAX_SCALE:g}], got {value!r}"
        if name == "method" and value not in LATENT_SCALING:
            return f"must be one of {', '.join(LATENT_SCALING)}, got {value!r}"
        return None

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        import torch

        from ..components.errors import InputTypeError
        from ..components.image_processor import scale_latents

        latents = values["latents"]
        if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
            raise InputTypeError.wrong_type("latents", None, self.name, "a (batch, channels, height, width) tensor "
                                            "(set output_type 'latent' on the preset that makes it)", latents)
        return {"latents": scale_latents(latents, float(values.get("scale_by", 1.5)),
                                         values.get("method", "bilinear"))}
