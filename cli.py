"""The ``diffblocks`` command: render prompts with a preset, or inspect a preset's blocks.

    diffblocks run --prompt "a handwritten digit seven" --out seven.png     # the embedded model, offline
    diffblocks run --prompt "a seven" --image three.png --strength 0.6       # image-to-image, picked from --image
    diffblocks run --prompt "a cat" --preset sdxl --model stabilityai/stable-diffusion-xl-base-1.0
    diffblocks inspect sd15-text2image

Without ``--preset`` (or with only a family, ``sd15`` / ``sdxl``) the workflow follows the flags: inpaint with
``--mask-image``, image-to-image with ``--image``, text-to-image otherwise; ``--controlnet`` and
``--ip-adapter`` add their blocks to it. Every flag is checked before a model loads; mistakes, and the
pipeline's own complaints about an input (reworded to name the flag), end with one line on stderr and exit
code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import platform
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from .modular_pipelines.errors import DiffblocksError, FlagError

WORKFLOWS = {"text2image": "TEXT2IMAGE_BLOCKS", "image2image": "IMAGE2IMAGE_BLOCKS", "inpaint": "INPAINT_BLOCKS",
             "auto": "AUTO_BLOCKS", "controlnet": "CONTROLNET_BLOCKS", "ip-adapter": "IP_ADAPTER_BLOCKS"}
FAMILIES = {"sd15": "stable_diffusion", "sdxl": "stable_diffusion_xl"}
PREFIXES = {"sd15": "StableDiffusion", "sdxl": "StableDiffusionXL"}  # block class names in diffblocks.blocks.*
PRESETS = {f"{family}-{workflow}": (module, name)
           for family, module in FAMILIES.items() for workflow, name in WORKFLOWS.items()}
# the denoise step --controlnet puts into each workflow (after the family's prefix)
CONTROLNET_DENOISE = {"text2image": "ControlNetDenoiseStep", "image2image": "ControlNetDenoiseStep",
                      "inpaint": "InpaintControlNetDenoiseStep", "ip-adapter": "ControlNetDenoiseStep"}
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
SCHEDULER_NAMES = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", "euler": "EulerDiscreteScheduler",
                   "euler-a": "EulerAncestralDiscreteScheduler", "dpm++": "DPMSolverMultistepScheduler",
                   "unipc": "UniPCMultistepScheduler", "lcm": "LCMScheduler"}
# flag -> the pipeline input it sets (to check a preset takes it, and to word the pipeline's errors)
FLAG_INPUTS = {"--prompt": "prompt", "--negative-prompt": "negative_prompt", "--steps": "num_inference_steps",
               "--height": "height", "--width": "width", "--strength": "strength", "--image": "image",
               "--mask-image": "mask_image", "--control-image": "control_image",
               "--controlnet-scale": "controlnet_conditioning_scale", "--ip-adapter-image": "ip_adapter_image"}
# the input names the pipeline's errors may use, with the flags to write instead (guidance_scale is the guider's)
FLAG_WORDS = {name: flag for flag, name in {**FLAG_INPUTS, "--guidance-scale": "guidance_scale"}.items()}
IMAGE_FLAGS = ("--image", "--mask-image", "--control-image", "--ip-adapter-image")
# a flag that means nothing without another one
NEEDS = [("--strength", "--image"), ("--mask-image", "--image"), ("--control-image", "--controlnet"),
         ("--controlnet", "--control-image"), ("--controlnet-scale", "--controlnet"),
         ("--ip-adapter-image", "--ip-adapter"), ("--ip-adapter", "--ip-adapter-image"),
         ("--ip-adapter-scale", "--ip-adapter")]
WORKFLOW_NEEDS = {"image2image": ["--image"], "inpaint": ["--image", "--mask-image"], "controlnet": ["--controlnet"],
                  "ip-adapter": ["--ip-adapter"]}
REPO_ID = re.compile(r"^[\w][\w.-]*/[\w.-]+$")
WEIGHTS = (".bin", ".safetensors")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version_line() -> str:
    """``diffblocks <version> (torch <version>, Python <version>)``, read without importing torch."""
    from . import __version__

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return f"diffblocks {__version__} (torch {torch_version}, Python {platform.python_version()})"


def value_of(args, flag: str) -> Any:
    return getattr(args, flag[2:].replace("-", "_"))


def given(args, flag: str) -> bool:
    return value_of(args, flag) is not None


# --- checks that need no model -------------------------------------------------------------------


def check_numbers(args) -> None:
    """Counts positive, sizes multiples of 8 (every Stable Diffusion VAE divides by 8), strength in (0, 1],
    scales finite."""
    for flag in ("--steps", "--rows", "--upscale"):
        if given(args, flag) and value_of(args, flag) <= 0:
            raise FlagError.bad_value(flag, "a positive number", value_of(args, flag))
    for flag in ("--height", "--width"):
        if given(args, flag) and (value_of(args, flag) <= 0 or value_of(args, flag) % 8):
            raise FlagError.bad_value(flag, "a positive multiple of 8", value_of(args, flag))
    if given(args, "--strength") and not 0 < args.strength <= 1:  # NaN fails this too; 0 would leave no steps
        raise FlagError.bad_value("--strength", "in (0, 1]", args.strength)
    for flag in ("--guidance-scale", "--controlnet-scale", "--ip-adapter-scale"):
        if given(args, flag) and not math.isfinite(value_of(args, flag)):
            raise FlagError.bad_value(flag, "a finite number", value_of(args, flag))


def check_pairs(args) -> None:
    for flag, other in NEEDS:
        if given(args, flag) and not given(args, other):
            raise FlagError.needs(flag, other)


def output_path(out: str) -> Path:
    """``--out`` as a path whose folder exists: a missing folder is refused rather than created, so that a
    typo in it is caught before rendering, as ``cp`` or ``convert`` would."""
    from PIL import Image

    path = Path(out).expanduser()
    if path.is_dir():
        raise FlagError.unusable("--out", out, f"names a folder; give a file name, e.g. {path / 'out.png'}")
    extensions = Image.registered_extensions()
    if extensions.get(path.suffix.lower()) not in Image.SAVE:
        raise FlagError.unusable("--out", out, "cannot tell the image format; end it with .png, .jpg or .webp")
    folder = path.parent
    if not folder.is_dir():
        raise FlagError.unusable("--out", out, f"the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise FlagError.unusable("--out", out, f"cannot write in the folder {folder}")
    return path


def open_image(flag: str, path: str | None):
    """The image ``flag`` names, as RGB, or None when the flag is not given."""
    if path is None:
        return None
    from PIL import Image

    if not Path(path).is_file():
        raise FlagError.unusable(flag, path, "is a folder, not an image" if Path(path).is_dir() else "file not found")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise FlagError.unusable(flag, path, f"cannot read the image: {err}") from err


def local_or_repo(flag: str, value: str, what: str) -> str:
    """A local folder holding ``config.json`` (or ``model_index.json``), else a Hub repo id."""
    path = Path(value).expanduser()
    if path.is_file():
        raise FlagError.unusable(flag, value, f"is a file; give the {what}'s folder")
    if path.is_dir():
        if not any((path / name).is_file() for name in ("config.json", "model_index.json")):
            raise FlagError.unusable(flag, value, f"has no config.json or model_index.json; give the {what}'s folder")
        return str(path)
    if REPO_ID.match(value) and not value.startswith("."):
        return value
    raise FlagError.unusable(flag, value, "no such folder (nor a Hub repo id like owner/name)")


def resolve_model(model: str | None, preset: str) -> str:
    """The model folder or Hub repo: the embedded model by default (SD 1.5 presets only)."""
    if model is None:
        if not preset.startswith("sd15-"):
            raise FlagError.needs(f"preset '{preset}'", "--model", "the embedded model is a Stable Diffusion 1.5 model")
        from .presets import embedded_model_path

        return str(embedded_model_path())
    return local_or_repo("--model", model, "model")


def ip_adapter_source(value: str | None) -> tuple[str, str, str] | None:
    """``(folder or repo, subfolder, weights file)`` of ``--ip-adapter``: a local weights file with
    ``image_encoder/`` beside it, a local folder holding one weights file, or ``REPO/SUBFOLDER/FILE`` on the Hub
    (as in ``h94/IP-Adapter/models/ip-adapter_sd15.bin``, whose image encoder is ``models/image_encoder``)."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir() if p.suffix in WEIGHTS)
        if len(files) != 1:
            raise FlagError.unusable("--ip-adapter", value, f"holds {len(files)} weights files "
                                     f"({', '.join(files) or 'no .bin or .safetensors'}); name one")
        path = path / files[0]
    if path.is_file():
        if not (path.parent / "image_encoder" / "config.json").is_file():
            raise FlagError.unusable("--ip-adapter", value, f"no image encoder beside it (looked for "
                                     f"{path.parent / 'image_encoder' / 'config.json'})")
        return str(path.parent), "", path.name
    parts = value.split("/")
    if len(parts) >= 3 and REPO_ID.match("/".join(parts[:2])) and value.endswith(WEIGHTS) and value[0] not in "./~":
        return "/".join(parts[:2]), "/".join(parts[2:-1]), parts[-1]
    raise FlagError.unusable("--ip-adapter", value, "not found; give a weights file (.bin or .safetensors), a folder "
                             "holding one, or REPO/SUBFOLDER/FILE on the Hub")


