"""``diffblocks run``: check every flag, load the pipeline they describe, render the prompts to ``--out``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..components.errors import ConfigError, DiffblocksError, FlagError
from ..components.files import is_weights_file
from ..components.spec import ComponentSpec, LazyClass
from . import infotext
from .choices import (FREEU_HELP, FREEU_VERSION_HELP, GUIDERS, SAMPLING_HELP, SCHEDULE_HELP, SCHEDULER_NAMES,
                      VAE_TILING_HELP, ZERO_SNR_HELP, check_schedule, make_guider, pick_device, sampling_changes,
                      schedule_changes, scheduler_class, scheduler_settings)
from .files import (
    checkpoint_arg,
    controlnet_source,
    embedding_sources,
    image_encoder_arg,
    ip_adapter_source,
    local_or_repo,
    lora_sources,
    open_image,
    output_path,
    resolve_model,
    weights_file,
)
from .flags import (
    FLAG_INPUTS,
    IMAGE_FLAGS,
    check_controlnet_counts,
    check_hires,
    check_numbers,
    check_pairs,
    clip_skip_input,
    freeu_setting,
    single,
    value_of,
    values_of,
)
from .hires import (HIRES_HELP, HIRES_STEPS_HELP, HIRES_STRENGTH_HELP, HIRES_UPSCALER_HELP, HiresFix,
                    check_upscaler)
from .presets import PRESETS, check_flags_fit, choose_preset, compose_blocks
from .variation import VARIATION_SEED_HELP, VARIATION_STRENGTH_HELP, check_variation, variation_latents


LORA_HELP = ("a LoRA (diffusers or kohya .safetensors / .bin file, a folder holding one, or a Hub repo owner/name[/FILE]) "
             "at WEIGHT (default 1); repeat for several")


TRANSFORMER_HELP = ("FLUX.1: a transformer in one file (.safetensors or .sft; Black Forest Labs' layout, as "
                    "flux1-dev.safetensors, a fine-tune or an fp8 copy; or owner/name/FILE) in place of --model's")
EMBEDDING_HELP = ("a textual-inversion embedding (A1111 .pt / .safetensors, or diffusers'), used in prompts as TOKEN "
                  "(default: the file's name, as A1111 does); repeat for several")
VAE_HELP = ("a VAE in one file (.safetensors, .ckpt or .pt, as A1111 and ComfyUI keep them: "
            "vae-ft-mse-840000-ema-pruned, sdxl_vae, FLUX.1's ae; or owner/name/FILE) in place of --model's; its "
            "config is --model's")
DISTILLED_HELP = ("FLUX.1: the guidance the model is conditioned on (FLUX.1-dev's 3.5; Forge's Distilled CFG Scale, "
                  "ComfyUI's FluxGuidance); --guidance-scale is true CFG, with a --negative-prompt")
PLAIN_PROMPTS_HELP = ("read SD's and SDXL's prompts as plain text, as diffusers' pipelines do (default: A1111's "
                      "syntax, as its images hold prompts: (word:1.2) weights, BREAK, any length in chunks of 75 tokens)")
CLIP_SKIP_HELP = ("A1111's Clip skip: 2 reads CLIP's layer before the last, as most anime SD 1.x models are used "
                  "(default: the preset's; ComfyUI's CLIPSetLastLayer -2)")
CONFIG_HELP = ("with --model FILE (.safetensors or .ckpt): the diffusers repo whose configs, tokenizers and scheduler go "
               "with it (default: those of its family's reference repo, shipped with diffblocks: "
               "stable-diffusion-v1-5/stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1, "
               "stabilityai/stable-diffusion-xl-base-1.0, or their inpainting repos)")


@dataclass
class Plan:
    """Everything ``diffblocks run`` loads and sets, checked before any model loads."""

    blocks: Any
    model: str  # a folder or Hub repo; with a checkpoint, the repo whose configs describe it
    checkpoint: str | None  # an original SD 1.x / 2.x / SDXL checkpoint file (A1111 / ComfyUI)
    transformer: str | None  # a FLUX.1 transformer file replacing the model's
    vae: str | None  # a VAE file replacing the model's
    controlnets: list[str]
    ip_adapter: tuple[str, str, str] | None
    ip_adapter_encoder: str | None  # a CLIP vision model's file, folder or repo, when not beside the adapter
    redux: str | None
    loras: list[tuple[str, str | None, float]]
    embeddings: list[tuple[str, str]]  # textual-inversion files and their tokens
    scheduler: type | None
    guider: Any
    device: str
    hires: Any = None  # --hires: the image-to-image blocks of the second pass
    hires_upscaler: str = "Lanczos"  # --hires-upscaler, as A1111 names it
    variation: tuple[int, float] | None = None  # --variation-seed, --variation-strength
    sampling: dict = field(default_factory=dict)  # --prediction-type, --zero-snr, --schedule-type: its config changed
    clip_skip: int | None = None  # --clip-skip, as the preset counts it
    freeu: dict | None = None  # --freeu, --freeu-version: enable_freeu's keywords


def plan_run(args, supplied: Collection[str] | None = None) -> Plan:
    """The blocks, model and components the flags ask for; raises ``FlagError`` before anything loads.
    ``supplied``: the inputs every line of ``diffblocks batch``'s prompts file sets (they stand in for flags)."""
    from ..components.checkpoints import FAMILY_NAMES, PRESET_FAMILIES, config_repo  # torch: not before serving

    checkpoint, family = checkpoint_arg(args)
    presets = PRESET_FAMILIES.get(family)  # the presets a checkpoint's family runs (SD 2.x: SD 1.x's)
    preset = choose_preset(args, supplied or (), presets)
    if family is not None and preset.split("-", 1)[0] != presets:
        raise FlagError.unusable("--model", args.model, f"is {FAMILY_NAMES[family]} checkpoint; preset '{preset}' "
                                                        f"is not (leave --preset out, or give a {presets}- one)")
    blocks = compose_blocks(preset, args)
    check_flags_fit(preset, blocks, args, supplied)
    check_prompt_syntax(args, preset)
    freeu, upscaler = freeu_setting(args, preset), check_upscaler(args, preset)
    variation = check_variation(args, preset)
    if args.transformer is not None and "transformer" not in {spec.name for spec in blocks.expected_components}:
        raise FlagError.unsupported("--transformer", preset, ["FLUX.1"])
    sampling = sampling_changes(args)
    if sampling and preset.startswith("flux"):  # flow matching: the model predicts the velocity
        raise FlagError.unsupported("--zero-snr" if args.prediction_type is None else "--prediction-type", preset,
                                    ["SD 1.x / 2.x", "SDXL"])
    scheduler = scheduler_class(args.scheduler)
    if scheduler is not None:  # else the model's, checked once loaded
        check_schedule(args, scheduler)
    hires = None
    if getattr(args, "hires", None) is not None:
        if not preset.endswith("-text2image"):
            raise FlagError.unsupported("--hires", preset, ["text2image"])
        # with adapters, the auto preset's image-to-image: they act on the second pass too, as A1111's do
        second = "-auto" if args.controlnet or args.ip_adapter else "-image2image"
        hires = compose_blocks(preset.replace("-text2image", second), args)
    if checkpoint:
        model = config_repo(family, args.config and local_or_repo("--config", args.config, "config repo"), checkpoint)
    else:
        model = resolve_model(args.model, preset)
    return Plan(blocks=blocks, model=model, checkpoint=checkpoint, transformer=weights_file("--transformer", args.transformer),
                vae=weights_file("--vae", args.vae),
                controlnets=[controlnet_source(value) for value in values_of(args, "--controlnet")],
                ip_adapter=ip_adapter_source(args.ip_adapter, args.ip_adapter_encoder is not None),
                ip_adapter_encoder=args.ip_adapter_encoder and image_encoder_arg(args.ip_adapter_encoder),
                redux=None if args.redux is None else local_or_repo("--redux", args.redux, "FLUX.1 Redux"),
                loras=lora_sources(args.lora), embeddings=embedding_sources(args.embedding),
                scheduler=scheduler,
                guider=make_guider(args.guider, args.guidance_scale), device=pick_device(args.device), hires=hires,
                sampling={**scheduler_settings(args.scheduler), **sampling, **schedule_changes(args)},
                clip_skip=clip_skip_input(args.clip_skip, preset), freeu=freeu,
                hires_upscaler=upscaler, variation=variation)


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


