"""The CLI's preset names (``sd15-text2image``, ...), and the blocks a preset and the flags compose."""

from __future__ import annotations

import importlib
from collections.abc import Collection

from ..components.errors import FlagError
from ..presets.names import FAMILIES, PRESETS, with_a1111_prompts
from .flags import FLAG_INPUTS, given

PREFIXES = {"sd15": "StableDiffusion", "sdxl": "StableDiffusionXL", "flux": "Flux"}  # block class names in diffblocks.blocks.*
# the denoise step --controlnet puts into each workflow (after the family's prefix)
CONTROLNET_DENOISE = {"text2image": "ControlNetDenoiseStep", "image2image": "ControlNetDenoiseStep",
                      "inpaint": "InpaintControlNetDenoiseStep", "ip-adapter": "ControlNetDenoiseStep"}
# FLUX's workflows with --controlnet: presets, as the control image must be encoded before anything else draws
FLUX_CONTROLNET = {"text2image": "CONTROLNET_BLOCKS", "image2image": "CONTROLNET_IMAGE2IMAGE_BLOCKS",
                   "inpaint": "CONTROLNET_INPAINT_BLOCKS"}
WORKFLOW_NEEDS = {"image2image": ["--image"], "inpaint": ["--image", "--mask-image"], "controlnet": ["--controlnet"],
                  "ip-adapter": ["--ip-adapter"], "fill": ["--image", "--mask-image"], "control": ["--control-image"],
                  "redux": ["--redux"]}


def load_preset(name: str):
    """The preset's ``InsertableDict`` of blocks, imported only now (SDXL may be absent from a build)."""
    if name not in PRESETS:
        raise FlagError.unknown_choice("preset", name, PRESETS)
    module_name, attr = PRESETS[name]
    try:
        module = importlib.import_module(f"diffblocks.presets.{module_name}")
    except ImportError as err:
        raise FlagError.preset_unavailable(name, f"diffblocks.presets.{module_name}", err) from err
    if not hasattr(module, attr):
        raise FlagError.preset_unavailable(name, f"diffblocks.presets.{module_name}.{attr}", AttributeError("not defined"))
    return getattr(module, attr)


def choose_preset(args, supplied: Collection[str] = (), family: str | None = None) -> str:
    """``--preset``, or for a family alone (default ``family``, the checkpoint's, else ``sd15``) the workflow the
    image flags ask for (or the image inputs ``supplied`` by every line of a prompts file; ``flux`` with
    ``--redux``: Redux)."""
    name = args.preset or family or "sd15"
    if name in FAMILIES:
        mask, image = args.mask_image or "mask_image" in supplied, args.image or "image" in supplied
        workflow = "inpaint" if mask else "image2image" if image else "text2image"
        if name == "flux" and args.redux is not None:
            workflow = "redux"
        return f"{name}-{workflow}"
    if name not in PRESETS:
        raise FlagError.unknown_choice("preset", name, [*PRESETS, *FAMILIES], flag="--preset")
    return name


def compose_blocks(preset: str, args):
    """The preset's blocks, with the ControlNet denoise loop for ``--controlnet`` and the IP-Adapter step
    first for ``--ip-adapter`` (the auto presets have both already); SD's and SDXL's prompts read with A1111's
    syntax (the weighted text encoder) unless ``--plain-prompts``."""
    from .. import SequentialPipelineBlocks

    family, workflow = preset.split("-", 1)
    blocks = load_preset(preset)
    blocks = blocks.copy() if getattr(args, "plain_prompts", False) else with_a1111_prompts(preset, blocks)
    steps = importlib.import_module(f"diffblocks.blocks.{FAMILIES[family]}")
    prefix = PREFIXES[family]
    if args.controlnet is not None and workflow != "controlnet" and "controlnet_input" not in blocks:  # auto has it
        workflows = FLUX_CONTROLNET if family == "flux" else CONTROLNET_DENOISE
        if workflow not in workflows:
            raise FlagError.unsupported("--controlnet", preset, ("text2image", "image2image", "inpaint"))
        if family == "flux":
            blocks = getattr(importlib.import_module("diffblocks.presets.flux"), FLUX_CONTROLNET[workflow]).copy()
        else:
            blocks.insert("controlnet_input", getattr(steps, f"{prefix}ControlNetInputStep"), list(blocks).index("denoise"))
            blocks["denoise"] = getattr(steps, prefix + CONTROLNET_DENOISE[workflow])
    if args.ip_adapter is not None and "ip_adapter" not in blocks:
        blocks.insert("ip_adapter", getattr(steps, f"{prefix}AutoIPAdapterStep"), 0)
    return SequentialPipelineBlocks.from_blocks_dict(blocks)


def check_flags_fit(preset: str, blocks, args, supplied: Collection[str] | None = None) -> None:
    """Every flag given sets an input of the blocks, and the workflow has the flags it needs (or, for
    ``diffblocks batch``, the inputs ``supplied`` by every line of its prompts file)."""
    for flag in WORKFLOW_NEEDS.get(preset.split("-", 1)[1], []):
        if given(args, flag) or FLAG_INPUTS.get(flag) in (supplied or ()):
            continue
        if supplied is not None and flag in FLAG_INPUTS:
            raise FlagError.needs(f"preset '{preset}'", f'{flag}, or "{FLAG_INPUTS[flag]}" on every line of the prompts file')
        raise FlagError.needs(f"preset '{preset}'", flag)
    takes = set(blocks.input_names)
    hint = "leave out --preset (or give only sd15 / sdxl) to pick the workflow from the flags"
    for flag, name in FLAG_INPUTS.items():
        if given(args, flag) and name not in takes:
            raise FlagError.not_an_input(flag, preset, hint if args.preset not in (None, *FAMILIES) else "")