def scheduler_class(name: str | None):
    """The scheduler class ``--scheduler`` names: a short name (``euler-a``) or a class name, any case."""
    if name is None:
        return None
    from .components.schedulers import SCHEDULERS

    key = name.lower().replace("_", "-")
    by_lower = {class_name.lower(): class_name for class_name in SCHEDULERS}
    class_name = SCHEDULER_NAMES.get(key) or by_lower.get(key) or by_lower.get(key + "scheduler")
    if class_name not in SCHEDULERS:
        raise FlagError.unknown_choice("scheduler", name, [*SCHEDULER_NAMES, *SCHEDULERS], flag="--scheduler")
    return SCHEDULERS[class_name]


def make_guider(name: str | None, scale: float | None):
    """The guider for ``--guider`` / ``--guidance-scale``, or None to keep the pipeline's default."""
    if name is None and scale is None:
        return None
    if name is not None and name not in GUIDERS:
        raise FlagError.unknown_choice("guider", name, GUIDERS, flag="--guider")
    from . import guiders

    class_name, kwargs = GUIDERS[name or "cfg"]
    if scale is not None:
        kwargs = {**kwargs, "guidance_scale": scale}
    return getattr(guiders, class_name)(**kwargs)


def pick_device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise FlagError.failed("--device", name, err) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FlagError.unusable("--device", name, "CUDA is not available on this machine")
    return name


