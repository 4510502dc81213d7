"""Train the tiny text-to-image model shipped in ``presets/tiny_digits`` (scikit-learn's handwritten digits).

Runs on a CPU in minutes and needs no download: the digits come with scikit-learn, the tokenizer is the
committed CLIP vocabulary. Three stages, all seeded:

1. a small ``AutoencoderKL`` (32x32 RGB <-> 4x8x8 latents) on the digits, upsampled and lightly jittered;
2. its latents, scaled to unit variance (``scaling_factor``, as Stable Diffusion's VAE has);
3. a ``UNet2DConditionModel`` with cross-attention and a tiny ``CLIPTextModel``, trained together on the
   noise-prediction loss (min-SNR weighted, Hang et al. 2023) with prompts such as "a handwritten digit
   seven", "the number 7" or "7", and 10% empty prompts so that classifier-free guidance works.

The result is a standard diffusers-format ``StableDiffusionPipeline`` folder (weights stored in float16,
loaded as float32) that ``SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(folder)``
loads. Usage::

    python examples/train_tiny_digits.py                      # writes ./tiny_digits_retrained
    python examples/train_tiny_digits.py --out /tmp/digits --unet-steps 500
    python examples/train_tiny_digits.py --replace-shipped    # overwrites presets/tiny_digits
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as hf_logging

from diffblocks.components.models import AutoencoderKL, UNet2DConditionModel
from diffblocks.components.schedulers import DDIMScheduler

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "presets" / "tiny_digits"
TOKENIZER = DEFAULT_OUT / "tokenizer"
SIZE = 32
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = [
    "a handwritten digit {w}", "a handwritten digit {d}", "a handwritten {w}", "a handwritten {d}",
    "the number {w}", "the number {d}", "number {d}", "the digit {w}", "the digit {d}", "digit {d}",
    "{w}", "{d}", "a {w}", "a picture of the number {w}", "an image of the digit {d}", "a drawing of a {d}",
]
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


def prompts_for(digit: int) -> list[str]:
    """Every training prompt for ``digit``."""
    return [t.format(w=WORDS[digit], d=digit) for t in TEMPLATES]


# --- data -----------------------------------------------------------------------------------------


def digit_ink() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 digits as ink in [0, 1], upsampled to 32x32 (bicubic), and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    ink = F.interpolate(ink, size=SIZE, mode="bicubic", align_corners=False).clamp(0, 1)
    return ink, torch.tensor(digits.target)


def to_pixels(ink: torch.Tensor) -> torch.Tensor:
    """Black ink on white paper, RGB in [-1, 1] (the VAE's input range)."""
    return (1 - 2 * ink).repeat(1, 3, 1, 1)


def jitter(ink: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small random rotations (+-8 deg), scalings (+-6%) and shifts (+-1.5 px), for variety."""
    n = ink.shape[0]
    uniform = lambda *shape: torch.rand(*shape, generator=generator) * 2 - 1  # noqa: E731
    angle, scale = uniform(n) * math.radians(8), 1 + uniform(n) * 0.06
    shift = uniform(n, 2) * 1.5 * 2 / SIZE
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(ink.shape), align_corners=False)
    return F.grid_sample(ink, grid, padding_mode="zeros", align_corners=False)


# --- models ---------------------------------------------------------------------------------------


def build_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=8, sample_size=SIZE, force_upcast=False,
    )


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length, projection_dim=32, hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=SIZE // 4, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
    )


def cosine_lr(optimizer: torch.optim.Optimizer, steps: int, warmup: int = 100) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def log(stage: str, step: int, steps: int, loss: float, start: float) -> None:
    if step % 200 == 0 or step == steps - 1:
        print(f"  {stage} step {step + 1}/{steps}  loss {loss:.4f}  ({time.time() - start:.0f}s)", flush=True)


# --- stage 1: the VAE -----------------------------------------------------------------------------


def train_vae(ink: torch.Tensor, steps: int, batch: int, generator: torch.Generator, kl_weight: float = 1e-3):
    """Reconstruction (summed squared error per image) plus a small KL term."""
    vae = build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = cosine_lr(optimizer, steps)
    start = time.time()
    for step in range(steps):
        idx = torch.randint(0, ink.shape[0], (batch,), generator=generator)
        pixels = to_pixels(jitter(ink[idx], generator))
        posterior = vae.encode(pixels).latent_dist
        recon = vae.decode(posterior.sample(generator)).sample
        rec_loss = (recon - pixels).pow(2).sum(dim=(1, 2, 3)).mean()
        loss = rec_loss + kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        log("vae", step, steps, rec_loss.item() / pixels[0].numel(), start)
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, ink: torch.Tensor, copies: int, generator: torch.Generator):
    """Posterior means and standard deviations of the digits and ``copies`` jittered versions of each."""
    means, stds = [], []
    for copy_index in range(copies + 1):
        version = ink if copy_index == 0 else jitter(ink, generator)
        for chunk in to_pixels(version).split(256):
            dist = vae.encode(chunk).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


# --- stage 3: the UNet and the text encoder -------------------------------------------------------


class PromptBank:
    """Token ids of every training prompt (and the empty prompt), grouped by digit."""

    def __init__(self, tokenizer: CLIPTokenizer):
        texts = [p for d in range(10) for p in prompts_for(d)] + [""]
        self.ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                             return_tensors="pt").input_ids
        self.per_digit = len(TEMPLATES)
        self.empty = len(texts) - 1

    def sample(self, digits: torch.Tensor, drop: float, generator: torch.Generator) -> torch.Tensor:
        """One prompt per digit, replaced by the empty prompt with probability ``drop``."""
        which = digits * self.per_digit + torch.randint(0, self.per_digit, digits.shape, generator=generator)
        dropped = torch.rand(digits.shape, generator=generator) < drop
        return self.ids[torch.where(dropped, torch.full_like(which, self.empty), which)]


def min_snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
    return torch.clamp(snr, max=gamma) / snr


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float = 0.999) -> None:
    rate = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - rate)


def train_unet(latents, labels, bank: PromptBank, text_encoder, steps: int, prompts: int, per_prompt: int,
               generator: torch.Generator):
    """Noise prediction on the scaled latents; each batch is ``prompts`` prompts x ``per_prompt`` images."""
    mean, std = latents
    unet = build_unet()
    scheduler = DDIMScheduler(**SCHEDULER)
    alphas_cumprod = scheduler.alphas_cumprod
    pools = [torch.nonzero(labels.repeat(mean.shape[0] // labels.shape[0]) == d).flatten() for d in range(10)]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    schedule = cosine_lr(optimizer, steps)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    start = time.time()
    for step in range(steps):
        digits = torch.randint(0, 10, (prompts,), generator=generator)
        ids = bank.sample(digits, drop=0.1, generator=generator)
        picks = [torch.randint(0, len(pools[d]), (per_prompt,), generator=generator) for d in digits]
        idx = torch.cat([pools[d][pick] for d, pick in zip(digits, picks)])
        x0 = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, len(alphas_cumprod), (x0.shape[0],), generator=generator)
        states = text_encoder(ids)[0].repeat_interleave(per_prompt, dim=0)
        pred = unet(scheduler.add_noise(x0, noise, t), t, states, return_dict=False)[0]
        loss = (min_snr_weights(alphas_cumprod, t) * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        update_ema(ema_unet, unet, step)
        update_ema(ema_text, text_encoder, step)
        log("unet", step, steps, loss.item(), start)
    return ema_unet.eval(), ema_text.eval()


README = """\
# tiny_digits

A tiny text-to-image model in the layout of a Stable Diffusion 1.5 repository (`model_index.json`,
`tokenizer/`, `text_encoder/`, `unet/`, `vae/`, `scheduler/`), trained on scikit-learn's bundled 8x8
handwritten digits upsampled to 32x32. It draws a digit from prompts such as "a handwritten digit seven",
"the number 7" or "7" through diffblocks' SD 1.5 text-to-image preset, so the demo and the tests run
offline. It is not a general image model.

| part | what |
| --- | --- |
| `tokenizer/` | CLIP's BPE vocabulary (49,408 tokens, MIT licence: `tokenizer/LICENSE`), converted by `examples/convert_clip_vocab.py`; ids are those of Stable Diffusion's tokenizer |
| `text_encoder/` | transformers `CLIPTextModel`, hidden size 32, 2 layers |
| `unet/` | `UNet2DConditionModel`, channels (32, 64), cross-attention at 4x4, on 4x8x8 latents |
| `vae/` | `AutoencoderKL`, channels (16, 32, 32): 32x32 RGB <-> 4x8x8 |
| `scheduler/` | `DDIMScheduler` with Stable Diffusion's training schedule |

Weights are stored in float16 ({megabytes:.1f} MB in all) and load as float32.

## Training

    {command}

Seed {seed}; {minutes:.1f} minutes ({seconds:.0f} s) with {threads} torch thread(s) on a {cores}-core {cpu} machine
(torch {torch}; its 15-minute load average was {load:.1f} at the end, other jobs sharing it). The same
command, seed and thread count give the same weights up to floating-point differences between machines.
Check a retrained model with `pytest tests/presets/test_tiny_digits.py`.
"""


# --- saving ---------------------------------------------------------------------------------------


def halve(folder: Path) -> None:
    """Store a folder's safetensors weights in float16 (configs still say float32, so they load as float32)."""
    for path in folder.glob("*.safetensors"):
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})
        path.chmod(0o644)


