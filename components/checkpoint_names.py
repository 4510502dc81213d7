"""Where each tensor of an original Stable Diffusion checkpoint (the single ``.safetensors`` file A1111, ComfyUI and
Forge load: CompVis / Stability's LDM names) goes in diffusers' layout, for the UNet, the VAE and the text encoders.

A table lists modules: ``(original prefix, our prefix, kind)``; a tensor ``<original prefix>.<rest>`` becomes
``<our prefix>.<rest>`` with ``rest`` renamed by its kind (resnets and the VAE's attention name their layers
differently; the VAE's attention projections are 1x1 convolutions there and linear layers here). OpenCLIP's text
encoder (SDXL's second) has fused q/k/v and a transposed projection: :func:`open_clip_to_clip` converts it.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

# the UNet's resnets: original layer -> ours
UNET_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
               "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
VAE_RESNET = {"nin_shortcut": "conv_shortcut"}
VAE_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
RENAMES = {"same": {}, "unet_resnet": UNET_RESNET, "vae_resnet": VAE_RESNET, "vae_attention": VAE_ATTENTION}

Table = list[tuple[str, str, str]]


def _get(config: Mapping[str, Any], key: str) -> Any:
    return config[key] if isinstance(config, Mapping) else getattr(config, key)


def _has(config: Mapping[str, Any], key: str) -> bool:
    return key in config if isinstance(config, Mapping) else hasattr(config, key)


def unet_table(config: Mapping[str, Any]) -> Table:
    """The UNet's modules for its config: ``input_blocks`` / ``middle_block`` / ``output_blocks`` against
    ``down_blocks`` / ``mid_block`` / ``up_blocks`` (each down block: ``layers_per_block`` resnets, with attention
    in cross-attention blocks, then a downsampler but the last; up blocks one resnet more)."""
    layers = _get(config, "layers_per_block")
    downs = _get(config, "down_block_types")
    ups = _get(config, "up_block_types") if _has(config, "up_block_types") else ()  # a ControlNet: the encoder only
    table: Table = [("time_embed.0", "time_embedding.linear_1", "same"), ("time_embed.2", "time_embedding.linear_2", "same"),
                    ("label_emb.0.0", "add_embedding.linear_1", "same"), ("label_emb.0.2", "add_embedding.linear_2", "same"),
                    ("input_blocks.0.0", "conv_in", "same"), ("out.0", "conv_norm_out", "same"), ("out.2", "conv_out", "same"),
                    ("middle_block.0", "mid_block.resnets.0", "unet_resnet"),
                    ("middle_block.1", "mid_block.attentions.0", "same"),
                    ("middle_block.2", "mid_block.resnets.1", "unet_resnet")]
    for i, kind in enumerate(downs):
        for j in range(layers):
            index = 1 + i * (layers + 1) + j
            table.append((f"input_blocks.{index}.0", f"down_blocks.{i}.resnets.{j}", "unet_resnet"))
            if "CrossAttn" in kind:
                table.append((f"input_blocks.{index}.1", f"down_blocks.{i}.attentions.{j}", "same"))
        if i < len(downs) - 1:
            table.append((f"input_blocks.{(i + 1) * (layers + 1)}.0.op", f"down_blocks.{i}.downsamplers.0.conv", "same"))
    for i, kind in enumerate(ups):
        attention = "CrossAttn" in kind
        for j in range(layers + 1):
            index = i * (layers + 1) + j
            table.append((f"output_blocks.{index}.0", f"up_blocks.{i}.resnets.{j}", "unet_resnet"))
            if attention:
                table.append((f"output_blocks.{index}.1", f"up_blocks.{i}.attentions.{j}", "same"))
        if i < len(ups) - 1:
            index = i * (layers + 1) + layers
            table.append((f"output_blocks.{index}.{2 if attention else 1}.conv", f"up_blocks.{i}.upsamplers.0.conv",
                          "same"))
    return table


def controlnet_table(config: Mapping[str, Any]) -> Table:
    """A ControlNet's modules: the UNet's encoder (:func:`unet_table`), the zero convolutions after each down
    step (``zero_convs.<i>.0``) and the mid block (``middle_block_out.0``), and the control-image encoder
    (``input_hint_block``: convolutions at even positions, SiLUs between them)."""
    widths = _get(config, "conditioning_embedding_out_channels")
    layers, downs = _get(config, "layers_per_block"), _get(config, "down_block_types")
    table = [row for row in unet_table(config) if not row[0].startswith("out.")]
    skips = 1 + len(downs) * layers + len(downs) - 1  # conv_in, each resnet, each downsampler
    table += [(f"zero_convs.{i}.0", f"controlnet_down_blocks.{i}", "same") for i in range(skips)]
    table.append(("middle_block_out.0", "controlnet_mid_block", "same"))
    blocks = 2 * (len(widths) - 1)
    table.append(("input_hint_block.0", "controlnet_cond_embedding.conv_in", "same"))
    table += [(f"input_hint_block.{2 * (j + 1)}", f"controlnet_cond_embedding.blocks.{j}", "same") for j in range(blocks)]
    table.append((f"input_hint_block.{2 * (blocks + 1)}", "controlnet_cond_embedding.conv_out", "same"))
    return table


def controlnet_hint_widths(state_dict: Mapping[str, torch.Tensor]) -> tuple[tuple[int, ...], int]:
    """``(conditioning_embedding_out_channels, conditioning_channels)`` of an original ControlNet's
    ``input_hint_block``: the first convolution's width, then that of each stride-2 one (every other after it)."""
    convs = sorted(int(key.split(".")[1]) for key in state_dict
                   if key.startswith("input_hint_block.") and key.endswith(".weight"))
    first = state_dict["input_hint_block.0.weight"]
    widths = [first.shape[0]] + [state_dict[f"input_hint_block.{i}.weight"].shape[0] for i in convs[2:-1:2]]
    return tuple(widths), first.shape[1]