# --- presets and blocks --------------------------------------------------------------------------


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


def choose_preset(args) -> str:
    """``--preset``, or for a family alone (default ``sd15``) the workflow the image flags ask for."""
    name = args.preset or "sd15"
    if name in FAMILIES:
        workflow = "inpaint" if args.mask_image else "image2image" if args.image else "text2image"
        return f"{name}-{workflow}"
    if name not in PRESETS:
        raise FlagError.unknown_choice("preset", name, [*PRESETS, *FAMILIES], flag="--preset")
    return name


def compose_blocks(preset: str, args):
    """The preset's blocks, with the ControlNet denoise loop for ``--controlnet`` and the IP-Adapter step
    first for ``--ip-adapter``."""
    from . import SequentialPipelineBlocks

    family, workflow = preset.split("-", 1)
    blocks = load_preset(preset).copy()
    steps = importlib.import_module(f"diffblocks.blocks.{FAMILIES[family]}")
    prefix = PREFIXES[family]
    if args.controlnet is not None and workflow != "controlnet":
        if workflow not in CONTROLNET_DENOISE:
            raise FlagError.unsupported("--controlnet", preset, ("text2image", "image2image", "inpaint"))
        blocks.insert("controlnet_input", getattr(steps, f"{prefix}ControlNetInputStep"), list(blocks).index("denoise"))
        blocks["denoise"] = getattr(steps, prefix + CONTROLNET_DENOISE[workflow])
    if args.ip_adapter is not None and "ip_adapter" not in blocks:
        blocks.insert("ip_adapter", getattr(steps, f"{prefix}AutoIPAdapterStep"), 0)
    return SequentialPipelineBlocks.from_blocks_dict(blocks)


def check_flags_fit(preset: str, blocks, args) -> None:
    """Every flag given sets an input of the blocks, and the workflow has the flags it needs."""
    for flag in WORKFLOW_NEEDS.get(preset.split("-", 1)[1], []):
        if not given(args, flag):
            raise FlagError.needs(f"preset '{preset}'", flag)
    takes = set(blocks.input_names)
    hint = "leave out --preset (or give only sd15 / sdxl) to pick the workflow from the flags"
    for flag, name in FLAG_INPUTS.items():
        if given(args, flag) and name not in takes:
            raise FlagError.not_an_input(flag, preset, hint if args.preset not in (None, *FAMILIES) else "")


