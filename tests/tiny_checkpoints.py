"""Original Stable Diffusion checkpoints (one .safetensors file, CompVis / Stability's names, as A1111 and ComfyUI
keep them) written from the tiny diffusers repos, by the inverse of diffblocks' name tables. The tests check that
diffusers' own single-file loader reads these files back into the repo's weights, so the files are what diffusers
takes an original checkpoint to be, not only what diffblocks does."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from diffblocks.components.checkpoint_names import RENAMES, unet_table, vae_table

CALL = dict(prompt="a cat", num_inference_steps=3, output="images", output_type="pt")  # what the files' tests draw

_OPEN_CLIP = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj", "mlp.fc1": "mlp.c_fc",
              "mlp.fc2": "mlp.c_proj"}


def to_original(state: dict, table) -> dict:
    rows = sorted(table, key=lambda row: -len(row[1]))
    out = {}
    for key, tensor in state.items():
        original, ours, kind = next(row for row in rows if key.startswith(row[1] + "."))
        rest = key[len(ours) + 1:]
        for old, new in RENAMES[kind].items():
            if rest.startswith(new + "."):
                rest = old + rest[len(new):]
                break
        if kind == "vae_attention" and tensor.ndim == 2 and rest.endswith(".weight"):
            tensor = tensor[:, :, None, None]  # the original's 1x1 convolutions
        out[f"{original}.{rest}"] = tensor
    return out


def clip_original(state: dict) -> dict:
    """transformers' CLIPTextModel as checkpoints hold it: always under ``text_model.``."""
    return {key if key.startswith("text_model.") else f"text_model.{key}": tensor for key, tensor in state.items()}


def open_clip_original(state: dict) -> dict:
    """CLIPTextModelWithProjection as OpenCLIP's text tower: q/k/v fused into ``in_proj``, the projection transposed."""
    out, fused = {}, {}
    for key, tensor in state.items():
        key = key.removeprefix("text_model.")
        if key == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = tensor
        elif key == "embeddings.position_embedding.weight":
            out["positional_embedding"] = tensor
        elif key.startswith("final_layer_norm."):
            out["ln_final." + key.split(".", 1)[1]] = tensor
        elif key == "text_projection.weight":
            out["text_projection"] = tensor.T
        elif key.startswith("encoder.layers."):
            index, rest = key[len("encoder.layers."):].split(".", 1)
            parts = rest.split(".")
            if parts[0] == "self_attn" and parts[1] in ("q_proj", "k_proj", "v_proj"):
                fused.setdefault((index, parts[2]), {})[parts[1]] = tensor
                continue
            for ours, original in _OPEN_CLIP.items():
                if rest.startswith(ours + "."):
                    rest = original + rest[len(ours):]
                    break
            out[f"transformer.resblocks.{index}.{rest}"] = tensor
    for (index, param), parts in fused.items():
        out[f"transformer.resblocks.{index}.attn.in_proj_{param}"] = torch.cat([parts[n] for n in ("q_proj", "k_proj",
                                                                                                      "v_proj")])
    return out


def write_checkpoint(pipe, path: Path, dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """``pipe``'s models (a diffusers StableDiffusionPipeline or StableDiffusionXLPipeline) as one original file."""
    tensors = {}
    tensors.update({f"model.diffusion_model.{k}": v
                    for k, v in to_original(pipe.unet.state_dict(), unet_table(pipe.unet.config)).items()})
    tensors.update({f"first_stage_model.{k}": v for k, v in to_original(pipe.vae.state_dict(), vae_table(pipe.vae.config)).items()})
    if getattr(pipe, "text_encoder_2", None) is None:
        tensors.update({f"cond_stage_model.transformer.{k}": v for k, v in clip_original(pipe.text_encoder.state_dict()).items()})
    else:
        tensors.update({f"conditioner.embedders.0.transformer.{k}": v
                        for k, v in clip_original(pipe.text_encoder.state_dict()).items()})
        tensors.update({f"conditioner.embedders.1.model.{k}": v
                        for k, v in open_clip_original(pipe.text_encoder_2.state_dict()).items()})
    tensors = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in {**tensors, **(extra or {})}.items()}
    return save_tensors(tensors, path)


