"""``diffblocks batch``: render every prompt of a file to its own PNG, on one process or under a launcher.

    diffblocks batch prompts.txt --out-dir out/                                   # one process
    torchrun --nproc_per_node 4 -m diffblocks.cli batch prompts.jsonl --out-dir out/ --seed 100
    accelerate launch --num_processes 8 -m diffblocks.cli batch prompts.txt --out-dir out/       # 8 GPUs

The flags that pick the pipeline are ``run``'s, checked and loaded by the same code (``run.plan_run``,
``run.build_pipeline``); the work itself is :func:`diffblocks.distributed.batch.run_batch`. On CPUs, launch
with ``torchrun`` (gloo): ``accelerate launch`` without a multi-CPU config starts a single CPU process.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ..components.errors import BatchError, BatchItemError, FlagError
from .choices import (FREEU_HELP, FREEU_VERSION_HELP, GUIDERS, SAMPLING_HELP, SCHEDULE_HELP, SCHEDULER_NAMES,
                      VAE_TILING_HELP, ZERO_SNR_HELP, pick_device)
from . import infotext
from .files import open_image
from .flags import check_hires, check_numbers, single, value_of
from .presets import PRESETS
from .hires import HIRES_HELP, HIRES_STEPS_HELP, HIRES_STRENGTH_HELP, HIRES_UPSCALER_HELP, HiresFix
from .run import (CLIP_SKIP_HELP, CONFIG_HELP, DISTILLED_HELP, EMBEDDING_HELP, LORA_HELP, PLAIN_PROMPTS_HELP,
                  TRANSFORMER_HELP, VAE_HELP, build_pipeline, plan_run)

# flags of `run` that `batch` does not take: absent, as if left out (run's checks read them)
RUN_ONLY = ("prompt", "ip_adapter", "ip_adapter_image", "ip_adapter_scale", "ip_adapter_encoder", "redux", "redux_image",
            "rows", "upscale", "variation_seed", "variation_strength")
# flags whose value is every item's default for a pipeline input (a JSONL line may set its own)
DEFAULT_INPUTS = {"steps": "num_inference_steps", "negative_prompt": "negative_prompt", "height": "height",
                  "width": "width", "strength": "strength", "controlnet_scale": "controlnet_conditioning_scale",
                  "control_mode": "control_mode", "distilled_guidance": "guidance_scale"}
# files, as absolute paths in the items
IMAGE_DEFAULTS = {"--image": "image", "--mask-image": "mask_image", "--control-image": "control_image"}


def _state(device: str | None):
    """accelerate's PartialState: gloo on CPU (``--device cpu`` or no CUDA), else the launcher's backend."""
    import torch
    from accelerate import PartialState

    cpu = (device or "").startswith("cpu") or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def _device(args, state) -> str:
    """This rank's device (``cuda:<local rank>`` under a launcher) for no ``--device`` or a bare
    ``--device cuda``; else ``--device`` as given."""
    if args.device is None or (args.device == "cuda" and state.device.type == "cuda"):
        return "cpu" if state.device.type == "cpu" else str(state.device)
    return pick_device(args.device)


def _valid_inputs(pipe) -> set[str]:
    guider = pipe.components.get("guider")
    return set(pipe.input_names) | {k for k in getattr(guider, "config", {}) if not k.startswith("_")}


def batch(args) -> int:
    """``diffblocks batch``: render the items not yet in ``--out-dir``; rank 0 prints the summary."""
    try:
        return _batch(args)
    except (BatchError, BatchItemError) as err:  # inputs as the prompts file spells them, not as flags
        print(f"diffblocks: error: {err}", file=sys.stderr)
        return 2


def _batch(args) -> int:
    from ..distributed.batch import check_images, run_batch
    from ..distributed.manifest import check_inputs, read_items

    check_numbers(args)
    check_hires(args)
    if len(args.controlnet or []) > 1:
        raise FlagError.bad_value("--controlnet", "given once here (several ControlNets together: diffblocks run)",
                                  args.controlnet)
    args.controlnet = single(args.controlnet)
    if args.batch_size <= 0:
        raise FlagError.bad_value("--batch-size", "a positive number", args.batch_size)
    defaults = {name: getattr(args, flag) for flag, name in DEFAULT_INPUTS.items() if getattr(args, flag) is not None}
    for flag, name in IMAGE_DEFAULTS.items():
        if open_image(flag, value_of(args, flag)) is not None:  # FlagError unless it is an image
            defaults[name] = str(Path(value_of(args, flag)).expanduser().resolve())
    items = read_items(args.prompts, args.seed, defaults)
    images_dir = Path(args.prompts).parent
    check_images(items, args.prompts, images_dir)
    out_dir = Path(args.out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise FlagError.unusable("--out-dir", args.out_dir, "is a file; give a folder")
    supplied = set.intersection(*(set(item.inputs) for item in items))
    if args.controlnet is not None and "control_image" not in supplied:
        raise FlagError.needs("--controlnet", '--control-image, or "control_image" on every line of the prompts file')
    plan = plan_run(args, supplied=supplied)
    if plan.clip_skip is not None:  # every item's, as the preset counts it (a JSONL line may set its own)
        for item in items:
            item.inputs.setdefault("clip_skip", plan.clip_skip)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = _state(args.device)
    try:
        pipe = build_pipeline(args, replace(plan, device=_device(args, state)))
        pipe.set_progress_bar_config(disable=True)  # one bar for the whole batch, not one per image
        check_inputs(items, _valid_inputs(pipe), args.prompts)
        if plan.hires is not None:
            pipe = HiresFix(args, plan, pipe)
            pipe.second.set_progress_bar_config(disable=True)  # one bar for the whole batch
        report = run_batch(pipe, items, out_dir, state, args.batch_size, progress=not args.no_progress,
                           images_dir=images_dir, parameters=_parameters(args, plan, pipe))
        if state.num_processes > 1:  # leave together: a rank that tore its group down while rank 0 still wrote
            state.wait_for_everyone()  # the manifest once aborted at exit (gloo, "terminate called ...")
    finally:
        if state.num_processes > 1:
            state.destroy_process_group()
    if state.process_index == 0:
        images = f"{report.total} image{'s' * (report.total != 1)}"
        print(f"wrote {images} to {out_dir.resolve()} ({report.rendered} rendered, {report.skipped} already done; "
              f"{state.num_processes} process(es), {report.seconds:.1f}s)")
    return 0


def _parameters(args, plan, render):
    """Each item's A1111 infotext, as ``diffblocks run`` writes it for the same prompt, inputs and seed (the size
    of a hires fix's first pass, as A1111 writes it)."""
    pipe = render.first if isinstance(render, HiresFix) else render

    def parameters(item, image) -> str:
        size = render.first_size if isinstance(render, HiresFix) else image.size
        return infotext.infotext(args, pipe, plan.blocks, size, item.inputs, prompt=item.prompt, seed=item.seed)

    return parameters


