"""The generation parameters written into ``diffblocks run``'s images, in A1111's "infotext" layout (the prompt,
``Negative prompt: ...``, then ``Key: value`` pairs; a PNG's ``parameters`` text, a JPEG's or WebP's EXIF
UserComment), which A1111, Forge, Civitai and image browsers read back. ``--from-image`` reads them, and the
settings of a ComfyUI image's text-to-image graph (its ``prompt`` text: ``comfy``) as the same."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from ..components.errors import FlagError
from ..components.files import WEIGHTS_SUFFIXES
from . import comfy
from .choices import SCHEDULE_NAMES, SCHEDULE_TYPES, sampling_changes, schedule_key
from .files import lora_sources
from .flags import HIRES_STRENGTH, freeu_setting
from .hashes import file_sha256
from .hires import LATENT_UPSCALERS, slug, upscaler_name
from .networks import lora_hashes, lora_tags

# one "Key: value" of the last line; a value with a comma in it is quoted (A1111's own pattern)
PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')

# an extra network in an A1111 prompt (<lora:NAME:WEIGHT>, <hypernet:NAME:WEIGHT>, ...): A1111 takes it out before
# encoding the prompt
EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")

FREEU_FACTORS = ("b1", "b2", "s1", "s2")

# A1111's names of the samplers our schedulers are (FLUX.1's flow-matching Euler is Forge's "Euler")
SAMPLERS = {"DDIMScheduler": "DDIM", "DDPMScheduler": "DDPM", "EulerDiscreteScheduler": "Euler",
            "EulerAncestralDiscreteScheduler": "Euler a", "DPMSolverMultistepScheduler": "DPM++ 2M",
            "UniPCMultistepScheduler": "UniPC", "LCMScheduler": "LCM", "FlowMatchEulerDiscreteScheduler": "Euler",
            "HeunDiscreteScheduler": "Heun", "LMSDiscreteScheduler": "LMS", "KDPM2DiscreteScheduler": "DPM2",
            "KDPM2AncestralDiscreteScheduler": "DPM2 a",
            "dpm++-sde": "DPM++ 2M SDE"}  # a --scheduler short name: DPM++ with the SDE algorithm


def infotext(args, pipe, blocks, size: tuple[int, int], inputs: dict[str, Any], prompt: str | None = None,
             seed: int | None = None) -> str:
    """What made the first image: its prompt (with its LoRAs' tags, as A1111 writes them), negative prompt, steps,
    sampler, guidance (FLUX.1's distilled guidance too), seed, size, model and VAE (and their files' hashes), LoRA
    hashes, FreeU, and the image-to-image strength or the hires pass when there was one. ``prompt`` and ``seed`` (a
    batch item's) stand in for ``args``'; the inputs' negative prompt for ``args``' too."""
    from .. import __version__

    steps = inputs.get("num_inference_steps")
    if steps is None:
        steps = next((p.default for p in blocks.inputs if p.name == "num_inference_steps"), None)
    scheduler = type(pipe.components.get("scheduler")).__name__
    cfg = getattr(pipe.components.get("guider"), "guidance_scale", None)
    distilled = None
    if "guidance_scale" in blocks.input_names:  # FLUX.1's: the guidance the model is conditioned on, as Forge writes it
        distilled = inputs.get("guidance_scale", next(p.default for p in blocks.inputs if p.name == "guidance_scale"))
    config = getattr(pipe.components.get("scheduler"), "config", {})
    # the schedule type asked for, else the sigma spacing the scheduler has (its own trailing timesteps are not named:
    # a zero-SNR model's scheduler has them too)
    spacing = schedule_key(getattr(args, "schedule_type", None)) or next(
        (name for name, change in SCHEDULE_TYPES.items()
         if "timestep_spacing" not in change and all(config.get(k) == v for k, v in change.items())), None)
    if scheduler == "DPMSolverMultistepScheduler" and config.get("algorithm_type") == "sde-dpmsolver++":
        scheduler = "dpm++-sde"
    fields = {"Steps": steps, "Sampler": SAMPLERS.get(scheduler, scheduler),
              "Schedule type": spacing and SCHEDULE_NAMES[spacing],  # A1111 1.9's field ("Karras")
              "CFG scale": cfg if distilled is not None else inputs.get("guidance_scale", cfg),
              "Distilled CFG Scale": distilled, "Seed": args.seed if seed is None else seed,
              "Variation seed": getattr(args, "variation_seed", None),
              "Variation seed strength": getattr(args, "variation_strength", None),
              "Size": f"{size[0]}x{size[1]}", "Model hash": short_file_hash(args.model),
              "Model": model_name(args.model),
              "VAE hash": short_file_hash(getattr(args, "vae", None)),
              "VAE": Path(args.vae).name if getattr(args, "vae", None) else None,
              "Clip skip": args.clip_skip if (getattr(args, "clip_skip", None) or 1) > 1 else None}  # A1111's way
    if getattr(args, "prediction_type", None) is not None or getattr(args, "zero_snr", False):
        changes = sampling_changes(args)  # what the flags set: the checkpoint's own is read off it again
        fields.update({"Prediction type": changes.get("prediction_type"),
                       "Zero SNR": changes.get("rescale_betas_zero_snr")})
    freeu = freeu_setting(args, args.preset or "")
    if freeu is not None:  # as Forge writes its FreeU (FreeU_V2: our version is said when it is the paper's)
        fields.update({"freeu_enabled": True, **{f"freeu_{k}": freeu[k] for k in FREEU_FACTORS},
                       "freeu_version": 1 if freeu["version"] == 1 else None})
    if "strength" in inputs:
        fields["Denoising strength"] = inputs["strength"]
    if getattr(args, "hires", None) is not None:
        fields.update({"Denoising strength": HIRES_STRENGTH if args.hires_strength is None else args.hires_strength,
                       "Hires upscale": args.hires, "Hires steps": getattr(args, "hires_steps", None),
                       "Hires upscaler": upscaler_name(getattr(args, "hires_upscaler", None)) or "Lanczos"})
    loras = lora_sources(getattr(args, "lora", None))
    fields["Lora hashes"] = lora_hashes(loras)
    fields["Version"] = f"diffblocks {__version__}"
    prompt = (args.prompt or [""])[0] if prompt is None else prompt
    tags = lora_tags(loras)  # where A1111's prompts hold them (and it takes them out again)
    return compose(f"{prompt} {tags}" if tags else prompt, inputs.get("negative_prompt", args.negative_prompt), fields)


def compose(prompt: str, negative: str | None, fields: dict[str, Any]) -> str:
    """A1111's infotext: the prompt, ``Negative prompt: ...`` when there is one, then the fields that have a value
    (quoted, as A1111 quotes them, when they hold a comma, a colon or a line break)."""
    lines = [prompt, *([f"Negative prompt: {negative}"] if negative else [])]
    lines.append(", ".join(f"{key}: {_quoted(format(value, 'g') if isinstance(value, float) else str(value))}"
                           for key, value in fields.items() if value is not None))
    return "\n".join(lines)


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def read(path: str) -> str:
    """The parameters an image holds (a PNG's ``parameters`` text, a JPEG's or WebP's EXIF UserComment; or its
    ComfyUI graph's, with notes on stderr of what they leave out).

    Raises:
        FlagError: no such image, or it holds none.
    """
    from PIL import ExifTags, Image, UnidentifiedImageError

    try:
        with Image.open(Path(path).expanduser()) as image:
            text = image.info.get("parameters") or image.getexif().get_ifd(ExifTags.IFD.Exif).get(
                ExifTags.Base.UserComment)
            graph_text = image.info.get("prompt") if not text else None  # ComfyUI's graph
    except (OSError, UnidentifiedImageError) as err:
        raise FlagError.unusable("--from-image", path, f"cannot read the image ({err})") from err
    if graph_text:
        try:
            graph = json.loads(graph_text)
        except ValueError as err:
            raise FlagError.unusable("--from-image", path, f"holds a 'prompt' text that is not JSON ({err})") from err
        try:
            prompt, negative, fields, notes = comfy.settings(graph)
        except ValueError as err:
            raise FlagError.unusable("--from-image", path, str(err)) from err
        for note in notes:
            print(f"note: {path}: {note}", file=sys.stderr)
        return compose(prompt, negative, fields)
    if isinstance(text, bytes):
        text = text[8:].decode("utf-16-be" if text.startswith(USER_COMMENT_PREFIX) else "utf-8", errors="replace")
    if not text or not text.strip():
        raise FlagError.unusable("--from-image", path, "holds no generation parameters (A1111's, ComfyUI's, or diffblocks "
                                 "run's)")
    return text


def parse(text: str) -> tuple[str, str | None, dict[str, str]]:
    """``(prompt, negative prompt or None, {key: value})`` of an infotext, read as A1111 reads it."""
    *lines, last = text.strip().split("\n")
    if len(PARAM.findall(last)) < 3:  # no parameters line: all of it is prompt
        lines, last = [*lines, last], ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    fields = {key.strip(): value.strip().strip('"') for key, value in PARAM.findall(last)}
    return "\n".join(prompt).strip(), "\n".join(negative).strip() if in_negative else None, fields


def apply(args, path: str) -> None:
    """Fill the flags left out of ``diffblocks run`` from the parameters of the image at ``path``: prompt, negative
    prompt, steps, sampler (not for FLUX.1: its Euler is flow matching), CFG scale (and FLUX.1's Distilled CFG Scale),
    seed, size (the first pass's), clip skip, the hires pass (its scale, strength and steps) and what the model
    predicts when it was set by hand (``Prediction type``, ``Zero SNR``: ours, or a ComfyUI graph's
    ModelSamplingDiscrete), FreeU (Forge's ``freeu_*`` fields: its FreeU_V2 unless ``freeu_version`` says 1; ours,
    or a ComfyUI graph's FreeU node). The prompt's extra networks
    (``<lora:ink:0.8>``) are taken out of it, as A1111 does, and named on stderr: give them as ``--lora``. The model
    is not taken: give ``--model``; nor the VAE and ControlNets the image names, named on stderr: give ``--vae``
    and ``--controlnet``."""
    prompt, negative, fields = parse(read(path))
    networks = [match.group(0) for match in EXTRA_NETWORK.finditer(prompt)]
    if networks and args.prompt is None:
        prompt = EXTRA_NETWORK.sub("", prompt).rstrip()  # the tags diffblocks run writes follow a space
        print(f"note: the prompt of {path} names {', '.join(networks)}, taken out of it as A1111 does; give a LoRA "
              f"as --lora FILE:WEIGHT", file=sys.stderr)
    samplers = {name: scheduler for scheduler, name in reversed(SAMPLERS.items())}  # "Euler": EulerDiscreteScheduler
    sampler, schedule = _schedule(fields, path)
    size = re.fullmatch(r"(\d+)x(\d+)", fields.get("Size", ""))
    found = {"prompt": [prompt] if prompt else None, "negative_prompt": negative,
             "steps": _number(fields, "Steps", int), "guidance_scale": _number(fields, "CFG scale", float),
             "seed": _number(fields, "Seed", int), "width": int(size.group(1)) if size else None,
             "height": int(size.group(2)) if size else None, "hires": _number(fields, "Hires upscale", float),
             "scheduler": None if (args.preset or "").startswith("flux") else samplers.get(sampler)}
    found["schedule_type"] = schedule if found["scheduler"] else None
    if not (args.preset or "").startswith("flux"):  # FLUX.1 reads CLIP's pooled output alone
        found["clip_skip"] = _number(fields, "Clip skip", int)
    if not (args.preset or "").startswith("flux"):  # what the model predicts, when set by hand (ours, ComfyUI's)
        found["prediction_type"] = fields.get("Prediction type")
        if fields.get("Zero SNR") == "True":
            args.zero_snr = True
    factors = [_number(fields, f"freeu_{k}", float) for k in FREEU_FACTORS]  # Forge's FreeU (ours; ComfyUI's nodes)
    if fields.get("freeu_enabled") == "True" and getattr(args, "freeu", None) is None:
        if (args.preset or "").startswith("flux") or None in factors:
            why = "its factors are not numbers" if None in factors else "FLUX.1 does not take it"
            print(f"note: {path} was drawn with FreeU ({why}); not taken here", file=sys.stderr)
        else:
            args.freeu = ",".join(format(factor, "g") for factor in factors)
            args.freeu_version = _number(fields, "freeu_version", int) or 2
    distilled = _number(fields, "Distilled CFG Scale", float)  # Forge's (and ours) for FLUX.1
    if distilled is not None and (args.preset or "").startswith("flux"):
        found["distilled_guidance"] = distilled
    elif distilled is not None and getattr(args, "distilled_guidance", None) is None:
        print(f"note: {path} was drawn by FLUX.1 at Distilled CFG Scale {distilled:g}; give --preset flux and a "
              "FLUX.1 --model to draw with it", file=sys.stderr)
    modules = [fields[key] for key in sorted(fields) if re.fullmatch(r"Module \d+", key)]
    if modules and getattr(args, "transformer", None) is None:  # Forge's FLUX.1 from files: a transformer and these
        print(f"note: {path} was drawn by Forge with the transformer {fields.get('Model', '?')} and "
              f"{', '.join(modules)}; give the transformer as --transformer FILE and the VAE as --vae FILE (the text "
              "encoders are --model's)", file=sys.stderr)
    if found["hires"] is not None:
        found["hires_strength"] = _number(fields, "Denoising strength", float)
        found["hires_steps"] = _number(fields, "Hires steps", int) or None  # A1111's 0: the first pass's steps
        upscaler = fields.get("Hires upscaler", "Lanczos")
        known = upscaler_name(upscaler)
        latent_flux = known in LATENT_UPSCALERS and (args.preset or "").startswith("flux")
        if getattr(args, "hires", None) is None and (latent_flux or known is None and upscaler.lower() != "none"):
            print(f"note: {path} was enlarged by the {upscaler} upscaler; the hires pass here enlarges by lanczos",
                  file=sys.stderr)
        elif known is not None and not latent_flux:
            found["hires_upscaler"] = slug(known)
    elif args.image is not None:
        found["strength"] = _number(fields, "Denoising strength", float)
    variation = (_number(fields, "Variation seed", int), _number(fields, "Variation seed strength", float))
    if None not in variation and variation[1] > 0:  # A1111 writes them when its strength is above 0
        if args.image is None and not (args.preset or "").startswith("flux"):
            found["variation_seed"], found["variation_strength"] = variation
        else:
            print(f"note: {path} was drawn with A1111's variation seed {variation[0]} (noise of two seeds blended); "
                  "not taken here: it is for SD and SDXL text-to-image", file=sys.stderr)
    for key, what in UNTAKEN.items():
        if fields.get(key):
            print(f"note: {path} was drawn with {what.format(fields[key])}; not taken here", file=sys.stderr)
    if fields.get("VAE") and getattr(args, "vae", None) is None:
        print(f"note: {path} was decoded by the VAE {fields['VAE']}; give it as --vae FILE", file=sys.stderr)
    units = [(_unit_value(value, "model"), _unit_value(value, "module") or "")
             for key, value in fields.items() if CONTROLNET_UNIT.fullmatch(key)]
    units = [(model, module) for model, module in units if model and model.lower() != "none"]
    controlnets = [model for model, module in units if not module.lower().startswith("ip-adapter")]
    adapters = [model for model, module in units if module.lower().startswith("ip-adapter")]
    if controlnets and getattr(args, "controlnet", None) is None:
        print(f"note: {path} was drawn with sd-webui-controlnet's {', '.join(controlnets)}; give each as --controlnet "
              f"FILE --control-image IMAGE", file=sys.stderr)
    if adapters and getattr(args, "ip_adapter", None) is None:  # sd-webui-controlnet runs them as its units
        print(f"note: {path} was drawn with the IP-Adapter {', '.join(adapters)}; give it as --ip-adapter FILE "
              f"--ip-adapter-image IMAGE (and its CLIP vision file as --ip-adapter-encoder)", file=sys.stderr)
    for name, value in found.items():
        if getattr(args, name, None) is None and value is not None:
            setattr(args, name, value)


def _schedule(fields: dict[str, str], path: str) -> tuple[str | None, str | None]:
    """``(sampler, schedule type)`` of the parameters: A1111 1.9's ``Schedule type`` field, or the older sampler
    names that end with it (``DPM++ 2M Karras``); a schedule type not taken is named on stderr."""
    sampler, schedule = fields.get("Sampler"), fields.get("Schedule type")
    for kind in ("karras", "exponential"):  # the older names' suffixes
        if sampler and sampler.lower().endswith(" " + kind):
            sampler, schedule = sampler[:-len(kind) - 1], kind
    if schedule and schedule_key(schedule) is None and schedule.lower() != "automatic":
        print(f"note: {path} was drawn with the {schedule} schedule type; the sampler's own spacing is taken here",
              file=sys.stderr)
    return sampler, schedule_key(schedule)


# A1111's fields that change the image and are not taken -> what the note says of the value
UNTAKEN = {"Hires prompt": "the hires pass's own prompt (it takes the first pass's)",
           "Hires negative prompt": "the hires pass's own negative prompt (it takes the first pass's)",
           "Hires sampler": "the hires pass's own sampler '{}'", "Hires CFG Scale": "the hires pass's own CFG scale {}",
           "Refiner": "SDXL's refiner pass ({}), which diffblocks does not run",
           "ADetailer model": "ADetailer's pass ({}: faces found and painted again)",
           "Emphasis": "A1111's '{}' emphasis (prompt weights are read with its Original one here)",
           "Seed resize from": "A1111's seed resize from {} (noise drawn at that size, then cut)"}


# sd-webui-controlnet's units: "ControlNet 0: \"Module: canny, Model: control_v11p_sd15_canny [d14c016b], ...\""
CONTROLNET_UNIT = re.compile(r"ControlNet( \d+)?")


def _unit_value(unit: str, key: str) -> str | None:
    """The ``key`` (``model``, without A1111's hash; ``module``, its preprocessor) a ControlNet unit gives."""
    found = re.search(rf"\b{key}:\s*([^,\[]+)", unit, flags=re.I)
    return found.group(1).strip() if found else None


def _number(fields: dict[str, str], key: str, kind: type):
    try:
        return kind(fields[key])
    except (KeyError, ValueError):
        return None


def short_file_hash(value: str | None) -> str | None:
    """A1111's ``Model hash`` / ``VAE hash`` of a local weights file: the first 10 hex digits of its sha256
    (remembered across runs: ``hashes``); None for a folder, a Hub name or nothing."""
    path = Path(value).expanduser() if value else None
    if path is None or not path.is_file() or path.suffix.lower() not in WEIGHTS_SUFFIXES:
        return None
    return file_sha256(path)[:10]


def model_name(model: str | None) -> str:
    """The model as A1111 names it: a checkpoint file's stem, a folder's or Hub repo's last part (dots kept:
    ``stable-diffusion-xl-base-1.0``)."""
    if model is None:
        return "embedded"
    path = Path(model)
    return path.stem if path.suffix.lower() in WEIGHTS_SUFFIXES else path.name


USER_COMMENT_PREFIX = b"UNICODE\0"  # EXIF's UserComment in UTF-16, as A1111 writes it (piexif's "unicode")


def save(picture, path: Path, parameters: str) -> None:
    """Write ``picture`` with ``parameters``: a PNG text chunk, or for JPEG and WebP the EXIF UserComment, where A1111
    puts them; other formats as they are."""
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg", ".webp"):
        from PIL import ExifTags, Image

        exif = Image.Exif()
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = USER_COMMENT_PREFIX + parameters.encode("utf-16-be")
        picture.save(path, exif=exif)
        return
    if suffix != ".png":
        picture.save(path)
        return
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if parameters.isascii():
        info.add_text("parameters", parameters)
    else:  # tEXt is Latin-1: a prompt in another script goes in an iTXt chunk (UTF-8), as A1111 writes it
        info.add_itxt("parameters", parameters)
    picture.save(path, pnginfo=info)
