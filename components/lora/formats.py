"""Reading LoRA files and sorting their keys into layers, per component.

These layouts are read:

- diffusers / PEFT: ``unet.<module>.lora_A.weight`` / ``lora_B`` (``transformer.`` for FLUX.1; ``text_encoder.``,
  ``text_encoder_2.`` for the text encoders);
- the older diffusers layout: ``<module>.lora.down.weight`` / ``.lora.up``, ``.lora_linear_layer.down``, and the
  attention-processor form ``attn1.processor.to_q_lora.down.weight`` (text encoders: ``self_attn.to_q_lora``);
- kohya / A1111 (``lora_unet_<module_with_underscores>.lora_down.weight``, ``.lora_up.weight``, ``.alpha``;
  ``lora_te_`` / ``lora_te1_`` / ``lora_te2_`` for the text encoders, ``lora_te3_`` for FLUX.1's T5,
  ``lora_transformer_`` for FLUX.1's transformer named as diffusers names it), LoCon conv layers included;
- LyCORIS' LoHa and LoKr in kohya's names (``lora_unet_<module>.hada_w1_a``, ``.lokr_w1``, ``.alpha``), as
  Civitai shares them: A1111 and ComfyUI apply them as weight deltas (a Hadamard product of two low-rank products;
  a Kronecker product of two factors, each whole or low-rank);
- XLabs' FLUX.1 LoRAs (``double_blocks.0.processor.qkv_lora1.down.weight``); PEFT-suffixed ones with the
  original's dotted names (``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight``) read as diffusers'.

Keys without a component prefix, and kohya's ``lora_unet_``, belong to the denoiser: the UNet, or FLUX.1's
transformer (``transformer.`` in diffusers' layout).

Module names are kept as the file writes them; :mod:`.mapping` finds them in a model.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from ..errors import CorruptedFileError, MissingFileError
from ..files import is_local, resolve_file

COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")
DENOISER = "denoiser"  # keys without a component prefix, and kohya's lora_unet_: the UNet, or FLUX.1's transformer
DEFAULT_WEIGHT_NAMES = ["pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin"]
# lora_unet_ is the denoiser (FLUX.1's transformer too, with the original's names); lora_transformer_ FLUX.1's
# transformer with diffusers' names; lora_te3_ is FLUX.1's T5 (sd-scripts keeps te2 for CLIP-G)
_KOHYA_PREFIXES = {"lora_unet_": DENOISER, "lora_transformer_": "transformer", "lora_te_": "text_encoder",
                   "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2", "lora_te3_": "text_encoder_2"}
_KOHYA_ROLES = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}
# LyCORIS' factors (PEFT's LoHa and LoKr layers hold them under the same names)
LOHA_FACTORS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
LOKR_FACTORS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
_KOHYA_ROLES.update({name: name for name in LOHA_FACTORS + LOKR_FACTORS})
# attention-processor LoRA names of the older diffusers layout -> the projection they adapt
_PROCESSOR_NAMES = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"}
_TEXT_PROCESSOR_NAMES = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}
_DIFFUSERS_ROLE = re.compile(
    r"^(?P<path>.+?)(?:\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight|(?:\.lora|\.lora_linear_layer|_lora)\.(?P<du>down|up)"
    r"\.weight|\.(?P<alpha>alpha))$")
# XLabs' FLUX.1 LoRAs: attention LoRAs on the original's blocks, named after its processors (see .flux_names)
_XLABS = re.compile(r"^(?:diffusion_model\.)?(?P<kind>double|single)_blocks\.(?P<i>\d+)\.processor\."
                    r"(?P<layer>qkv_lora1|qkv_lora2|proj_lora1|proj_lora2|qkv_lora|proj_lora)\.(?P<du>down|up)\.weight$")
_XLABS_LAYERS = {("double", "qkv_lora1"): "img_attn_qkv", ("double", "qkv_lora2"): "txt_attn_qkv",
                 ("double", "proj_lora1"): "img_attn_proj", ("double", "proj_lora2"): "txt_attn_proj",
                 ("single", "qkv_lora"): "attn_qkv", ("single", "proj_lora"): "linear2"}
_PROCESSOR = re.compile(r"^(?P<parent>.*?)\.(?:processor\.)?(?P<proj>to_q|to_k|to_v|to_out)$")


@dataclass
class LayerLora:
    """One adapted layer: ``down`` (lora_A), ``up`` (lora_B), ``alpha`` (None: the rank, scale 1); a LoHa's or
    LoKr's ``factors`` instead of ``down`` and ``up``."""

    key: str
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None
    factors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``lora``, ``loha`` or ``lokr``."""
        if any(name.startswith("hada_") for name in self.factors):
            return "loha"
        return "lokr" if self.factors else "lora"

    @property
    def rank(self) -> int:
        return self.down.shape[0]


@dataclass
class ParsedLora:
    """A LoRA file's layers per component; ``kohya``: module names use underscores for dots."""

    layers: dict[str, dict[str, LayerLora]] = field(default_factory=dict)
    kohya: bool = False
    unread: list[str] = field(default_factory=list)

    def layer(self, component: str, name: str, key: str) -> LayerLora:
        return self.layers.setdefault(component, {}).setdefault(name, LayerLora(key))


def read_lora_file(source: str | os.PathLike | Mapping, weight_name: str | None = None) -> tuple[dict, dict, str]:
    """The state dict, the safetensors metadata and a label naming where it came from.

    ``source``: a state dict, a ``.safetensors`` / ``.bin`` file, or a folder / Hub repo (with ``weight_name``,
    default ``pytorch_lora_weights.safetensors`` then ``.bin``).
    """
    return read_weights(source, weight_name, DEFAULT_WEIGHT_NAMES, "LoRA weights")


