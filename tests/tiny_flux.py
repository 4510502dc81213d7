"""Tiny random FLUX.1 repos (a standard ``FluxPipeline`` folder) built with diffusers, saved to disk.

Nothing is downloaded: the CLIP tokenizer is tiny_models' byte-level one, the T5 tokenizer a character-level
unigram vocabulary written here. ``dev=True`` gives the transformer a guidance embedding (FLUX.1-dev),
``dev=False`` none (schnell); the scheduler shifts with the image size as FLUX.1-dev's does.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tiny_models import SEED, tiny_clip, write_tiny_tokenizer

TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=16,
                   num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))
SCHEDULER = dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                 max_image_seq_len=4096)
VAE = dict(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=16, norm_num_groups=8,
           down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32,
           scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)


def tiny_t5_tokenizer():
    """A T5 tokenizer over single characters (pad 0, eos 1, unk 2), no sentencepiece model needed."""
    from transformers import T5TokenizerFast

    chars = "▁" + string.ascii_letters + string.digits + string.punctuation
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in chars]
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


def tiny_t5(tokenizer, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(config).eval()


def tiny_transformer(dev: bool = True, **overrides):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(**{**TRANSFORMER, "guidance_embeds": dev, **overrides}).eval()


def tiny_flux_vae(**overrides):
    """A two-level VAE with FLUX's scaling and shift (and, like FLUX's, no quant convs)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**{**VAE, **overrides}).eval()


def make_flux_repo(path: Path, dev: bool = True, transformer: dict | None = None, **vae) -> Path:
    """A standard FluxPipeline repo at ``path``: 16 latent channels (64-channel tokens), a 2-level VAE (``vae``
    overrides its config: four levels scale by 8, as FLUX.1's; ``transformer`` the transformer's)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    torch.manual_seed(SEED)
    tokenizer = write_tiny_tokenizer(path / "_tok")
    tokenizer_2 = tiny_t5_tokenizer()
    pipe = FluxPipeline(
        transformer=tiny_transformer(dev, **(transformer or {})), vae=tiny_flux_vae(**vae), text_encoder=tiny_clip(tokenizer),
        tokenizer=tokenizer, text_encoder_2=tiny_t5(tokenizer_2), tokenizer_2=tokenizer_2,
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER),
    )
    pipe.save_pretrained(path)
    return path


def reference_controlnet(folder: Path, **config):
    """diffusers' FLUX ControlNet for the tiny transformer (``config``: its kind's settings) with random weights,
    its zero layers too, saved to ``folder``."""
    import diffusers

    torch.manual_seed(0)
    net = diffusers.FluxControlNetModel(**{**TRANSFORMER, "num_layers": 1, "num_single_layers": 1,
                                           "guidance_embeds": True, **config}).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net.save_pretrained(folder)
    return net


def assert_close(got: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4) -> None:
    """The same shape, and a max abs difference within ``tol`` (the FLUX parity tests' tolerance, float32 on CPU)."""
    assert got.shape == expected.shape, f"shape {tuple(got.shape)} != {tuple(expected.shape)}"
    diff = (got - expected).abs().max().item()
    assert diff <= tol, f"max abs diff {diff}"


# the original's modules: (its name, our modules whose output rows it holds, in order)
TOP = [("img_in", "x_embedder"), ("txt_in", "context_embedder"),
       ("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
       ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
       ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
       ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
       ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
       ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
       ("final_layer.linear", "proj_out")]
DOUBLE = [("img_attn.qkv", "attn.to_q", "attn.to_k", "attn.to_v"), ("img_attn.proj", "attn.to_out.0"),
          ("img_mlp.0", "ff.net.0.proj"), ("img_mlp.2", "ff.net.2"), ("img_mod.lin", "norm1.linear"),
          ("txt_attn.qkv", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
          ("txt_attn.proj", "attn.to_add_out"), ("txt_mlp.0", "ff_context.net.0.proj"), ("txt_mlp.2", "ff_context.net.2"),
          ("txt_mod.lin", "norm1_context.linear")]
DOUBLE_NORMS = [("img_attn.norm.query_norm", "attn.norm_q"), ("img_attn.norm.key_norm", "attn.norm_k"),
                ("txt_attn.norm.query_norm", "attn.norm_added_q"), ("txt_attn.norm.key_norm", "attn.norm_added_k")]
SINGLE = [("linear1", "attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), ("linear2", "proj_out"),
          ("modulation.lin", "norm.linear")]
SINGLE_NORMS = [("norm.query_norm", "attn.norm_q"), ("norm.key_norm", "attn.norm_k")]


def to_original(ours: dict, size: dict) -> dict:
    """``ours`` (diffusers' names) in the original layout, written from Black Forest Labs' model definition."""
    out = {}

    def fuse(name, *parts):
        for param in ("weight", "bias"):
            out[f"{name}.{param}"] = torch.cat([ours[f"{part}.{param}"] for part in parts]).contiguous()

    for name, part in TOP:
        fuse(name, part)
    scale, shift = ours["norm_out.linear.weight"].chunk(2), ours["norm_out.linear.bias"].chunk(2)
    out["final_layer.adaLN_modulation.1.weight"] = torch.cat((scale[1], scale[0]))  # the original: shift, scale
    out["final_layer.adaLN_modulation.1.bias"] = torch.cat((shift[1], shift[0]))
    for kind, count, fused, norms, prefix in (("double", size["num_layers"], DOUBLE, DOUBLE_NORMS, "transformer_blocks"),
                                              ("single", size["num_single_layers"], SINGLE, SINGLE_NORMS,
                                               "single_transformer_blocks")):
        for i in range(count):
            for name, *parts in fused:
                fuse(f"{kind}_blocks.{i}.{name}", *(f"{prefix}.{i}.{part}" for part in parts))
            for name, part in norms:
                out[f"{kind}_blocks.{i}.{name}.scale"] = ours[f"{prefix}.{i}.{part}.weight"]
    return out