def vae_table(config: Mapping[str, Any]) -> Table:
    """The VAE's modules: ``encoder.down.{i}.block.{j}`` / ``decoder.up.{i}...`` (the decoder's counted from the
    bottom there, from the top here), the mid blocks and the convolutions around them."""
    levels, layers = len(_get(config, "block_out_channels")), _get(config, "layers_per_block")
    table: Table = [("quant_conv", "quant_conv", "same"), ("post_quant_conv", "post_quant_conv", "same")]
    for part in ("encoder", "decoder"):
        table += [(f"{part}.conv_in", f"{part}.conv_in", "same"), (f"{part}.conv_out", f"{part}.conv_out", "same"),
                  (f"{part}.norm_out", f"{part}.conv_norm_out", "same"),
                  (f"{part}.mid.block_1", f"{part}.mid_block.resnets.0", "vae_resnet"),
                  (f"{part}.mid.block_2", f"{part}.mid_block.resnets.1", "vae_resnet"),
                  (f"{part}.mid.attn_1", f"{part}.mid_block.attentions.0", "vae_attention")]
    for i in range(levels):
        table += [(f"encoder.down.{i}.block.{j}", f"encoder.down_blocks.{i}.resnets.{j}", "vae_resnet")
                  for j in range(layers)]
        table += [(f"decoder.up.{levels - 1 - i}.block.{j}", f"decoder.up_blocks.{i}.resnets.{j}", "vae_resnet")
                  for j in range(layers + 1)]
        if i < levels - 1:
            table += [(f"encoder.down.{i}.downsample.conv", f"encoder.down_blocks.{i}.downsamplers.0.conv", "same"),
                      (f"decoder.up.{levels - 1 - i}.upsample.conv", f"decoder.up_blocks.{i}.upsamplers.0.conv", "same")]
    return table


def rename(state_dict: Mapping[str, torch.Tensor], table: Table) -> dict[str, torch.Tensor]:
    """``state_dict`` (original names, prefix stripped) in our names; keys no module of ``table`` holds are kept as
    they are, for the loader to report."""
    modules = sorted(table, key=lambda row: -len(row[0]))  # the longest prefix first: input_blocks.1.0 before .1
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        row = next((r for r in modules if key.startswith(r[0] + ".")), None)
        if row is None:
            out[key] = tensor
            continue
        original, ours, kind = row
        rest = key[len(original) + 1:]
        for old, new in RENAMES[kind].items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old):]
                break
        if kind == "vae_attention" and tensor.ndim == 4 and rest.endswith(".weight") and "group_norm" not in rest:
            tensor = tensor[:, :, 0, 0]  # a 1x1 convolution's kernel is the linear layer's matrix
        out[f"{ours}.{rest}"] = tensor
    return out


def clip_names(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CLIP text encoder saved as transformers' ``CLIPTextModel`` (``text_model.embeddings...``, as checkpoints
    have it) in ``model``'s names: transformers 5.6 dropped the ``text_model.`` level of ``CLIPTextModel`` (not of
    ``CLIPTextModelWithProjection``). The position ids some files keep are left out (a buffer the model makes)."""
    wrapped = hasattr(model, "text_model")
    out = {}
    for key, tensor in state_dict.items():
        if key.endswith("position_ids"):
            continue
        inner = key[len("text_model."):] if key.startswith("text_model.") else key
        out[f"text_model.{inner}" if wrapped and not key.startswith("text_projection") else inner] = tensor
    return out


_OPEN_CLIP_LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
                    "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def open_clip_to_clip(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP's text tower (SDXL's ``conditioner.embedders.1.model``) as ``CLIPTextModelWithProjection``:
    ``in_proj`` cut into q, k and v, ``text_projection`` transposed into a linear layer's weight."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key == "token_embedding.weight":
            out["text_model.embeddings.token_embedding.weight"] = tensor
        elif key == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = tensor
        elif key.startswith("ln_final."):
            out["text_model.final_layer_norm." + key.split(".", 1)[1]] = tensor
        elif key == "text_projection":
            out["text_projection.weight"] = tensor.T.contiguous()
        elif key.startswith("transformer.resblocks."):
            index, rest = key[len("transformer.resblocks."):].split(".", 1)
            layer = f"text_model.encoder.layers.{index}"
            if rest.startswith("attn.in_proj_"):
                param = "weight" if rest.endswith("weight") else "bias"
                for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                    out[f"{layer}.self_attn.{name}.{param}"] = part
                continue
            for old, new in _OPEN_CLIP_LAYER.items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old):]
                    break
            out[f"{layer}.{rest}"] = tensor
        elif key not in ("logit_scale", "attn_mask"):
            out[key] = tensor
    return out
