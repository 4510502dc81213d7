"""Tiny random LoRAs for the tiny SD / SDXL models, written in code in each layout people download.

``make_lora(pipe, layout, seed)`` takes a diffusers pipeline (for its module names and shapes) and returns a
state dict in one of the layouts: ``peft`` (diffusers' ``save_lora_weights``: ``unet.<m>.lora_A.weight``),
``old`` (``unet.<attn>.processor.to_q_lora.down.weight``, ``text_encoder.<m>.to_q_lora.down.weight``), ``kohya``
(``lora_unet_<m>.lora_down.weight`` + ``.alpha``, with LoCon conv layers), ``sgm`` (kohya for SDXL, with the
original UNet's ``input_blocks`` / ``middle_block`` / ``output_blocks`` names).
"""

from __future__ import annotations

import torch
from torch import nn

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "ff.net.2")
CONV_TARGETS = ("conv1", "conv2", "time_emb_proj")  # LoCon: the resnets
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1")
OLD_PROCESSOR = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out.0": "to_out"}
OLD_TEXT = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "out_proj": "to_out"}


def _targets(model: nn.Module, suffixes, convs=()) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and (n.endswith(tuple("." + s for s in suffixes))
                                                            or (convs and n.endswith(tuple("." + c for c in convs))))}


def _pair(module: nn.Module, rank: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(module, nn.Conv2d):
        down = torch.randn(rank, module.in_channels, *module.kernel_size, generator=g)
        up = torch.randn(module.out_channels, rank, 1, 1, generator=g)
    else:
        down, up = torch.randn(rank, module.in_features, generator=g), torch.randn(module.out_features, rank, generator=g)
    return down * 0.2, up * 0.2


def lora_layers(pipe, seed: int = 0, rank: int = 4, convs: bool = False, text: bool = True) -> dict:
    """``{component: {module name: (down, up)}}`` of random LoRA weights on the pipeline's models."""
    g = torch.Generator().manual_seed(seed)
    layers = {"unet": {n: _pair(m, rank, g) for n, m in _targets(pipe.unet, UNET_TARGETS, CONV_TARGETS if convs else ()).items()}}
    for name in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipe, name, None)
        if text and encoder is not None:
            layers[name] = {n: _pair(m, rank, g) for n, m in _targets(encoder, TEXT_TARGETS).items()}
    return layers


def make_lora(pipe, layout: str = "peft", seed: int = 0, rank: int = 4, alpha: float | None = None) -> dict:
    """A random LoRA for ``pipe`` (a diffusers pipeline) as a state dict in ``layout``."""
    layers = lora_layers(pipe, seed, rank, convs=layout in ("kohya", "sgm"))
    writer = {"peft": _peft, "old": _old, "kohya": _kohya, "sgm": _kohya}[layout]
    out = {}
    for component, modules in layers.items():
        for name, (down, up) in modules.items():
            out.update(writer(component, name, down, up, alpha if alpha is not None else rank, layout, pipe))
    return out


def _peft(component, name, down, up, alpha, layout, pipe):
    return {f"{component}.{name}.lora_A.weight": down, f"{component}.{name}.lora_B.weight": up}


def _old(component, name, down, up, alpha, layout, pipe):
    parent, _, leaf = name.rpartition(".")
    if component == "unet" and name.endswith(tuple(OLD_PROCESSOR)) and ".attn" in name:
        leaf = "to_out.0" if name.endswith("to_out.0") else leaf
        parent = name[: -len(leaf) - 1]
        base = f"unet.{parent}.processor.{OLD_PROCESSOR[leaf]}_lora"
    elif component != "unet" and leaf in OLD_TEXT:
        base = f"{component}.{_with_text_model(parent)}.{OLD_TEXT[leaf]}_lora"
    elif component != "unet":
        base = f"{component}.{_with_text_model(name)}.lora_linear_layer"
    else:
        base = f"unet.{name}.lora"
    return {f"{base}.down.weight": down, f"{base}.up.weight": up}


def _kohya(component, name, down, up, alpha, layout, pipe):
    prefix = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if hasattr(pipe, "text_encoder_2") else "lora_te_",
              "text_encoder_2": "lora_te2_"}[component]
    if component == "unet" and layout == "sgm":
        name = to_sgm(name, pipe.unet.config.layers_per_block)
    elif component != "unet":
        name = _with_text_model(name)
    base = prefix + name.replace(".", "_")
    return {f"{base}.lora_down.weight": down, f"{base}.lora_up.weight": up, f"{base}.alpha": torch.tensor(float(alpha))}


def _with_text_model(name: str) -> str:
    """Module names as LoRA files write them: with ``text_model.`` (transformers 5 flattens CLIPTextModel)."""
    return name if name.startswith("text_model.") else "text_model." + name


def to_sgm(name: str, layers: int) -> str:
    """A diffusers UNet module name in the original (SGM) UNet's naming, as kohya writes SDXL LoRAs."""
    parts = name.split(".")
    tails = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1"}
    if parts[0] == "down_blocks":
        block, kind, layer = int(parts[1]), parts[2], int(parts[3])
        head = f"input_blocks.{1 + block * (layers + 1) + layer}.{0 if kind == 'resnets' else 1}"
    elif parts[0] == "up_blocks":
        block, kind, layer = int(parts[1]), parts[2], int(parts[3])
        head = f"output_blocks.{block * (layers + 1) + layer}.{0 if kind == 'resnets' else 1}"
    else:  # mid_block.<kind>.<i>
        kind, layer = parts[1], int(parts[2])
        head = f"middle_block.{ {('resnets', 0): 0, ('attentions', 0): 1, ('resnets', 1): 2}[(kind, layer)] }"
    rest = ".".join(parts[4:] if parts[0] != "mid_block" else parts[3:])
    return f"{head}.{tails.get(rest, rest)}"