@dataclass
class Plan:
    """Everything ``diffblocks run`` loads and sets, checked before any model loads."""

    blocks: Any
    model: str
    controlnet: str | None
    ip_adapter: tuple[str, str, str] | None
    scheduler: type | None
    guider: Any
    device: str


def plan_run(args) -> Plan:
    preset = choose_preset(args)
    blocks = compose_blocks(preset, args)
    check_flags_fit(preset, blocks, args)
    return Plan(blocks=blocks, model=resolve_model(args.model, preset),
                controlnet=None if args.controlnet is None else local_or_repo("--controlnet", args.controlnet, "ControlNet"),
                ip_adapter=ip_adapter_source(args.ip_adapter), scheduler=scheduler_class(args.scheduler),
                guider=make_guider(args.guider, args.guidance_scale), device=pick_device(args.device))


# --- running --------------------------------------------------------------------------------------


@contextmanager
def quiet():
    """No warning that a component's type changes: the user asked for it."""
    log = logging.getLogger("diffblocks")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def add_adapters(pipe, plan: Plan, args) -> None:
    """Load the ControlNet and the IP-Adapter the flags name; their errors name the flag."""
    if plan.controlnet is not None:
        from .components import ControlNetModel

        try:
            with quiet():
                pipe.update_components(controlnet=ControlNetModel.from_pretrained(plan.controlnet))
        except (DiffblocksError, OSError, ValueError) as err:
            raise FlagError.failed("--controlnet", args.controlnet, err) from err
    if plan.ip_adapter is not None:
        source, subfolder, weight_name = plan.ip_adapter
        try:
            pipe.loader.load_ip_adapter(source, subfolder=subfolder, weight_name=weight_name)
        except (DiffblocksError, OSError, ValueError) as err:
            raise FlagError.failed("--ip-adapter", args.ip_adapter, err) from err
        if args.ip_adapter_scale is not None:
            pipe.loader.set_ip_adapter_scale(args.ip_adapter_scale)


def build_pipeline(args, plan: Plan):
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    pipe = plan.blocks.init_pipeline(plan.model)
    pipe.load_components()
    add_adapters(pipe, plan, args)
    with quiet():
        if plan.scheduler is not None:
            pipe.update_components(scheduler=plan.scheduler.from_config(pipe.scheduler.config))
        if plan.guider is not None:
            pipe.update_components(guider=plan.guider)
    try:
        pipe.to(plan.device)
    except (RuntimeError, AssertionError) as err:
        raise FlagError.failed("--device", plan.device, err) from err
    pipe.set_progress_bar_config(disable=args.no_progress, desc="denoising")
    return pipe


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


def run(args) -> int:
    """``diffblocks run``: render the prompts (one image each, tiled when several) to ``--out``."""
    import torch

    start = time.time()
    check_numbers(args)
    check_pairs(args)
    out = output_path(args.out)
    inputs = {FLAG_INPUTS[flag]: open_image(flag, value_of(args, flag)) for flag in IMAGE_FLAGS}
    plan = plan_run(args)
    pipe = build_pipeline(args, plan)
    for flag in ("--prompt", "--negative-prompt", "--height", "--width", "--steps", "--strength", "--controlnet-scale"):
        inputs[FLAG_INPUTS[flag]] = value_of(args, flag)
    inputs = {k: v for k, v in inputs.items() if v is not None}
    generators = [torch.Generator().manual_seed(args.seed) for _ in args.prompt]
    images = pipe(generator=generators, output_type="pil", output="images", **inputs)
    picture = grid(images, args.rows, args.upscale) if len(images) > 1 or args.upscale > 1 else images[0]
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


# --- errors as one line -------------------------------------------------------------------------

_NAMES = "|".join(sorted(FLAG_WORDS, key=len, reverse=True))
# quoted names and name=value always; bare names only where they cannot be ordinary words ("image", "width")
_BARE = "|".join(name for name in FLAG_WORDS if "_" in name or name == "strength")
_INPUT_NAME = re.compile(rf"(?<![\w-])(?:(?:input )?'({_NAMES})'|({_NAMES})=|({_BARE})(?![\w-]))")
_LOCATED = re.compile(r"^(?:block '(?P<path>[^']+)'(?: \(\w+\))?|(?P<where>block \w+|pipeline))(?: failed)?: "
                      r"(?:\w+(?:Error|Exception): )?(?P<problem>.+)$")


