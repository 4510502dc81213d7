"""Flag tables and the checks on flag values that need neither files nor a model."""

from __future__ import annotations

import math
from typing import Any

from ..components.errors import FlagError

# flag -> the pipeline input it sets (to check a preset takes it, and to word the pipeline's errors)
FLAG_INPUTS = {"--prompt": "prompt", "--negative-prompt": "negative_prompt", "--steps": "num_inference_steps",
               "--height": "height", "--width": "width", "--strength": "strength", "--image": "image",
               "--mask-image": "mask_image", "--control-image": "control_image",
               "--controlnet-scale": "controlnet_conditioning_scale", "--control-mode": "control_mode",
               "--ip-adapter-image": "ip_adapter_image", "--redux-image": "redux_image",
               "--distilled-guidance": "guidance_scale",  # FLUX.1's input; --guidance-scale is the guider's
               "--clip-skip": "clip_skip"}  # A1111's count, made the preset's by clip_skip_input
HIRES_STRENGTH = 0.5  # --hires-strength by default, A1111's hires denoising strength
IMAGE_FLAGS = ("--image", "--mask-image", "--control-image", "--ip-adapter-image", "--redux-image")
# a flag that means nothing without another one
NEEDS = [("--strength", "--image"), ("--mask-image", "--image"), ("--control-image", "--controlnet"),
         ("--controlnet", "--control-image"), ("--controlnet-scale", "--controlnet"), ("--control-mode", "--controlnet"),
         ("--ip-adapter-image", "--ip-adapter"), ("--ip-adapter", "--ip-adapter-image"),
         ("--ip-adapter-scale", "--ip-adapter"), ("--ip-adapter-encoder", "--ip-adapter"), ("--redux-image", "--redux"),
         ("--redux", "--redux-image")]


def value_of(args, flag: str) -> Any:
    """The parsed value of ``flag`` (``--mask-image`` -> ``args.mask_image``)."""
    return getattr(args, flag[2:].replace("-", "_"))


