"""The presets by the names people type (``sd15-text2image``): the CLI's ``--preset`` and the node types
``preset:<name>`` read this one table."""

from __future__ import annotations

WORKFLOWS = {"text2image": "TEXT2IMAGE_BLOCKS", "image2image": "IMAGE2IMAGE_BLOCKS", "inpaint": "INPAINT_BLOCKS",
             "auto": "AUTO_BLOCKS", "controlnet": "CONTROLNET_BLOCKS", "ip-adapter": "IP_ADAPTER_BLOCKS",
             "fill": "FILL_BLOCKS", "control": "CONTROL_BLOCKS", "kontext": "KONTEXT_BLOCKS",
             "redux": "REDUX_BLOCKS"}
FAMILIES = {"sd15": "stable_diffusion", "sdxl": "stable_diffusion_xl", "flux": "flux"}
# each family's workflows (Fill, Canny / Depth ("control"), Kontext and Redux are FLUX's)
_SD = ("text2image", "image2image", "inpaint", "auto", "controlnet", "ip-adapter")
FAMILY_WORKFLOWS = {"sd15": _SD, "sdxl": _SD,
                    "flux": ("text2image", "image2image", "inpaint", "auto", "controlnet", "ip-adapter", "fill", "control",
                             "kontext", "redux")}
PRESETS = {f"{family}-{workflow}": (module, WORKFLOWS[workflow])
           for family, module in FAMILIES.items() for workflow in FAMILY_WORKFLOWS[family]}
"""``{name: (module under diffblocks.presets, attribute)}``."""


def with_a1111_prompts(name: str, blocks):
    """A copy of preset ``name``'s ``blocks`` whose SD or SDXL prompts are read in A1111's syntax ((word:1.2)
    weights, BREAK, any length): the weighted text encoder in place of the plain one, as ``diffblocks run`` and the
    ``preset:`` node types read prompts (a prompt without that syntax encodes bitwise as the plain one). FLUX.1's
    presets are left as they are."""
    import importlib

    family = name.split("-", 1)[0]
    blocks = blocks.copy()
    if family == "flux" or "text_encoder" not in blocks:
        return blocks
    steps = importlib.import_module(f"diffblocks.blocks.{FAMILIES[family]}")
    blocks["text_encoder"] = getattr(steps, f"{'StableDiffusionXL' if family == 'sdxl' else 'StableDiffusion'}"
                                            "WeightedTextEncoderStep")
    return blocks