def cli_message(err: BaseException) -> str:
    """The error's first line, with the pipeline's input names written as the flags that set them
    (``strength=1.5`` -> ``--strength 1.5``) and, when it is about a flag, the block it came from moved to
    the end."""
    text = str(err).strip()
    text = text.splitlines()[0] if text else type(err).__name__
    worded = _INPUT_NAME.sub(lambda m: FLAG_WORDS[m[1] or m[3]] if not m[2] else f"{FLAG_WORDS[m[2]]} ", text)
    located = _LOCATED.match(worded)
    if worded == text or located is None:
        return worded
    where = f"block '{located['path']}'" if located["path"] else located["where"]
    return f"{located['problem']} (in {where})"


def build_parser() -> Parser:
    parser = Parser(prog="diffblocks", description="Build and run diffusion pipelines out of blocks.")
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,inspect}")
    r = commands.add_parser("run", help="render prompts with a preset (default: the embedded digits model)")
    r.add_argument("--prompt", action="append", required=True, help="what to draw; repeat for several images")
    r.add_argument("--negative-prompt", help="what to steer away from")
    r.add_argument("--preset", help=f"one of: {', '.join(PRESETS)}; or sd15 / sdxl to pick the workflow from the "
                                    "flags (default: sd15)")
    r.add_argument("--model", help="model folder or Hub repo (default: the embedded tiny digits model)")
    r.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    r.add_argument("--seed", type=int, default=0, help="noise seed, the same for every prompt (default 0)")
    r.add_argument("--guidance-scale", type=float, help="guidance strength (default: the guider's)")
    r.add_argument("--guider", help=f"one of: {', '.join(GUIDERS)} (default: cfg)")
    r.add_argument("--scheduler", help=f"one of: {', '.join(SCHEDULER_NAMES)}, or a scheduler class name "
                                       "(default: the model's)")
    r.add_argument("--height", type=int, help="image height in pixels, a multiple of 8 (default: the model's)")
    r.add_argument("--width", type=int, help="image width in pixels, a multiple of 8 (default: the model's)")
    r.add_argument("--image", help="input image (image-to-image; inpaint with --mask-image)")
    r.add_argument("--mask-image", help="inpainting mask, white where the image is repainted")
    r.add_argument("--strength", type=float, help="how much of --image is repainted, in (0, 1] (default: the preset's)")
    r.add_argument("--controlnet", metavar="PATH_OR_REPO", help="a ControlNet model folder or Hub repo")
    r.add_argument("--control-image", help="the image the ControlNet follows (edges, depth, pose...)")
    r.add_argument("--controlnet-scale", type=float, help="how strongly the ControlNet steers (default 1.0)")
    r.add_argument("--ip-adapter", metavar="PATH_OR_REPO", help="an IP-Adapter weights file with image_encoder/ "
                   "beside it, or REPO/SUBFOLDER/FILE on the Hub (e.g. h94/IP-Adapter/models/ip-adapter_sd15.bin)")
    r.add_argument("--ip-adapter-image", help="the image whose look the IP-Adapter carries over")
    r.add_argument("--ip-adapter-scale", type=float, help="how strongly the IP-Adapter steers (default 1.0)")
    r.add_argument("--rows", type=int, default=1, help="rows of the grid when there are several prompts")
    r.add_argument("--upscale", type=int, default=1, help="enlarge the saved picture this many times")
    r.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    r.add_argument("--out", default="out.png", help="the image file to write, in an existing folder (default out.png)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=run)
    i = commands.add_parser("inspect", help="print a preset's blocks, inputs, outputs and data-flow graph")
    i.add_argument("preset", help=f"one of: {', '.join(PRESETS)}")
    i.add_argument("--doc", action="store_true", help="one entry per param, with descriptions")
    i.set_defaults(func=inspect_preset)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diffblocks`` console script; returns the exit code (argparse exits by itself,
    with 2, on a malformed command line, and with 0 after ``--help`` / ``--version``)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DiffblocksError as err:
        print(f"diffblocks: error: {cli_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