def save_repo(out: Path, vae, unet, text_encoder, tokenizer_dir: Path) -> None:
    """A diffusers-format StableDiffusionPipeline folder."""
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir.resolve() != (out / "tokenizer").resolve():
        shutil.copytree(tokenizer_dir, out / "tokenizer", dirs_exist_ok=True)
    for name, model in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder)):
        shutil.rmtree(out / name, ignore_errors=True)
        model.save_pretrained(out / name)
        halve(out / name)
    DDIMScheduler(**SCHEDULER).save_config(out / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.35.0",
        "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
        "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def write_readme(out: Path, command: str, seed: int, seconds: float) -> None:
    size = sum(p.stat().st_size for p in out.rglob("*.safetensors"))
    (out / "README.md").write_text(README.format(
        command=command, seed=seed, minutes=seconds / 60, seconds=seconds, threads=torch.get_num_threads(),
        cores=os.cpu_count(), cpu=platform.machine(), torch=torch.__version__, megabytes=size / 1e6,
        load=os.getloadavg()[2],
    ))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; the shipped model's folder only with ``--replace-shipped``."""
    parser = argparse.ArgumentParser(description="Train the tiny digits text-to-image model.")
    parser.add_argument("--out", type=Path, default=Path("tiny_digits_retrained"),
                        help="model folder to write (default: ./tiny_digits_retrained)")
    parser.add_argument("--replace-shipped", action="store_true",
                        help=f"write into {DEFAULT_OUT.relative_to(ROOT)}, replacing the model the package ships")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=500)
    parser.add_argument("--unet-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64, help="images per UNet step (4 per prompt)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is robust on a shared or busy machine; results depend on it)")
    args = parser.parse_args(argv)
    shipped = args.out.resolve() == DEFAULT_OUT.resolve()
    if shipped and not args.replace_shipped:
        parser.error(f"--out {args.out} is the shipped model; add --replace-shipped to overwrite it")
    if args.replace_shipped:
        args.out = DEFAULT_OUT
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # tiny weights late in training would otherwise slow the CPU down
    hf_logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.time()
    ink, labels = digit_ink()
    print(f"stage 1/3: VAE on {len(labels)} digits", flush=True)
    vae = train_vae(ink, args.vae_steps, batch=32, generator=generator)
    mean, std = encode_dataset(vae, ink, copies=3, generator=generator)
    scale = 1.0 / (mean + std * torch.randn(mean.shape, generator=generator)).std().item()
    vae.register_to_config(scaling_factor=round(scale, 5))
    print(f"stage 2/3: {mean.shape[0]} latents, scaling_factor {scale:.4f}", flush=True)
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER)
    text_encoder = build_text_encoder(tokenizer)
    print("stage 3/3: UNet and text encoder", flush=True)
    unet, text_encoder = train_unet((mean * scale, std * scale), labels, PromptBank(tokenizer), text_encoder,
                                    args.unet_steps, prompts=args.batch // 4, per_prompt=4, generator=generator)
    seconds = time.time() - start
    save_repo(args.out, vae, unet, text_encoder, TOKENIZER)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:]))
    write_readme(args.out, command, args.seed, seconds)
    print(f"trained in {seconds / 60:.1f} min; wrote {args.out}")


if __name__ == "__main__":
    main()
