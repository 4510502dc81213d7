"""The ``diffblocks`` command: render prompts with a preset, or inspect a preset's blocks.

    diffblocks run --prompt "a handwritten digit seven" --out seven.png     # the embedded model, offline
    diffblocks run --prompt "a cat" --preset sdxl-text2image --model stabilityai/stable-diffusion-xl-base-1.0
    diffblocks inspect sd15-text2image

Mistakes a user can make (unknown preset or guider, missing model folder, bad size) end with one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import time
from pathlib import Path
from typing import Sequence

from .modular_pipelines.errors import DiffblocksError, UsageError

WORKFLOWS = {"text2image": "TEXT2IMAGE_BLOCKS", "image2image": "IMAGE2IMAGE_BLOCKS", "inpaint": "INPAINT_BLOCKS",
             "auto": "AUTO_BLOCKS", "controlnet": "CONTROLNET_BLOCKS"}
FAMILIES = {"sd15": "stable_diffusion", "sdxl": "stable_diffusion_xl"}
PRESETS = {f"{family}-{workflow}": (module, name)
           for family, module in FAMILIES.items() for workflow, name in WORKFLOWS.items()}
# short name -> (guider class, extra arguments); layer-perturbing guiders perturb the UNet's mid-block layer 0
GUIDERS = {
    "cfg": ("ClassifierFreeGuidance", {}),
    "cfg-zero-star": ("ClassifierFreeZeroStarGuidance", {}),
    "apg": ("AdaptiveProjectedGuidance", {}),
    "tcfg": ("TangentialClassifierFreeGuidance", {}),
    "mag": ("MagnitudeAwareGuidance", {}),
    "pag": ("PerturbedAttentionGuidance", {"perturbed_guidance_layers": [0]}),
    "seg": ("SmoothedEnergyGuidance", {"seg_guidance_layers": [0]}),
    "slg": ("SkipLayerGuidance", {"skip_layer_guidance_layers": [0]}),
}
REPO_ID = re.compile(r"^[\w][\w.-]*/[\w.-]+$")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def load_preset(name: str):
    """The preset's ``InsertableDict`` of blocks, imported only now (SDXL may be absent from a build)."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset '{name}'; presets: {', '.join(PRESETS)}")
    module_name, attr = PRESETS[name]
    try:
        module = importlib.import_module(f"diffblocks.presets.{module_name}")
    except ImportError as err:
        raise UsageError(
            f"preset '{name}' needs diffblocks.presets.{module_name}, which cannot be imported: {err}") from err
    if not hasattr(module, attr):
        raise UsageError(f"preset '{name}': diffblocks.presets.{module_name} has no {attr} yet")
    return getattr(module, attr)


