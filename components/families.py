"""Which family of models (``sd15``, ``sd2``, ``sdxl``; ``flux`` for a FLUX.1 ControlNet or model folder) a file is
made for, read off its tensors' names and shapes:
a ControlNet's and a LoRA's by their cross-attention width (the text embeddings they attend to: 768 wide for SD 1.x,
1024 for 2.x, 2048 for SDXL), an embedding's by its vectors' width (the text encoder's: 768, 1024, or SDXL's
``clip_l``/``clip_g`` pair), the widths as the shipped configs (``family_configs/``) give them. A checkpoint's family
is :func:`checkpoints.file_family`; a diffusers model folder's, the pipeline its ``model_index.json`` names
(:func:`folder_family`).
"""

from __future__ import annotations

import json
import os
import re

from . import checkpoints
from .errors import ConfigError, TextualInversionError

CROSS_ATTENTION_KEY = re.compile(r"attn2[._]to_k")  # the key projection of cross-attention, in every naming
LORA_DOWN = ("lora_down.weight", "lora_A.weight", "lora.down.weight")  # (rank, in_features), in each LoRA format


def controlnet_family(file: str | os.PathLike) -> str:
    """The family a ControlNet file is for (its encoder is that family's UNet's; ``flux`` for FLUX.1's: a trunk of
    transformer blocks).

    Raises:
        ConfigError: the file has no cross-attention, or a width no shipped family has.
    """
    from .models.weights import tensor_shapes

    shapes = tensor_shapes(file)
    if "controlnet_blocks.0.weight" in shapes and any(k.startswith(("double_blocks.", "transformer_blocks."))
                                                      for k in shapes):  # XLabs' layout, or diffusers'
        return "flux"
    widths = {shape[-1] for key, shape in shapes.items() if key.endswith("attn2.to_k.weight")}
    family = _by_cross_attention(widths)
    if family is None:
        raise ConfigError.controlnet_base(str(file), sorted(widths), {f: w for w, f in _cross_attention_widths().items()})
    return family


def controlnet_config_repo(file: str | os.PathLike) -> str:
    """The shipped configs of the family a ControlNet file is for (:func:`controlnet_family`)."""
    return str(checkpoints.FAMILY_CONFIGS / controlnet_family(file))


def lora_family(file: str | os.PathLike) -> str | None:
    """The family a LoRA file is for, when it adapts the UNet's cross-attention (kohya's, diffusers' and PEFT's
    names alike; LyCORIS' LoHa and LoKr too); None for one that does not (a text-encoder-only LoRA, FLUX.1's) or of
    another width."""
    from .models.weights import tensor_shapes

    shapes = tensor_shapes(file)
    widths = {shape[-1] for key, shape in shapes.items()
              if CROSS_ATTENTION_KEY.search(key) and key.endswith(LORA_DOWN + ("hada_w1_b",))}
    for key, shape in shapes.items():  # a LoKr's: the product of its two factors' widths
        if CROSS_ATTENTION_KEY.search(key) and key.endswith((".lokr_w1", ".lokr_w1_b")):
            layer = key.rpartition(".")[0]
            second = shapes.get(f"{layer}.lokr_w2", shapes.get(f"{layer}.lokr_w2_b"))
            if second is not None and len(second) == 2:
                widths.add(shape[-1] * second[-1])
    return _by_cross_attention(widths)


def embedding_family(path: str | os.PathLike) -> str:
    """The family whose text encoders a textual-inversion embedding file fits.

    Raises:
        TextualInversionError: not an embedding, or one as wide as no family's text encoder.
    """
    from .textual_inversion import read_embedding

    _, embeddings, label = read_embedding(path)
    if "" not in embeddings:
        return "sdxl"  # clip_l and clip_g
    widths = {_config(family, "text_encoder")["hidden_size"]: family for family in ("sd15", "sd2")}
    width = embeddings[""].shape[-1]
    if width not in widths:
        raise TextualInversionError.no_family(label, width, widths)
    return widths[width]


# a diffusers folder's pipeline class (model_index.json's "_class_name") -> its family, the first prefix that fits
PIPELINE_FAMILIES = (("Flux", "flux"), ("StableDiffusionXL", "sdxl"), ("StableDiffusion", "sd15"))


def folder_family(folder: str | os.PathLike) -> str | None:
    """The family of a diffusers model folder, by the pipeline its ``model_index.json`` names (``FluxPipeline``:
    ``flux``; ``StableDiffusionXL...``: ``sdxl``; ``StableDiffusion...``: ``sd15``, or ``sd2`` when its text
    encoder is as wide as 2.x's); None for another pipeline, or a folder without one."""
    from pathlib import Path

    try:
        name = json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name", "")
    except (OSError, ValueError, AttributeError):
        return None
    family = next((family for prefix, family in PIPELINE_FAMILIES if str(name).startswith(prefix)), None)
    if family == "sd15":
        try:
            width = json.loads((Path(folder) / "text_encoder" / "config.json").read_text()).get("hidden_size")
        except (OSError, ValueError, AttributeError):
            width = None
        return "sd2" if width == _config("sd2", "text_encoder")["hidden_size"] else family
    return family


def _by_cross_attention(widths: set[int]) -> str | None:
    known = _cross_attention_widths()
    return known.get(next(iter(widths))) if len(widths) == 1 else None


def _cross_attention_widths() -> dict[int, str]:
    return {_config(family, "unet")["cross_attention_dim"]: family for family in checkpoints.PRESET_FAMILIES}


def _config(family: str, part: str) -> dict:
    return json.loads((checkpoints.FAMILY_CONFIGS / family / part / "config.json").read_text())
