"""PAG + CFG on the tiny SDXL model, 20 steps: UNet forwards per step and time, diffblocks against
diffusers' modular SDXL pipeline with its PerturbedAttentionGuidance, same weights, interleaved.

Targets (issue 8): 1 batched forward per step; diffblocks at most 0.7x diffusers' modular time.
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
from diffblocks.guiders import LayerSkipConfig, PerturbedAttentionGuidance  # noqa: E402
from diffblocks.presets.stable_diffusion_xl import TEXT2IMAGE_BLOCKS  # noqa: E402

STEPS = 20
KWARGS = dict(num_inference_steps=STEPS, height=64, width=64, output_type="pt")
PAG = dict(guidance_scale=7.5, perturbed_guidance_scale=3.0, perturbed_guidance_start=0.0, perturbed_guidance_stop=1.0)
LAYERS = dict(indices=[0], fqn="mid_block.attentions.0.transformer_blocks", skip_attention=False,
              skip_attention_scores=True, skip_ff=False)


class Counter:
    """Counts forwards of a module (a forward pre-hook, removed at the end)."""

    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.calls += 1


def load(repo: Path):
    ours = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(repo)
    ours.load_components()
    ours.set_progress_bar_config(disable=True)
    ours.update_components(guider=PerturbedAttentionGuidance(**PAG, perturbed_guidance_config=LayerSkipConfig(**LAYERS)))
    ref = references.modular_sdxl(repo, guider_kwargs=PAG, layer_skip=LAYERS)
    return {
        "diffblocks": (ours.unet, lambda: ours(prompt="a cat", generator=torch.Generator().manual_seed(0), **KWARGS)),
        "diffusers-modular": (ref.unet, lambda: ref(prompt="a cat", generator=torch.Generator().manual_seed(0), **KWARGS)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = load(make_sdxl_repo(Path(tmp) / "sdxl"))
        forwards = {}
        for name, (unet, run) in runs.items():
            counter = Counter(unet)
            run()
            counter.handle.remove()
            forwards[name] = counter.calls / STEPS
        times = {name: [] for name in runs}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for name, (_, run) in runs.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    for name in runs:
        print(f"{name:18s}: {forwards[name]:.2f} UNet forwards per step, {median[name] * 1000:8.1f} ms (median of {args.rounds})")
    print(f"diffblocks / diffusers-modular: {median['diffblocks'] / median['diffusers-modular']:.3f}x (target <= 0.7)")
    print(f"forwards per step: {forwards['diffblocks']:.2f} (target 1)")


if __name__ == "__main__":
    main()