def resolve_model(model: str | None, preset: str) -> str:
    """The model folder or Hub repo: the embedded model by default (SD 1.5 presets only)."""
    if model is None:
        if not preset.startswith("sd15-"):
            raise UsageError(f"the embedded model is a Stable Diffusion 1.5 model; give --model for '{preset}'")
        from .presets import embedded_model_path

        return str(embedded_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--model {model} is a file; give the model's folder (with model_index.json)")
        return str(path)
    if REPO_ID.match(model) and not model.startswith("."):
        return model  # a Hub repo id
    raise UsageError(f"model folder not found: {model}")


def make_guider(name: str | None, scale: float | None):
    """The guider for ``--guider`` / ``--guidance-scale``, or None to keep the pipeline's default."""
    if name is None and scale is None:
        return None
    if name is not None and name not in GUIDERS:
        raise UsageError(f"unknown guider '{name}'; guiders: {', '.join(GUIDERS)}")
    from . import guiders

    class_name, kwargs = GUIDERS[name or "cfg"]
    if scale is not None:
        kwargs = {**kwargs, "guidance_scale": scale}
    return getattr(guiders, class_name)(**kwargs)


def grid(images: list, rows: int, upscale: int):
    """Tile ``images`` (PIL, all one size) into ``rows`` rows, each enlarged ``upscale`` times, with white
    gaps of ``2 * upscale`` pixels between them."""
    from PIL import Image

    rows = max(1, min(rows, len(images)))
    cols = -(-len(images) // rows)
    w, h = images[0].size
    w, h, gap = w * upscale, h * upscale, 2 * upscale
    sheet = Image.new("RGB", (cols * (w + gap) - gap, rows * (h + gap) - gap), "white")
    for i, image in enumerate(images):
        x, y = (i % cols) * (w + gap), (i // cols) * (h + gap)
        sheet.paste(image.resize((w, h), Image.Resampling.BICUBIC), (x, y))
    return sheet


def open_image(path: str | None):
    if path is None:
        return None
    from PIL import Image

    if not Path(path).is_file():
        raise UsageError(f"image not found: {path}")
    try:
        return Image.open(path).convert("RGB")
    except OSError as err:
        raise UsageError(f"cannot read image {path}: {err}") from err


def output_path(out: str) -> Path:
    from PIL import Image

    path = Path(out)
    if path.suffix.lower() not in Image.registered_extensions():
        raise UsageError(f"cannot tell the image format of --out {out}; end it with .png, .jpg or .webp")
    return path


def build_pipeline(args):
    import torch
    from transformers.utils import logging as hf_logging

    from . import SequentialPipelineBlocks

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    blocks = SequentialPipelineBlocks.from_blocks_dict(load_preset(args.preset))
    guider = make_guider(args.guider, args.guidance_scale)
    pipe = blocks.init_pipeline(resolve_model(args.model, args.preset))
    pipe.load_components()
    if guider is not None:
        quiet = logging.getLogger("diffblocks")  # no warning that the guider type changes: the user asked for it
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            pipe.update_components(guider=guider)
        finally:
            quiet.setLevel(level)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        pipe.to(device)
    except (RuntimeError, AssertionError) as err:
        raise UsageError(f"cannot use device '{device}': {err}") from err
    pipe.set_progress_bar_config(disable=args.no_progress, desc="denoising")
    return pipe


def run(args) -> int:
    """``diffblocks run``: render the prompts (one image each, tiled when several) to ``--out``."""
    import torch

    for flag, value in (("--height", args.height), ("--width", args.width), ("--steps", args.steps),
                        ("--rows", args.rows), ("--upscale", args.upscale)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be a positive number, got {value}")
    start = time.time()
    out = output_path(args.out)
    inputs = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "height": args.height,
              "width": args.width, "num_inference_steps": args.steps, "image": open_image(args.image),
              "mask_image": open_image(args.mask_image)}
    pipe = build_pipeline(args)
    inputs = {k: v for k, v in inputs.items() if v is not None}
    generators = [torch.Generator().manual_seed(args.seed) for _ in args.prompt]
    images = pipe(generator=generators, output_type="pil", output="images", **inputs)
    picture = grid(images, args.rows, args.upscale) if len(images) > 1 or args.upscale > 1 else images[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    w, h = images[0].size
    print(f"wrote {out.resolve()} ({len(images)} image(s) of {w}x{h} in {time.time() - start:.1f}s)")
    return 0


def inspect_preset(args) -> int:
    """``diffblocks inspect``: the block tree, inputs and outputs, then the data-flow graph as mermaid."""
    from . import SequentialPipelineBlocks

    blocks = SequentialPipelineBlocks.from_blocks_dict(load_preset(args.preset))
    print(blocks.doc if args.doc else repr(blocks))
    print("\nData flow (mermaid):\n")
    print(blocks.to_mermaid())
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="diffblocks", description="Build and run diffusion pipelines out of blocks.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,inspect}")
    r = commands.add_parser("run", help="render prompts with a preset (default: the embedded digits model)")
    r.add_argument("--prompt", action="append", required=True, help="what to draw; repeat for several images")
    r.add_argument("--negative-prompt", help="what to steer away from")
    r.add_argument("--preset", default="sd15-text2image", help=f"one of: {', '.join(PRESETS)}")
    r.add_argument("--model", help="model folder or Hub repo (default: the embedded tiny digits model)")
    r.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    r.add_argument("--seed", type=int, default=0, help="noise seed, the same for every prompt (default 0)")
    r.add_argument("--guidance-scale", type=float, help="guidance strength (default: the guider's)")
    r.add_argument("--guider", help=f"one of: {', '.join(GUIDERS)} (default: cfg)")
    r.add_argument("--height", type=int, help="image height in pixels (default: the model's)")
    r.add_argument("--width", type=int, help="image width in pixels (default: the model's)")
    r.add_argument("--image", help="input image (image2image, inpaint)")
    r.add_argument("--mask-image", help="inpainting mask, white where the image is repainted")
    r.add_argument("--rows", type=int, default=1, help="rows of the grid when there are several prompts")
    r.add_argument("--upscale", type=int, default=1, help="enlarge the saved picture this many times")
    r.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    r.add_argument("--out", default="out.png", help="where to write the PNG (default out.png)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=run)
    i = commands.add_parser("inspect", help="print a preset's blocks, inputs, outputs and data-flow graph")
    i.add_argument("preset", help=f"one of: {', '.join(PRESETS)}")
    i.add_argument("--doc", action="store_true", help="one entry per param, with descriptions")
    i.set_defaults(func=inspect_preset)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diffblocks`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DiffblocksError as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"diffblocks: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