def read_weights(source, weight_name: str | None, defaults: list[str], what: str) -> tuple[dict, dict, str]:
    """A weights file given as a state dict, a file, or a folder / Hub repo with ``weight_name`` (else the first
    of ``defaults`` there, or the folder's only ``.safetensors`` file). ``.bin`` / ``.pt`` files are read with
    ``torch.load(weights_only=True)``: plain tensors only, no pickled code.

    Raises:
        MissingFileError: no such file (the message names every path looked for).
        CorruptedFileError: the file cannot be read.
    """
    if isinstance(source, Mapping):
        return dict(source), {}, "(state dict)"
    if weight_name is None and Path(source).expanduser().is_file():  # a file here, even named like "ink.safetensors"
        path = Path(source).expanduser()
    else:
        path = resolve_file(source, [weight_name] if weight_name else defaults + _single_safetensors(source), what=what)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata() or {}, str(path)
        return torch.load(path, map_location="cpu", weights_only=True), {}, str(path)
    except FileNotFoundError as err:
        raise MissingFileError(f"{what} {path} not found") from err
    except Exception as err:  # a truncated file, or a pickle that is not plain tensors
        raise CorruptedFileError.unreadable(str(path), err) from err


def _single_safetensors(source) -> list[str]:
    """A local folder holding exactly one ``.safetensors`` file: that file (as downloaded LoRAs often come)."""
    if not (is_local(source) and Path(source).is_dir()):
        return []
    found = sorted(p.name for p in Path(source).glob("*.safetensors"))
    return found if len(found) == 1 else []


def parse_lora(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> ParsedLora:
    """Sort ``state_dict``'s keys into layers per component (keys no layout reads go to ``unread``)."""
    kohya = any(key.startswith(tuple(_KOHYA_PREFIXES)) for key in state_dict)
    parsed = ParsedLora(kohya=kohya)
    readers = (_read_kohya_key,) if kohya else (_read_xlabs_key, _read_diffusers_key)
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or not any(read(parsed, key, value) for read in readers):
            parsed.unread.append(key)
    if not kohya:
        _apply_metadata_alphas(parsed, metadata or {})
    return parsed


def _read_kohya_key(parsed: ParsedLora, key: str, value: torch.Tensor) -> bool:
    name, _, suffix = key.partition(".")
    prefix = next((p for p in _KOHYA_PREFIXES if name.startswith(p)), None)
    role = _KOHYA_ROLES.get(suffix)
    if prefix is None or role is None:
        return False
    _set(parsed.layer(_KOHYA_PREFIXES[prefix], name[len(prefix):], key), role, value)
    return True


def _read_xlabs_key(parsed: ParsedLora, key: str, value: torch.Tensor) -> bool:
    match = _XLABS.match(key)
    if match is None:
        return False
    name = f"{match['kind']}_blocks_{match['i']}_{_XLABS_LAYERS[match['kind'], match['layer']]}"
    _set(parsed.layer(DENOISER, name, key), match["du"], value)
    return True


def _read_diffusers_key(parsed: ParsedLora, key: str, value: torch.Tensor) -> bool:
    component, path = _component_of(key.removeprefix("base_model.model.").removeprefix("diffusion_model."))
    match = _DIFFUSERS_ROLE.match(path)
    if match is None:
        return False
    role = "alpha" if match["alpha"] else ("down" if match["ab"] == "A" or match["du"] == "down" else "up")
    module = _module_of(match["path"], component)
    _set(parsed.layer(component, module, key), role, value)
    return True


def _component_of(key: str) -> tuple[str, str]:
    head, _, rest = key.partition(".")
    return (head, rest) if head in COMPONENTS else (DENOISER, key)


def _module_of(path: str, component: str) -> str:
    """The module a diffusers-layout key adapts (``attn1.processor.to_q`` -> ``attn1.to_q``, ``to_out`` ->
    ``to_out.0``; in text encoders ``self_attn.to_q`` -> ``self_attn.q_proj``)."""
    for suffix in (".down.weight", ".lora", ".lora_linear_layer", "_lora"):  # alpha keys of the older layout
        path = path.removesuffix(suffix)
    match = _PROCESSOR.match(path)
    if match is None:
        return path
    names = _TEXT_PROCESSOR_NAMES if component.startswith("text_encoder") else _PROCESSOR_NAMES
    return f"{match['parent']}.{names[match['proj']]}"


def _set(layer: LayerLora, role: str, value: torch.Tensor) -> None:
    if role == "alpha":
        layer.alpha = float(value.item() if isinstance(value, torch.Tensor) else value)
    elif role in LOHA_FACTORS + LOKR_FACTORS:
        layer.factors[role] = value
    else:
        setattr(layer, role, value)


def _apply_metadata_alphas(parsed: ParsedLora, metadata: Mapping[str, str]) -> None:
    """diffusers writes each component's LoraConfig into the safetensors metadata (``lora_adapter_metadata``);
    its ``lora_alpha`` / ``alpha_pattern`` give the layers' alphas."""
    text = metadata.get("lora_adapter_metadata")
    if not text:
        return
    config = json.loads(text)
    for component, layers in parsed.layers.items():
        alpha = config.get(f"{component}.lora_alpha")
        patterns = config.get(f"{component}.alpha_pattern") or {}
        for name, layer in layers.items():
            if layer.alpha is not None:
                continue
            found = next((v for p, v in patterns.items() if re.search(rf"(^|\.){p}$", name)), None)
            layer.alpha = float(found if found is not None else alpha) if (found or alpha) is not None else None
