"""The presets by the names people type (``sd15-text2image``): the CLI's ``--preset`` and the node types
``preset:<name>`` read this one table."""

from __future__ import annotations

WORKFLOWS = {"text2image": "TEXT2IMAGE_BLOCKS", "image2image": "IMAGE2IMAGE_BLOCKS", "inpaint": "INPAINT_BLOCKS",
             "auto": "AUTO_BLOCKS", "controlnet": "CONTROLNET_BLOCKS", "ip-adapter": "IP_ADAPTER_BLOCKS"}
FAMILIES = {"sd15": "stable_diffusion", "sdxl": "stable_diffusion_xl", "flux": "flux"}
# families without every workflow (no IP-Adapter preset for FLUX yet)
FAMILY_WORKFLOWS = {"flux": ("text2image", "image2image", "inpaint", "auto", "controlnet")}
PRESETS = {f"{family}-{workflow}": (module, name)
           for family, module in FAMILIES.items() for workflow, name in WORKFLOWS.items()
           if workflow in FAMILY_WORKFLOWS.get(family, WORKFLOWS)}
"""``{name: (module under diffblocks.presets, attribute)}``."""
