"""CLIP vision encoders kept as one file, as ComfyUI's ``models/clip_vision/`` holds them
(``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors``, ``CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors``: the image
encoders of IP-Adapter's repo, renamed): transformers' ``CLIPVisionModelWithProjection`` weights without a config. The
config is the shipped one (``family_configs/clip-vision-*``: OpenAI's ViT-L/14 and LAION's ViT-H/14 and ViT-bigG/14)
whose widths and depth the file's tensors have.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from . import checkpoints
from .errors import ConfigError

PATCH_EMBEDDING = "vision_model.embeddings.patch_embedding.weight"
PROJECTION = "visual_projection.weight"
LAYER = "vision_model.encoder.layers."


def clip_vision_config(path: str | os.PathLike) -> dict[str, Any]:
    """The shipped config of the CLIP vision encoder in file ``path``: the one with its width, patch size, depth and
    projection, as its tensors' shapes give them.

    Raises:
        ConfigError: the file is no CLIP vision encoder in transformers' layout, or one of another size.
    """
    from .models.weights import tensor_shapes

    shapes = tensor_shapes(path)
    if PATCH_EMBEDDING not in shapes or PROJECTION not in shapes:
        raise ConfigError.not_clip_vision(str(path), "it has no " + " and no ".join(
            key for key in (PATCH_EMBEDDING, PROJECTION) if key not in shapes))
    width, _, patch, _ = shapes[PATCH_EMBEDDING]
    layers = len({key[len(LAYER):].split(".", 1)[0] for key in shapes if key.startswith(LAYER)})
    found = {"hidden_size": width, "patch_size": patch, "num_hidden_layers": layers,
             "projection_dim": shapes[PROJECTION][0]}
    for folder in sorted(checkpoints.FAMILY_CONFIGS.glob("clip-vision-*")):
        config = json.loads((folder / "config.json").read_text())
        if all(config.get(key) == value for key, value in found.items()):
            return config
    raise ConfigError.not_clip_vision(str(path), "no shipped config has its size (" + ", ".join(
        f"{key} {value}" for key, value in found.items()) + "); give a folder with its config.json")


def load_clip_vision_file(path: str | os.PathLike, torch_dtype: torch.dtype | None = None):
    """A ``CLIPVisionModelWithProjection`` from one file (see the module), on the CPU.

    Raises:
        MissingFileError, CorruptedFileError: the file. ConfigError: see :func:`clip_vision_config`.
    """
    import transformers

    from .models.modeling import empty_weights
    from .models.weights import read_weights, single_file

    file = single_file(path)
    settings = transformers.CLIPVisionConfig(**clip_vision_config(file))
    with empty_weights():
        model = transformers.CLIPVisionModelWithProjection(settings)
    checkpoints.fill(model, read_weights([file]), torch_dtype or torch.get_default_dtype(), str(Path(file)))
    return model.eval()