def several_controlnets(model, nets: list):
    """The ControlNets used together: ``MultiControlNetModel``, or ``FluxMultiControlNetModel`` for FLUX.1's."""
    from ..components import models

    return getattr(models, "FluxMultiControlNetModel" if model.__name__.startswith("Flux") else "MultiControlNetModel")(nets)


def add_adapters(pipe, plan: Plan, args) -> None:
    """Load the ControlNets, the IP-Adapter, Redux, the LoRAs and the embeddings the flags name; their errors name
    the flag."""
    if plan.controlnets:
        model = next(spec.type_hint for spec in plan.blocks.expected_components if spec.name == "controlnet")
        nets = []
        for source, value in zip(plan.controlnets, values_of(args, "--controlnet")):
            try:  # ControlNetModel, or FluxControlNetModel for FLUX.1
                if is_weights_file(source) and model.__name__.startswith("Flux"):  # its config read off the file
                    nets.append(model.from_single_file(source))
                elif is_weights_file(source):  # one file: its encoder's config is the model's UNet's
                    nets.append(model.from_single_file(source, config=plan.model))
                else:
                    nets.append(model.from_pretrained(source))
            except FlagError:
                raise
            except (DiffblocksError, OSError, ValueError) as err:
                raise FlagError.failed("--controlnet", value, err) from err
        with quiet():
            pipe.update_components(controlnet=nets[0] if len(nets) == 1 else several_controlnets(model, nets))
    if plan.ip_adapter is not None:
        source, subfolder, weight_name = plan.ip_adapter
        encoder = None
        if plan.ip_adapter_encoder is not None:
            try:
                if os.path.isfile(plan.ip_adapter_encoder):  # one file, as ComfyUI's clip_vision folder keeps them
                    from ..components.clip_vision_files import load_clip_vision_file

                    encoder = load_clip_vision_file(plan.ip_adapter_encoder)
                else:
                    encoder = ComponentSpec("image_encoder", LazyClass(
                        "transformers", "CLIPVisionModelWithProjection"), repo=plan.ip_adapter_encoder).load()
            except (DiffblocksError, OSError, ValueError) as err:
                raise FlagError.failed("--ip-adapter-encoder", args.ip_adapter_encoder, err) from err
        try:
            pipe.loader.load_ip_adapter(source, subfolder=subfolder, weight_name=weight_name, image_encoder=encoder)
        except (DiffblocksError, OSError, ValueError) as err:
            raise FlagError.failed("--ip-adapter", args.ip_adapter, err) from err
        if args.ip_adapter_scale is not None:
            pipe.loader.set_ip_adapter_scale(args.ip_adapter_scale)
    if plan.redux is not None:
        try:
            pipe.loader.load_redux(plan.redux)
        except (DiffblocksError, OSError, ValueError) as err:
            raise FlagError.failed("--redux", args.redux, err) from err
    names = []
    for (source, weight_name, _), value in zip(plan.loras, args.lora or []):
        try:
            names.append(pipe.loader.load_lora_weights(source, weight_name=weight_name, adapter_name=f"lora_{len(names)}"))
        except (DiffblocksError, OSError, ValueError) as err:
            raise FlagError.failed("--lora", value, err) from err
    if names:
        pipe.loader.set_adapters(names, [weight for _, _, weight in plan.loras])
    for (path, token), value in zip(plan.embeddings, args.embedding or []):
        try:
            pipe.loader.load_textual_inversion(path, token=token)
        except (DiffblocksError, OSError, ValueError) as err:
            raise FlagError.failed("--embedding", value, err) from err


