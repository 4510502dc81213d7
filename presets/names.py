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