def add_parser(commands) -> None:
    """Add the ``batch`` subcommand and its flags to ``commands`` (an argparse subparsers action)."""
    b = commands.add_parser("batch", help="render every prompt of a file to its own PNG (also under torchrun / "
                                          "accelerate launch)")
    b.add_argument("prompts", metavar="PROMPTS", help="a text file, one prompt a line, or a .jsonl file, one "
                   "{\"prompt\": ..., <pipeline input>: ...} object a line (blank lines are skipped)")
    b.add_argument("--out-dir", required=True, help="folder for {index:06d}.png and manifest.jsonl (created if "
                                                    "missing); a rerun skips the images already there")
    b.add_argument("--preset", help=f"one of: {', '.join(PRESETS)}; or sd15 / sdxl (default: sd15)")
    b.add_argument("--model", help="model folder or Hub repo, or an SD 1.x / 2.x / SDXL checkpoint file (default: the "
                                   "embedded tiny digits model)")
    b.add_argument("--config", metavar="PATH_OR_REPO", help=CONFIG_HELP)
    b.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    b.add_argument("--seed", type=int, default=0, help="item i is rendered with seed SEED + i (default 0)")
    b.add_argument("--batch-size", type=int, default=1, help="items a process renders between progress updates; "
                   "items render one by one, so the images do not depend on it (default 1)")
    b.add_argument("--guidance-scale", type=float, help="guidance strength (default: the guider's)")
    b.add_argument("--guider", help=f"one of: {', '.join(GUIDERS)} (default: cfg)")
    b.add_argument("--distilled-guidance", type=float, metavar="SCALE", help=DISTILLED_HELP)
    b.add_argument("--scheduler", help=f"one of: {', '.join(SCHEDULER_NAMES)}, or a scheduler class name")
    b.add_argument("--schedule-type", help=SCHEDULE_HELP)
    b.add_argument("--clip-skip", type=int, metavar="N", help=CLIP_SKIP_HELP)
    b.add_argument("--prediction-type", help=SAMPLING_HELP)
    b.add_argument("--zero-snr", action="store_true", help=ZERO_SNR_HELP)
    b.add_argument("--freeu", metavar="B1,B2,S1,S2", help=FREEU_HELP)
    b.add_argument("--freeu-version", type=int, choices=(1, 2), help=FREEU_VERSION_HELP)
    b.add_argument("--vae-tiling", action="store_true", help=VAE_TILING_HELP)
    b.add_argument("--negative-prompt", help="what to steer away from (every item's default)")
    b.add_argument("--plain-prompts", action="store_true", help=PLAIN_PROMPTS_HELP)
    b.add_argument("--image", help="every item's input image (image-to-image; inpaint with --mask-image); a JSONL "
                   "line's \"image\" (relative to the prompts file) replaces it")
    b.add_argument("--mask-image", help="every item's inpainting mask, white where the image is repainted (a JSONL "
                   "line's \"mask_image\" replaces it)")
    b.add_argument("--strength", type=float, help="how much of the image is repainted, in (0, 1] (default: the "
                                                  "preset's; a JSONL line's \"strength\" replaces it)")
    b.add_argument("--height", type=int, help="image height in pixels, a multiple of 8 (default: the model's)")
    b.add_argument("--width", type=int, help="image width in pixels, a multiple of 8 (default: the model's)")
    b.add_argument("--controlnet", metavar="PATH_OR_REPO", action="append", help="a ControlNet model folder or Hub repo")
    b.add_argument("--control-image", help="every item's control image (a JSONL line's \"control_image\" replaces it)")
    b.add_argument("--controlnet-scale", type=float, help="how strongly the ControlNet steers (default 1.0)")
    b.add_argument("--control-mode", type=int, help="FLUX.1 Union ControlNets: which control the image is")
    b.add_argument("--lora", action="append", metavar="SOURCE[:WEIGHT]", help=LORA_HELP)
    b.add_argument("--embedding", action="append", metavar="FILE[:TOKEN]", help=EMBEDDING_HELP)
    b.add_argument("--transformer", metavar="FILE", help=TRANSFORMER_HELP)
    b.add_argument("--vae", metavar="FILE", help=VAE_HELP)
    b.add_argument("--hires", type=float, metavar="SCALE", help=HIRES_HELP)
    b.add_argument("--hires-strength", type=float, help=HIRES_STRENGTH_HELP)
    b.add_argument("--hires-steps", type=int, help=HIRES_STEPS_HELP)
    b.add_argument("--hires-upscaler", metavar="NAME", help=HIRES_UPSCALER_HELP)
    b.add_argument("--device", help="cpu, cuda, ... (default: this process's device under a launcher, else cuda "
                                    "when available)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=batch, **dict.fromkeys(RUN_ONLY))
