"""Tiny random IP-Adapter checkpoints (original layout) and a tiny CLIP image encoder, built in code.

The checkpoint shapes are read off a diffusers UNet (the test-only reference): one ``to_k_ip``/``to_v_ip``
pair per cross-attention processor in diffusers' ``attn_processors`` order, numbered 1, 3, 5, ...
"""

from __future__ import annotations

from pathlib import Path

import torch

ENCODER_WIDTH = 32  # hidden size and projection dim of the tiny vision encoder
IMAGE_SIZE = 32


def tiny_image_encoder(seed: int = 0):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=ENCODER_WIDTH, projection_dim=ENCODER_WIDTH, intermediate_size=37,
                              num_attention_heads=4, num_hidden_layers=2, image_size=IMAGE_SIZE, patch_size=8)
    return CLIPVisionModelWithProjection(config).eval()


def _rand(generator, *shape, scale=0.3):
    return torch.randn(*shape, generator=generator) * scale


def _cross_layers(unet) -> list[tuple[int, int]]:
    """(inner, cross_dim) of each cross-attention processor of a diffusers UNet, in order."""
    shapes = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        to_k = unet.get_submodule(name[: -len(".processor")]).to_k
        shapes.append((to_k.out_features, to_k.in_features))
    return shapes


def base_image_proj(g, cross_dim: int, tokens: int = 4) -> dict:
    return {"proj.weight": _rand(g, tokens * cross_dim, ENCODER_WIDTH), "proj.bias": _rand(g, tokens * cross_dim),
            "norm.weight": 1 + _rand(g, cross_dim, scale=0.1), "norm.bias": _rand(g, cross_dim, scale=0.1)}


def plus_image_proj(g, cross_dim: int, tokens: int = 8, hidden: int = 32, depth: int = 4, inner: int = 64) -> dict:
    weights = {
        "latents": _rand(g, 1, tokens, hidden, scale=1.0), "proj_in.weight": _rand(g, hidden, ENCODER_WIDTH),
        "proj_in.bias": _rand(g, hidden), "proj_out.weight": _rand(g, cross_dim, hidden),
        "proj_out.bias": _rand(g, cross_dim), "norm_out.weight": 1 + _rand(g, cross_dim, scale=0.1),
        "norm_out.bias": _rand(g, cross_dim, scale=0.1),
    }
    for i in range(depth):
        for norm in ("0.norm1", "0.norm2", "1.0"):
            weights[f"layers.{i}.{norm}.weight"] = 1 + _rand(g, hidden, scale=0.1)
            weights[f"layers.{i}.{norm}.bias"] = _rand(g, hidden, scale=0.1)
        weights[f"layers.{i}.0.to_q.weight"] = _rand(g, inner, hidden)
        weights[f"layers.{i}.0.to_kv.weight"] = _rand(g, 2 * inner, hidden)
        weights[f"layers.{i}.0.to_out.weight"] = _rand(g, hidden, inner)
        weights[f"layers.{i}.1.1.weight"] = _rand(g, 4 * hidden, hidden)
        weights[f"layers.{i}.1.3.weight"] = _rand(g, hidden, 4 * hidden)
    return weights


def ip_adapter_state_dict(unet, kind: str = "base", seed: int = 0) -> dict:
    """``{"image_proj": ..., "ip_adapter": ...}`` with random weights fitting a diffusers ``unet``."""
    g = torch.Generator().manual_seed(seed)
    shapes = _cross_layers(unet)
    cross_dim = shapes[0][1]
    image_proj = base_image_proj(g, cross_dim) if kind == "base" else plus_image_proj(g, cross_dim)
    ip_layers = {}
    for index, (inner, cross) in enumerate(shapes):
        ip_layers[f"{2 * index + 1}.to_k_ip.weight"] = _rand(g, inner, cross)
        ip_layers[f"{2 * index + 1}.to_v_ip.weight"] = _rand(g, inner, cross)
    return {"image_proj": image_proj, "ip_adapter": ip_layers}


def save_ip_adapter(state_dict: dict, path: Path) -> Path:
    """As ``.bin`` (nested dict) or ``.safetensors`` (flat ``image_proj.*`` / ``ip_adapter.*`` keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        flat = {f"{group}.{key}": value.contiguous() for group, weights in state_dict.items() for key, value in weights.items()}
        save_file(flat, str(path))
    else:
        torch.save(state_dict, path)
    return path


def make_ip_adapter_repo(path: Path, pipeline_repo: Path, with_encoder: bool = True) -> Path:
    """A folder like h94/IP-Adapter: ``image_encoder/``, ``ip-adapter.bin`` (base), ``ip-adapter-plus.safetensors``
    (resampler) and ``ip-adapter-2.bin`` (a second base adapter), all fitting the UNet of ``pipeline_repo``."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(pipeline_repo, subfolder="unet")
    if with_encoder:
        tiny_image_encoder().save_pretrained(path / "image_encoder")
    save_ip_adapter(ip_adapter_state_dict(unet, "base", seed=1), path / "ip-adapter.bin")
    save_ip_adapter(ip_adapter_state_dict(unet, "plus", seed=2), path / "ip-adapter-plus.safetensors")
    save_ip_adapter(ip_adapter_state_dict(unet, "base", seed=3), path / "ip-adapter-2.bin")
    return path
