"""FLUX.1: transformer load time and a 4-step tiny text-to-image run, diffblocks against diffusers, in one run.

1. Load: a random FLUX-shaped transformer (4 double + 8 single blocks, width 512, dev config: about 72M
   parameters, float32) saved with diffusers, loaded with ``diffusers.FluxTransformer2DModel.from_pretrained``
   and ``diffblocks.components.FluxTransformer2DModel.from_pretrained``, interleaved, after one warm-up each
   (both read from the page cache); then the same forward on both, to show they are the same model.
2. Run: the tests' tiny FLUX.1-dev repo, 4 steps at 64x64, ``TEXT2IMAGE_BLOCKS`` against ``FluxPipeline``,
   interleaved; without and with true CFG (a negative prompt; diffblocks batches the two branches, diffusers
   runs two forwards).

Medians, minima and the ratios ours / diffusers are printed (< 1: diffblocks is faster). diffusers is only the
reference here (a test-only dependency).

Usage: python benchmarks/bench_flux.py [--repeats 5] [--dir DIR]
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
import references  # noqa: E402  (diffusers is imported only under tests/)
from tiny_flux import make_flux_repo, tiny_transformer  # noqa: E402

from diffblocks import SequentialPipelineBlocks  # noqa: E402
from diffblocks.components import FluxTransformer2DModel  # noqa: E402
from diffblocks.guiders import ClassifierFreeGuidance  # noqa: E402
from diffblocks.presets.flux import TEXT2IMAGE_BLOCKS  # noqa: E402

LOAD_CONFIG = dict(num_layers=4, num_single_layers=8, attention_head_dim=64, num_attention_heads=8,
                   joint_attention_dim=1024, pooled_projection_dim=256, axes_dims_rope=(8, 28, 28))
RUN = dict(num_inference_steps=4, height=64, width=64, max_sequence_length=32, output_type="pt", guidance_scale=3.5)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def interleaved(cases: dict, repeats: int) -> dict[str, list[float]]:
    """Each case once as warm-up, then ``repeats`` rounds of all cases in turn."""
    for fn in cases.values():
        fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn)[0])
    return times


def bench_load(directory: Path, repeats: int) -> None:
    Reference = references.model_class("FluxTransformer2DModel")

    torch.manual_seed(0)
    model = tiny_transformer(dev=True, **LOAD_CONFIG)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(directory)
    del model
    times = interleaved({"diffblocks": lambda: FluxTransformer2DModel.from_pretrained(directory),
                         "diffusers": lambda: Reference.from_pretrained(directory)}, repeats)
    report(f"transformer load ({params / 1e6:.0f}M params, float32)", times)
    ours, theirs = FluxTransformer2DModel.from_pretrained(directory), Reference.from_pretrained(directory)
    g = torch.Generator().manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, 256, 64, generator=g),
                  encoder_hidden_states=torch.randn(1, 32, 1024, generator=g),
                  pooled_projections=torch.randn(1, 256, generator=g), timestep=torch.tensor([0.5]),
                  img_ids=torch.zeros(256, 3), txt_ids=torch.zeros(32, 3), guidance=torch.tensor([3.5]))
    with torch.no_grad():
        diff = (ours(**inputs).sample - theirs(**inputs).sample).abs().max().item()
    print(f"  same forward: max abs diff {diff:.2e}")


def bench_run(directory: Path, repeats: int) -> None:
    repo = make_flux_repo(directory, dev=True)
    ours = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(repo)
    ours.load_components()
    ours.set_progress_bar_config(disable=True)
    cfg = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(repo)
    cfg.load_components()
    cfg.set_progress_bar_config(disable=True)
    cfg.update_components(guider=ClassifierFreeGuidance(guidance_scale=4.0))
    reference = references.classic_pipeline("FluxPipeline", repo)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    times = interleaved({
        "diffblocks": lambda: ours(prompt="a cat", generator=gen(), output="images", **RUN),
        "diffusers": lambda: reference("a cat", generator=gen(), **RUN).images,
    }, repeats)
    report("text-to-image, 4 steps, 64x64 (dev, distilled guidance)", times)
    negative = dict(negative_prompt="blurry", **RUN)
    times = interleaved({
        "diffblocks": lambda: cfg(prompt="a cat", generator=gen(), output="images", **negative),
        "diffusers": lambda: reference("a cat", true_cfg_scale=4.0, generator=gen(), **negative).images,
    }, repeats)
    report("text-to-image, 4 steps, 64x64, true CFG 4.0 with a negative prompt", times)
    a = cfg(prompt="a cat", generator=gen(), output="images", **negative)
    b = reference("a cat", true_cfg_scale=4.0, generator=gen(), **negative).images
    print(f"  same images: max abs diff {(a - b).abs().max().item():.2e}")


def report(title: str, times: dict[str, list[float]]) -> None:
    """Medians and minima (the minimum is the steadier number on a shared machine) and their ratios."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    minima = {name: min(values) for name, values in times.items()}
    print(title)
    for name in times:
        print(f"  {name:<11} median {medians[name] * 1000:8.1f} ms, min {minima[name] * 1000:8.1f} ms "
              f"({len(times[name])} runs)")
    print(f"  ratio diffblocks / diffusers: median {medians['diffblocks'] / medians['diffusers']:.2f}, "
          f"min {minima['diffblocks'] / minima['diffusers']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the checkpoints (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        bench_load(Path(tmp) / "transformer", args.repeats)
        bench_run(Path(tmp) / "repo", args.repeats)


if __name__ == "__main__":
    main()