def write_sd2_checkpoint(pipe, path: Path, extra: dict | None = None) -> Path:
    """``pipe``'s models (a diffusers StableDiffusionPipeline) as an SD 2.x file: its text encoder as OpenCLIP's text
    tower, which keeps all its layers and a projection (SD 2.x reads the penultimate layer, so diffusers' config
    has one layer less and no projection): written here with a layer more and a projection, to be left out."""
    tensors = {f"model.diffusion_model.{k}": v for k, v in to_original(pipe.unet.state_dict(),
                                                                       unet_table(pipe.unet.config)).items()}
    tensors.update({f"first_stage_model.{k}": v for k, v in to_original(pipe.vae.state_dict(),
                                                                        vae_table(pipe.vae.config)).items()})
    text = open_clip_original(pipe.text_encoder.state_dict())
    last = pipe.text_encoder.config.num_hidden_layers - 1
    generator = torch.Generator().manual_seed(5)
    text.update({k.replace(f"resblocks.{last}.", f"resblocks.{last + 1}."): torch.randn(v.shape, generator=generator)
                 for k, v in text.items() if k.startswith(f"transformer.resblocks.{last}.")})
    text["text_projection"] = torch.randn(32, 16, generator=generator)
    tensors.update({f"cond_stage_model.model.{k}": v for k, v in text.items()})
    return save_tensors({**tensors, **(extra or {})}, path)


def save_tensors(tensors: dict, path: Path, legacy: bool = False) -> Path:
    """``tensors`` in the file kind ``path``'s suffix names: safetensors (``.safetensors``, ``.sft``), a training
    checkpoint (``.ckpt``: see :func:`save_lightning`), or a plain pickled dict (``.pt``, ``.pth``); ``legacy``:
    torch's pickle format from before its zip files (not memory-mappable)."""
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if path.suffix in (".safetensors", ".sft"):
        save_file(tensors, str(path))
    elif path.suffix == ".ckpt":
        save_lightning(tensors, path, legacy)
    else:
        torch.save(tensors, str(path), _use_new_zipfile_serialization=not legacy)
    return path


def save_lightning(tensors: dict, path: Path, legacy: bool = False) -> None:
    """A training checkpoint as PyTorch Lightning wrote SD 1.x's ``.ckpt`` files: the weights under ``state_dict``
    beside numpy counters and ``callbacks``, keyed by Lightning's ModelCheckpoint class (made here under Lightning's
    module name while pickling: Lightning is not installed)."""
    names = ("pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint")
    saved = {name: sys.modules.get(name) for name in names}
    module = types.ModuleType(names[-1])

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__, module.ModelCheckpoint = names[-1], "ModelCheckpoint", ModelCheckpoint
    sys.modules.update({name: types.ModuleType(name) for name in names[:-1]} | {names[-1]: module})
    try:
        best = ModelCheckpoint()
        best.best_model_score, best.dirpath = torch.tensor(0.25), "/logs/checkpoints"
        record = {"state_dict": tensors, "epoch": 6, "global_step": np.int64(470000), "pytorch-lightning_version": "1.4.2",
                  "lr": np.float64(1e-4), "dtype": np.dtype("float32"), "callbacks": {ModelCheckpoint: {"best": best}}}
        torch.save(record, str(path), _use_new_zipfile_serialization=not legacy)
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value


def fine_tune(pipe, seed: int):
    """``pipe`` with every model's weights moved a little: a file of them differs from the repo it is read with."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            for param in getattr(getattr(pipe, name, None), "parameters", list)():
                param.add_(0.02 * torch.randn_like(param))
    return pipe


def pipeline_with(blocks, repo, tuned):
    """Our pipeline on ``repo`` with ``tuned``'s weights put in by name: what the file should give."""
    from tiny_models import build_pipeline

    pipe = build_pipeline(blocks, repo)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(tuned, name, None) is not None:
            getattr(pipe, name).load_state_dict(getattr(tuned, name).state_dict())
    return pipe


def write_vae(path, tensors):
    """``tensors`` saved as one safetensors file (a VAE, a ControlNet: any part alone); returns ``path``."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def make_controlnet_file(sd_repo, root, widths):
    """``(diffusers ControlNet, its folder, the same in one file in the original layout)``."""
    import diffusers

    from diffblocks.components.checkpoint_names import controlnet_table

    unet = diffusers.UNet2DConditionModel.from_pretrained(sd_repo, subfolder="unet")
    torch.manual_seed(4)
    net = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=widths).eval()
    with torch.no_grad():
        for param in net.parameters():  # from_unet zero-initialises the output convolutions: make them matter
            param.add_(0.05 * torch.randn_like(param))
    net.save_pretrained(root / "folder")
    tensors = to_original(net.state_dict(), controlnet_table(net.config))
    file = write_vae(root / "control_tiny.safetensors", {f"control_model.{k}": v for k, v in tensors.items()})
    return net, root / "folder", file
