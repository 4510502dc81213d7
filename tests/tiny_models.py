"""Tiny random standard-format repos built with diffusers (a test-only dependency), saved to disk.

Nothing is downloaded: the CLIP tokenizer is a byte-level BPE vocabulary without merges, written here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SEED = 0


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tiny_tokenizer(path: Path, max_length: int = 16):
    from transformers import CLIPTokenizer

    path.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = {}
    for ch in chars:
        vocab[ch] = len(vocab)
    for ch in chars:
        vocab[ch + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"), model_max_length=max_length)
    tokenizer.save_pretrained(path)
    return tokenizer


def tiny_clip(tokenizer, projection: bool = False, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
        vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length, projection_dim=32,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def tiny_unet(in_channels: int = 4, cross_attention_dim: int = 32, sdxl: bool = False):
    from diffusers import UNet2DConditionModel

    kwargs = dict(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, norm_num_groups=8, attention_head_dim=(2, 4),
    )
    if sdxl:
        kwargs.update(use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                      transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=32 + 6 * 8)
    return UNet2DConditionModel(**kwargs).eval()


def tiny_vae(sdxl: bool = False):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=32, force_upcast=sdxl,
    ).eval()


def make_sd_repo(path: Path, in_channels: int = 4) -> Path:
    """A standard StableDiffusionPipeline repo (DDIM scheduler) at ``path``."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(SEED)
    tokenizer = write_tiny_tokenizer(path / "_tok")
    pipe = StableDiffusionPipeline(
        unet=tiny_unet(in_channels), vae=tiny_vae(), text_encoder=tiny_clip(tokenizer), tokenizer=tokenizer,
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def make_sdxl_repo(path: Path) -> Path:
    """A standard StableDiffusionXLPipeline repo (Euler scheduler) at ``path``."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    torch.manual_seed(SEED)
    tokenizer = write_tiny_tokenizer(path / "_tok")
    pipe = StableDiffusionXLPipeline(
        unet=tiny_unet(cross_attention_dim=64, sdxl=True), vae=tiny_vae(sdxl=True),
        text_encoder=tiny_clip(tokenizer), text_encoder_2=tiny_clip(tokenizer, projection=True),
        tokenizer=tokenizer, tokenizer_2=tokenizer,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="leading"),
    )
    pipe.save_pretrained(path)
    return path


def make_image(seed: int = 0, size: int = 32):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def make_mask(size: int = 32):
    from PIL import Image

    mask = torch.zeros(size, size, dtype=torch.uint8)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    return Image.fromarray(mask.numpy())


def build_pipeline(blocks, repo, components_manager=None, collection=None):
    """A pipeline of ``blocks`` (a preset dict) on ``repo``, components loaded, progress bars off."""
    from diffblocks import SequentialPipelineBlocks

    pipe = SequentialPipelineBlocks.from_blocks_dict(blocks).init_pipeline(
        repo, components_manager=components_manager, collection=collection)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    return pipe
