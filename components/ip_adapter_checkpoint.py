"""Reading IP-Adapter checkpoints in the original layout, and building their image projection.

An original checkpoint (``ip-adapter_sd15.bin``, ``ip-adapter-plus_sdxl_vit-h.safetensors``, ...) holds two
groups: ``image_proj`` (the projection's weights) and ``ip_adapter`` (``"<k>.to_k_ip.weight"`` and
``"<k>.to_v_ip.weight"`` for the ``k``-th attention processor of the UNet, counting self- and cross-attention
alike, so only odd ``k``: 1, 3, 5, ...). A ``.bin`` file is a dict ``{"image_proj": {...}, "ip_adapter": {...}}``
read with ``torch.load(weights_only=True)``; a ``.safetensors`` file has flat keys ``image_proj.*`` and
``ip_adapter.*``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .errors import AdapterError, CorruptedFileError, WeightsMismatchError
from .files import resolve_file
from .ip_adapter_projection import ImageProjection, IPAdapterPlusImageProjection

GROUPS = ("image_proj", "ip_adapter")
BASE_KEYS = ("proj.weight", "proj.bias", "norm.weight", "norm.bias")
PLUS_KEYS = ("latents", "proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias", "norm_out.weight",
             "norm_out.bias", "layers.<i>.0.to_q.weight", "layers.<i>.0.to_kv.weight", "...")
RESAMPLER_HEAD_DIM = 64  # the IP-Adapter resampler's head width (heads = to_q rows // 64)

# original resampler weight names -> diffusers' (and ours); to_kv is split into to_k and to_v separately
_PLUS_RENAMES = [
    (re.compile(r"^layers\.(\d+)\.0\.norm1\."), r"layers.\1.ln0."),
    (re.compile(r"^layers\.(\d+)\.0\.norm2\."), r"layers.\1.ln1."),
    (re.compile(r"^layers\.(\d+)\.0\.to_q\."), r"layers.\1.attn.to_q."),
    (re.compile(r"^layers\.(\d+)\.0\.to_out\."), r"layers.\1.attn.to_out.0."),
    (re.compile(r"^layers\.(\d+)\.1\.0\."), r"layers.\1.ff.0."),
    (re.compile(r"^layers\.(\d+)\.1\.1\."), r"layers.\1.ff.1.net.0.proj."),
    (re.compile(r"^layers\.(\d+)\.1\.3\."), r"layers.\1.ff.1.net.2."),
]
_TO_KV = re.compile(r"^layers\.(\d+)\.0\.to_kv\.weight$")


@dataclass
class IPAdapterCheckpoint:
    """One adapter's weights: ``image_proj`` and ``ip_adapter`` groups, and where they came from."""

    source: str
    image_proj: dict[str, torch.Tensor]
    ip_adapter: dict[str, torch.Tensor]

    @property
    def kind(self) -> str:
        """``"base"`` (linear projection) or ``"plus"`` (resampler)."""
        return "plus" if "latents" in self.image_proj else "base"

    @property
    def num_tokens(self) -> int:
        """Image tokens per image this adapter's projection makes."""
        if self.kind == "plus":
            return int(self.image_proj["latents"].shape[1])
        return int(self.image_proj["proj.weight"].shape[0] // self.image_proj["norm.weight"].shape[0])


def read_ip_adapter(path_or_repo: str | os.PathLike | Mapping, weight_name: str | None = None,
                    subfolder: str | None = None, revision: str | None = None) -> IPAdapterCheckpoint:
    """Read one original-layout IP-Adapter checkpoint from a folder, a Hub repo, or an in-memory state dict.

    Raises:
        MissingFileError: the weights file is not there (the message names the path looked for).
        CorruptedFileError: the file cannot be read.
        AdapterError: the file is not in the IP-Adapter layout (the message names the keys expected).
    """
    if isinstance(path_or_repo, Mapping):
        return _checked(dict(path_or_repo), "the given state dict")
    if weight_name is None:
        raise AdapterError("load_ip_adapter needs weight_name (e.g. 'ip-adapter_sd15.bin')")
    path = resolve_file(path_or_repo, weight_name, subfolder=subfolder or None, revision=revision,
                        what="IP-Adapter weights")
    return _checked(_read_file(path), str(path))


def _read_file(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            flat = load_file(str(path))
            groups: dict = {}
            for key, tensor in flat.items():
                group, _, rest = key.partition(".")
                if group in GROUPS:
                    groups.setdefault(group, {})[rest] = tensor
            return groups if set(GROUPS) <= set(groups) else flat
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file or a pickle that is not plain tensors
        raise CorruptedFileError.unreadable(str(path), err) from err


def _checked(state_dict: dict, source: str) -> IPAdapterCheckpoint:
    if not all(isinstance(state_dict.get(group), Mapping) for group in GROUPS):
        raise AdapterError.bad_layout(source, [f"{g}.*" for g in GROUPS], list(state_dict)[:20])
    image_proj = dict(state_dict["image_proj"])
    keys = set(image_proj)
    if not (set(BASE_KEYS) <= keys or {"latents", "proj_in.weight", "proj_out.weight", "norm_out.weight"} <= keys):
        expected = [f"image_proj.{k}" for k in BASE_KEYS] + [f"image_proj.{k}" for k in PLUS_KEYS]
        raise AdapterError.bad_layout(source, expected, [f"image_proj.{k}" for k in sorted(keys)])
    return IPAdapterCheckpoint(source, image_proj, dict(state_dict["ip_adapter"]))


def build_image_projection(checkpoint: IPAdapterCheckpoint) -> nn.Module:
    """The adapter's projection module with its weights loaded (float32, CPU; the caller moves it).

    Raises:
        WeightsMismatchError: the ``image_proj`` weights do not fit the projection their shapes describe.
    """
    weights = checkpoint.image_proj
    if checkpoint.kind == "base":
        cross_dim = weights["norm.weight"].shape[0]
        module = ImageProjection(weights["proj.weight"].shape[1], cross_dim, checkpoint.num_tokens)
        renamed = {key.replace("proj.", "image_embeds.", 1) if key.startswith("proj.") else key: value
                   for key, value in weights.items()}
    else:
        module = _resampler(weights, checkpoint.num_tokens)
        renamed = _rename_resampler(weights)
    _load(module, renamed, f"the image projection of {checkpoint.source}")
    return module


def _resampler(weights: dict[str, torch.Tensor], num_tokens: int) -> IPAdapterPlusImageProjection:
    hidden = weights["latents"].shape[2]
    depth = len({key.split(".")[1] for key in weights if key.startswith("layers.")})
    inner_ff = weights["layers.0.1.1.weight"].shape[0] if "layers.0.1.1.weight" in weights else hidden * 4
    return IPAdapterPlusImageProjection(
        embed_dims=weights["proj_in.weight"].shape[1], output_dims=weights["proj_out.weight"].shape[0],
        hidden_dims=hidden, depth=depth, dim_head=RESAMPLER_HEAD_DIM,
        heads=max(weights["layers.0.0.to_q.weight"].shape[0] // RESAMPLER_HEAD_DIM, 1) if depth else 1,
        num_tokens=num_tokens, ffn_ratio=max(inner_ff // hidden, 1),
    )


def _rename_resampler(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in weights.items():
        kv = _TO_KV.match(key)
        if kv:
            to_k, to_v = value.chunk(2, dim=0)
            renamed[f"layers.{kv.group(1)}.attn.to_k.weight"] = to_k
            renamed[f"layers.{kv.group(1)}.attn.to_v.weight"] = to_v
            continue
        for pattern, replacement in _PLUS_RENAMES:
            key = pattern.sub(replacement, key)
        renamed[key] = value
    return renamed


def _load(module: nn.Module, weights: dict[str, torch.Tensor], where: str) -> None:
    expected = module.state_dict()
    missing, unexpected = set(expected) - set(weights), set(weights) - set(expected)
    if missing or unexpected:
        raise WeightsMismatchError.keys(where, sorted(missing), sorted(unexpected))
    for key, tensor in weights.items():
        if tensor.shape != expected[key].shape:
            raise WeightsMismatchError.shape(where, key, tuple(expected[key].shape), tuple(tensor.shape))
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.items()}, strict=True)


def ip_weight_pairs(checkpoint: IPAdapterCheckpoint, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(to_k_ip, to_v_ip)`` weights for the UNet's ``count`` cross-attention layers, in processor order.

    Raises:
        AdapterError: the ``ip_adapter`` group lacks keys for some layer (the adapter is for another UNet).
    """
    ids = [2 * index + 1 for index in range(count)]
    expected = [f"ip_adapter.{i}.{name}.weight" for i in ids for name in ("to_k_ip", "to_v_ip")]
    found = [f"ip_adapter.{key}" for key in checkpoint.ip_adapter if key.endswith(("to_k_ip.weight", "to_v_ip.weight"))]
    if set(expected) != set(found):
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        shown = "missing " + ", ".join(missing[:4]) if missing else "unexpected " + ", ".join(extra[:4])
        raise AdapterError(
            f"{checkpoint.source} does not fit this UNet: it has to_k_ip/to_v_ip weights for {len(found) // 2} "
            f"cross-attention layers, the UNet has {count} ({shown}, ...). Is it an adapter for another model "
            "(SD 1.5 vs SDXL)?"
        )
    weights = checkpoint.ip_adapter
    return [(weights[f"{i}.to_k_ip.weight"], weights[f"{i}.to_v_ip.weight"]) for i in ids]
