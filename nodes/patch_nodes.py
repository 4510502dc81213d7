"""Nodes that set a bundle's model to run another way, on a weight-sharing copy of its module tree (as ``LoadLoRA``
does): no memory for the weights, and the shared model in the ComponentsManager, and every workflow reading it,
stay as they were.

- ``FreeU``: the UNet draws with FreeU (ComfyUI's ``FreeU`` and ``FreeU_V2`` nodes). It follows the LoRAs and
  adapters before it; a second FreeU node replaces the first's.
- ``TiledVAE``: the VAE encodes and decodes large images in overlapping tiles (ComfyUI's ``VAEDecodeTiled``, A1111's
  Tiled VAE): bounded memory.
"""

from __future__ import annotations

import math
from typing import Any

from .adapter_nodes import weight_sharing_copy
from .bundle import ComponentsBundle
from .node_type import NodeInput, NodeOutput, NodeType, RunContext

# ComfyUI's defaults (FreeU_V2's: 1.3, 1.4, 0.9, 0.2; the paper's SD 1.x values: 1.5, 1.6, 0.9, 0.2)
FACTORS = {"b1": (1.1, "backbone factor of the deepest decoder stage (above 1 amplifies it)"),
           "b2": (1.2, "backbone factor of the second stage"),
           "s1": (0.9, "skip factor of the deepest stage: its low frequencies scaled (below 1 damps them)"),
           "s2": (0.2, "skip factor of the second stage")}


class FreeUNode(NodeType):
    name = "FreeU"
    category = "models"
    description = ("FreeU for the bundle's UNet (SD 1.x, 2.x, SDXL): its two deepest decoder stages amplify the "
                   "backbone's features and damp the low frequencies of the skip connections; no weights. Version 2 "
                   "is ComfyUI's FreeU_V2. Outputs the bundle with the UNet set so.")

    def __init__(self):
        self.inputs = {
            "components": NodeInput({"description": "the bundle whose UNet draws with FreeU"}, required=True,
                                    socket="components"),
            **{name: NodeInput({"type": "number", "default": default, "description": description})
               for name, (default, description) in FACTORS.items()},
            "version": NodeInput({"type": "integer", "enum": [1, 2], "default": 1,
                                  "description": "1: the paper's (diffusers'); 2: ComfyUI's FreeU_V2, the backbone "
                                                 "factor weighed by the features' own strength"}),
        }
        self.outputs = {"components": NodeOutput("components"), "unet": NodeOutput("UNet2DConditionModel")}

    def check_value(self, name: str, value: Any) -> str | None:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name in FACTORS and not (is_number and math.isfinite(value)):
            return f"must be a finite number, got {value!r}"
        if name == "version" and (isinstance(value, bool) or value not in (1, 2)):
            return f"must be 1 or 2, got {value!r}"
        return None

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        factors = {name: float(values.get(name, default)) for name, (default, _) in FACTORS.items()}
        version = int(values.get("version", 1))
        where = ",".join(f"{name}={value!r}" for name, value in factors.items())
        bundle, unet = patched(values["components"], "unet", "enable_freeu", f"freeu{version}:{where}",
                               "FreeU needs a bundle with an SD or SDXL UNet (UNet2DConditionModel)")
        unet.enable_freeu(**factors, version=version)
        return {"components": bundle, "unet": unet}


class TiledVAENode(NodeType):
    name = "TiledVAE"
    category = "models"
    description = ("The bundle's VAE encoding and decoding images larger than its own size (512 px for SD 1.x's, 1024 "
                   "for SDXL's and FLUX.1's) in overlapping tiles blended at the seams: memory bounded by the tile, "
                   "for large images and hires passes; the seams differ slightly from a whole decode. diffusers' "
                   "enable_tiling; ComfyUI's VAEDecodeTiled. Outputs the bundle with the VAE set so.")

    def __init__(self):
        self.inputs = {"components": NodeInput({"description": "the bundle whose VAE works in tiles"}, required=True,
                                               socket="components")}
        self.outputs = {"components": NodeOutput("components"), "vae": NodeOutput("AutoencoderKL")}

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        bundle, vae = patched(values["components"], "vae", "enable_tiling", "tiled",
                              "TiledVAE needs a bundle with a VAE (AutoencoderKL)")
        vae.enable_tiling()
        return {"components": bundle, "vae": vae}


def patched(bundle: ComponentsBundle, name: str, method: str, tag: str, needs: str) -> tuple[ComponentsBundle, Any]:
    """``(bundle with a weight-sharing copy of its model name, that copy)``, the copy's load id marked with ``tag``
    (so that the outputs computed with it are cached apart); ``needs`` says what is missing when the bundle has no
    such model (one with ``method``)."""
    from ..components.spec import LOAD_ID_ATTR, load_id_of

    model = bundle.components.get(name)
    if model is None or not hasattr(model, method):
        held = ", ".join(sorted(n for n, c in bundle.components.items() if c is not None))
        raise ValueError(f"{needs}; it holds {held}")
    twin = weight_sharing_copy(model)
    object.__setattr__(twin, LOAD_ID_ATTR, f"{load_id_of(model) or 'memory'}+{tag}")
    return ComponentsBundle({**bundle.components, name: twin}, bundle.config, bundle.source), twin
