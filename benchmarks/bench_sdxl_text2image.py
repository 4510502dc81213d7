"""SDXL text-to-image on one tiny model, 20 steps, 64x64: diffblocks against diffusers' classic
StableDiffusionXLPipeline and diffusers' own modular SDXL blocks, on the same weights, interleaved.

Targets (issue 7): diffblocks <= 1.0x the classic pipeline's time and <= 0.85x diffusers' modular pipeline
(which runs the two CFG branches as separate forwards). diffusers is only the reference here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import references  # noqa: E402
from tiny_models import make_sdxl_repo  # noqa: E402

from diffblocks import SequentialPipelineBlocks  # noqa: E402
from diffblocks.presets.stable_diffusion_xl import TEXT2IMAGE_BLOCKS  # noqa: E402

KWARGS = dict(num_inference_steps=20, height=64, width=64, output_type="pt")


def load_all(repo: Path):
    ours = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(repo)
    ours.load_components()
    ours.set_progress_bar_config(disable=True)
    classic = references.classic_pipeline("StableDiffusionXLPipeline", repo)
    modular = references.modular_sdxl(repo)
    return {
        "diffblocks": lambda g: ours(prompt="a cat", generator=g, output="images", **KWARGS),
        "classic": lambda g: classic("a cat", guidance_scale=7.5, generator=g, **KWARGS).images,
        "diffusers-modular": lambda g: modular(prompt="a cat", generator=g, output="images", **KWARGS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    with tempfile.TemporaryDirectory() as tmp:
        runs = load_all(make_sdxl_repo(Path(tmp) / "sdxl"))
        outputs = {name: run(torch.Generator().manual_seed(0)) for name, run in runs.items()}  # warm-up
        times = {name: [] for name in runs}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run(torch.Generator().manual_seed(0))
                    times[name].append(time.perf_counter() - start)
    diff = (outputs["diffblocks"] - outputs["classic"]).abs().max().item()
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, value in median.items():
        print(f"{name:18s}: {value * 1000:8.1f} ms (median of {args.rounds}, 20 steps)")
    print(f"diffblocks / classic           : {median['diffblocks'] / median['classic']:.3f}x (target <= 1.0)")
    print(f"diffblocks / diffusers-modular : {median['diffblocks'] / median['diffusers-modular']:.3f}x (target <= 0.85)")
    print(f"max abs diff vs classic: {diff:.2e}")


if __name__ == "__main__":
    main()