def values_of(args, flag: str) -> list:
    """The values of ``flag``: none, one, or each time a repeatable flag was given."""
    value = value_of(args, flag)
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def single(value: Any) -> Any:
    """A repeatable flag given once as its value; given several times, the list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def check_controlnet_counts(args) -> None:
    """One ``--control-image`` per ``--controlnet``; ``--controlnet-scale`` and ``--control-mode`` once for all or
    once per ControlNet."""
    nets = len(values_of(args, "--controlnet"))
    images = len(values_of(args, "--control-image"))
    if nets > 1 and images != nets or nets <= 1 and images > 1:
        raise FlagError.bad_value("--control-image", f"given once per --controlnet ({max(nets, 1)})",
                                  values_of(args, "--control-image"))
    for flag in ("--controlnet-scale", "--control-mode"):
        if len(values_of(args, flag)) not in (0, 1, max(nets, 1)):
            raise FlagError.bad_value(flag, f"given once, or once per --controlnet ({nets})", values_of(args, flag))


def given(args, flag: str) -> bool:
    """Whether ``flag`` was given (flags without a default parse to None when left out)."""
    return value_of(args, flag) is not None


def check_numbers(args) -> None:
    """Counts positive (clip skip too), sizes multiples of 8 (every Stable Diffusion VAE divides by 8), strength in
    (0, 1], scales finite, the distilled guidance not negative."""
    for flag in ("--steps", "--rows", "--upscale"):
        if given(args, flag) and value_of(args, flag) <= 0:
            raise FlagError.bad_value(flag, "a positive number", value_of(args, flag))
    for flag in ("--height", "--width"):
        if given(args, flag) and (value_of(args, flag) <= 0 or value_of(args, flag) % 8):
            raise FlagError.bad_value(flag, "a positive multiple of 8", value_of(args, flag))
    if given(args, "--strength") and not 0 < args.strength <= 1:  # NaN fails this too; 0 would leave no steps
        raise FlagError.bad_value("--strength", "in (0, 1]", args.strength)
    for flag in ("--guidance-scale", "--controlnet-scale", "--ip-adapter-scale"):
        for value in values_of(args, flag):
            if not math.isfinite(value):
                raise FlagError.bad_value(flag, "a finite number", value)
    if getattr(args, "clip_skip", None) is not None and args.clip_skip < 1:
        raise FlagError.bad_value("--clip-skip", "a positive number (A1111's: 1 is CLIP's last layer)", args.clip_skip)
    guidance = getattr(args, "distilled_guidance", None)
    if guidance is not None and not (math.isfinite(guidance) and guidance >= 0):
        raise FlagError.bad_value("--distilled-guidance", "a finite number >= 0 (FLUX.1-dev's is 3.5)", guidance)


def clip_skip_input(clip_skip: int | None, preset: str) -> int | None:
    """The preset's ``clip_skip`` for A1111's Clip skip (1: CLIP's last layer; 2: the one before, as most anime
    SD 1.x models are used): the layers skipped after the last, for SD 1.x / 2.x; SDXL reads the one before the last
    already and counts from there (A1111's 1 and 2 alike: its own). None: the preset's own."""
    if clip_skip is None:
        return None
    skip = clip_skip - (2 if preset.startswith("sdxl") else 1)
    return skip if skip > 0 else None


def freeu_setting(args, preset: str) -> dict[str, Any] | None:
    """``--freeu B1,B2,S1,S2`` and ``--freeu-version`` as ``enable_freeu``'s keywords; None without ``--freeu``.
    Raises ``FlagError`` for anything but four finite numbers, or for FLUX.1 (a transformer: no skip connections)."""
    text, version = getattr(args, "freeu", None), getattr(args, "freeu_version", None)
    if text is None:
        if version is not None:
            raise FlagError.needs("--freeu-version", "--freeu")
        return None
    if preset.startswith("flux"):
        raise FlagError.unsupported("--freeu", preset, ["SD 1.x / 2.x", "SDXL"])
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise FlagError.bad_value("--freeu", "four numbers B1,B2,S1,S2 (the paper's for SD 1.x: 1.5,1.6,0.9,0.2)", text)
    return {**dict(zip(("b1", "b2", "s1", "s2"), numbers)), "version": version or 1}


def check_hires(args) -> None:
    """``--hires`` enlarges (a factor in (1, 8]); ``--hires-strength`` in (0, 1] and ``--hires-steps`` positive, each
    only with ``--hires``."""
    if args.hires is not None and not 1 < args.hires <= 8:  # NaN fails this too
        raise FlagError.bad_value("--hires", "a factor in (1, 8] (the second pass's size over the first's)", args.hires)
    if args.hires_strength is not None and args.hires is None:
        raise FlagError.needs("--hires-strength", "--hires")
    if args.hires_strength is not None and not 0 < args.hires_strength <= 1:
        raise FlagError.bad_value("--hires-strength", "in (0, 1]", args.hires_strength)
    steps = getattr(args, "hires_steps", None)
    if steps is not None and args.hires is None:
        raise FlagError.needs("--hires-steps", "--hires")
    if steps is not None and steps <= 0:
        raise FlagError.bad_value("--hires-steps", "a positive number (the second pass's steps before its strength: "
                                  "20 at 0.5 takes 10)", steps)


# presets whose blocks take a flag by themselves: FLUX.1 Canny / Depth [dev] read the control image, no ControlNet
TAKEN_BY = {"--control-image": "-control"}


def check_pairs(args) -> None:
    """Every flag that means nothing alone comes with the flag it needs (``--strength`` with ``--image``)."""
    for flag, other in NEEDS:
        taken = TAKEN_BY.get(flag)
        if given(args, flag) and not given(args, other) and not (taken and (args.preset or "").endswith(taken)):
            raise FlagError.needs(flag, other)