def add_transformer(pipe, plan: Plan, args) -> None:
    """Load ``--transformer`` (Black Forest Labs' layout, or diffusers' with the model's config) into the pipeline."""
    from ..components.models import FluxTransformer2DModel

    try:
        try:
            transformer = FluxTransformer2DModel.from_single_file(plan.transformer)
        except ConfigError:  # diffusers' layout: the model's own transformer config describes it
            transformer = FluxTransformer2DModel.from_single_file(plan.transformer, config=plan.model)
        with quiet():
            pipe.update_components(transformer=transformer)
    except (DiffblocksError, OSError, ValueError) as err:
        raise FlagError.failed("--transformer", args.transformer, err) from err


def add_vae(pipe, plan: Plan, args) -> None:
    """Load ``--vae`` (the original layout or diffusers'), with the model's VAE config, into the pipeline."""
    from ..components.models import AutoencoderKL

    try:
        vae = AutoencoderKL.from_single_file(plan.vae, config=plan.model)
        with quiet():
            pipe.update_components(vae=vae)
    except (DiffblocksError, OSError, ValueError) as err:
        raise FlagError.failed("--vae", args.vae, err) from err


def build_pipeline(args, plan: Plan):
    """Load the planned pipeline with its adapters, scheduler and guider, on the planned device."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    pipe = plan.blocks.init_pipeline(plan.model)
    if plan.checkpoint is not None:
        try:
            pipe.load_single_file(plan.checkpoint)
        except (DiffblocksError, OSError, ValueError) as err:
            raise FlagError.failed("--model", args.model, err) from err
        if pipe.components.get("vae") is None and plan.vae is None:  # the shipped configs hold no weights
            raise FlagError.unusable("--model", args.model, "holds no VAE (it was shared without one): give --vae FILE")
    else:  # not the models that files replace (a FLUX.1 transformer is 24 GB in bfloat16)
        replaced = {name for name, file in (("transformer", plan.transformer), ("vae", plan.vae)) if file}
        pipe.load_components([n for n in pipe.pretrained_component_names
                              if n not in replaced and pipe.get_component_spec(n).repo is not None])
    if plan.transformer is not None:
        add_transformer(pipe, plan, args)
    if plan.vae is not None:
        add_vae(pipe, plan, args)
    add_adapters(pipe, plan, args)
    if plan.freeu is not None:
        pipe.unet.enable_freeu(**plan.freeu)
    if getattr(args, "vae_tiling", False) and pipe.components.get("vae") is not None:
        pipe.vae.enable_tiling()
    with quiet():
        if plan.scheduler is not None or plan.sampling:
            scheduler = plan.scheduler or type(pipe.scheduler)
            check_schedule(args, scheduler)
            pipe.update_components(scheduler=scheduler.from_config({**pipe.scheduler.config, **plan.sampling}))
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


def check_prompts(args) -> None:
    """One or more ``--prompt``; Redux, whose images are the prompt, takes at most one and runs without."""
    redux = args.redux is not None or (args.preset or "").endswith("-redux")
    if not redux and not args.prompt:
        held = f" ({args.from_image} holds none)" if getattr(args, "from_image", None) else ""
        raise FlagError.needs("diffblocks run", "--prompt", f"only --redux runs without one{held}")
    if redux and len(args.prompt or []) > 1:
        raise FlagError.bad_value("--prompt", "given once with --redux (the prompt read with the Redux image)",
                                  args.prompt)


def check_prompt_syntax(args, preset: str) -> None:
    """The prompts read with A1111's syntax (SD's and SDXL's, unless ``--plain-prompts``) parse: an unbalanced
    bracket is one error naming the flag and the place, before anything loads."""
    from ..blocks.prompt_weighting import parse_prompt
    from ..components.errors import PromptSyntaxError

    if preset.startswith("flux") or getattr(args, "plain_prompts", False):
        return
    for flag in ("--prompt", "--negative-prompt"):
        for prompt in values_of(args, flag):
            try:
                parse_prompt(prompt)
            except PromptSyntaxError as err:
                raise FlagError.bad_value(flag, f"a prompt in A1111's syntax ({err}; --plain-prompts reads it as "
                                                "plain text)", prompt) from err


def run(args) -> int:
    """``diffblocks run``: render the prompts (one image each, tiled when several) to ``--out``."""
    import torch

    start = time.time()
    if args.from_image is not None:
        infotext.apply(args, args.from_image)
    args.seed = 0 if args.seed is None else args.seed
    check_numbers(args)
    check_pairs(args)
    check_controlnet_counts(args)
    check_prompts(args)
    check_hires(args)
    out = output_path(args.out)
    inputs = {FLAG_INPUTS[flag]: single([open_image(flag, path) for path in values_of(args, flag)] or None)
              for flag in IMAGE_FLAGS}
    plan = plan_run(args)
    pipe = build_pipeline(args, plan)
    for flag in ("--prompt", "--negative-prompt", "--height", "--width", "--steps", "--strength", "--controlnet-scale",
                 "--control-mode", "--distilled-guidance"):
        inputs[FLAG_INPUTS[flag]] = single(value_of(args, flag))
    inputs["clip_skip"] = plan.clip_skip
    inputs = {k: v for k, v in inputs.items() if v is not None}
    generators = [torch.Generator().manual_seed(args.seed) for _ in args.prompt or [None]]
    if plan.variation is not None:  # each image's noise, drawn from its generator, turned towards the variation's
        inputs["latents"] = variation_latents(pipe, generators, inputs, plan.variation)
    render = pipe if plan.hires is None else HiresFix(args, plan, pipe)
    images = render(generator=generators, output_type="pil", output="images", **inputs)
    picture = grid(images, args.rows, args.upscale) if len(images) > 1 or args.upscale > 1 else images[0]
    size = images[0].size if plan.hires is None else render.first_size  # A1111's Size: the first pass's
    infotext.save(picture, out, infotext.infotext(args, pipe, plan.blocks, size, inputs))
    w, h = images[0].size
    print(f"wrote {out.resolve()} ({len(images)} image(s) of {w}x{h} in {time.time() - start:.1f}s)")
    return 0


def add_parser(commands) -> None:
    """Add the ``run`` subcommand and its flags to ``commands`` (an argparse subparsers action)."""
    r = commands.add_parser("run", help="render prompts with a preset (default: the embedded digits model)")
    r.add_argument("--prompt", action="append", help="what to draw; repeat for several images (optional with --redux)")
    r.add_argument("--negative-prompt", help="what to steer away from")
    r.add_argument("--plain-prompts", action="store_true", help=PLAIN_PROMPTS_HELP)
    r.add_argument("--preset", help=f"one of: {', '.join(PRESETS)}; or sd15 / sdxl to pick the workflow from the "
                                    "flags (default: sd15)")
    r.add_argument("--model", help="model folder or Hub repo, or an SD 1.x / 2.x / SDXL checkpoint file as A1111 and ComfyUI "
                                   "keep them (default: the embedded tiny digits model)")
    r.add_argument("--config", metavar="PATH_OR_REPO", help=CONFIG_HELP)
    r.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    r.add_argument("--seed", type=int, help="noise seed, the same for every prompt (default 0)")
    r.add_argument("--variation-seed", type=int, metavar="SEED", help=VARIATION_SEED_HELP)
    r.add_argument("--variation-strength", type=float, metavar="STRENGTH", help=VARIATION_STRENGTH_HELP)
    r.add_argument("--guidance-scale", type=float, help="guidance strength (default: the guider's)")
    r.add_argument("--guider", help=f"one of: {', '.join(GUIDERS)} (default: cfg)")
    r.add_argument("--distilled-guidance", type=float, metavar="SCALE", help=DISTILLED_HELP)
    r.add_argument("--scheduler", help=f"one of: {', '.join(SCHEDULER_NAMES)}, or a scheduler class name "
                                       "(default: the model's)")
    r.add_argument("--schedule-type", help=SCHEDULE_HELP)
    r.add_argument("--clip-skip", type=int, metavar="N", help=CLIP_SKIP_HELP)
    r.add_argument("--prediction-type", help=SAMPLING_HELP)
    r.add_argument("--zero-snr", action="store_true", help=ZERO_SNR_HELP)
    r.add_argument("--freeu", metavar="B1,B2,S1,S2", help=FREEU_HELP)
    r.add_argument("--freeu-version", type=int, choices=(1, 2), help=FREEU_VERSION_HELP)
    r.add_argument("--vae-tiling", action="store_true", help=VAE_TILING_HELP)
    r.add_argument("--height", type=int, help="image height in pixels, a multiple of 8 (default: the model's)")
    r.add_argument("--width", type=int, help="image width in pixels, a multiple of 8 (default: the model's)")
    r.add_argument("--image", help="input image (image-to-image; inpaint with --mask-image)")
    r.add_argument("--mask-image", help="inpainting mask, white where the image is repainted")
    r.add_argument("--strength", type=float, help="how much of --image is repainted, in (0, 1] (default: the preset's)")
    r.add_argument("--controlnet", metavar="PATH_OR_REPO", action="append",
                   help="a ControlNet model folder or Hub repo; repeat to use several together")
    r.add_argument("--control-image", action="append",
                   help="the image the ControlNet follows (edges, depth, pose...); one per --controlnet")
    r.add_argument("--controlnet-scale", type=float, action="append",
                   help="how strongly the ControlNet steers (default 1.0); once for all, or once per --controlnet")
    r.add_argument("--control-mode", type=int, action="append",
                   help="FLUX.1 Union ControlNets: which control the image is, as its model card numbers them "
                        "(InstantX's: 0 canny, 1 tile, 2 depth, ...); once per --controlnet when several")
    r.add_argument("--ip-adapter", metavar="PATH_OR_REPO", help="an IP-Adapter weights file with image_encoder/ "
                   "beside it, or REPO/SUBFOLDER/FILE on the Hub (e.g. h94/IP-Adapter/models/ip-adapter_sd15.bin)")
    r.add_argument("--ip-adapter-encoder", metavar="PATH_OR_REPO",
                   help="the IP-Adapter's CLIP image encoder when it is not beside the weights: a folder, a Hub repo "
                        "(XLabs' FLUX.1 adapters: openai/clip-vit-large-patch14) or one .safetensors file as ComfyUI's "
                        "clip_vision folder keeps them")
    r.add_argument("--ip-adapter-image", help="the image whose look the IP-Adapter carries over")
    r.add_argument("--ip-adapter-scale", type=float, help="how strongly the IP-Adapter steers (default 1.0)")
    r.add_argument("--redux", metavar="PATH_OR_REPO", help="FLUX.1 Redux (e.g. black-forest-labs/FLUX.1-Redux-dev): "
                   "--redux-image becomes the prompt (preset flux-redux, or --preset flux)")
    r.add_argument("--redux-image", help="the picture FLUX.1 Redux makes variations of")
    r.add_argument("--lora", action="append", metavar="SOURCE[:WEIGHT]", help=LORA_HELP)
    r.add_argument("--embedding", action="append", metavar="FILE[:TOKEN]", help=EMBEDDING_HELP)
    r.add_argument("--transformer", metavar="FILE", help=TRANSFORMER_HELP)
    r.add_argument("--vae", metavar="FILE", help=VAE_HELP)
    r.add_argument("--from-image", metavar="FILE", help="take what the other flags leave out from the parameters an image "
                   "holds (A1111's or diffblocks run's PNG, JPEG or WebP): prompt, negative prompt, steps, sampler, CFG "
                   "scale, seed, size, hires pass")
    r.add_argument("--hires", type=float, metavar="SCALE", help=HIRES_HELP)
    r.add_argument("--hires-strength", type=float, help=HIRES_STRENGTH_HELP)
    r.add_argument("--hires-steps", type=int, help=HIRES_STEPS_HELP)
    r.add_argument("--hires-upscaler", metavar="NAME", help=HIRES_UPSCALER_HELP)
    r.add_argument("--rows", type=int, default=1, help="rows of the grid when there are several prompts")
    r.add_argument("--upscale", type=int, default=1, help="enlarge the saved picture this many times")
    r.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    r.add_argument("--out", default="out.png", help="the image file to write, in an existing folder (default out.png)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=run)
