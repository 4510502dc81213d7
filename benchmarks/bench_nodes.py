"""The node engine on the embedded digits model, DDIM, 20 steps, interleaved rounds in one run:

1. overhead: a leaf-block workflow that computes every node (new prompt and seed each round; the loader stays
   cached) over the pipeline call of the same blocks with the same inputs (target <= 1.03x);
2. a seed change: the engine's rerun (latents, denoise, decode) over running the denoise and decode blocks
   alone on the same inputs (target <= 1.05x);
3. an identical job, returned from the cache (milliseconds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from node_workflows import changed, leaf_text2image  # noqa: E402

from diffblocks import SequentialPipelineBlocks  # noqa: E402
from diffblocks.nodes import Executor  # noqa: E402
from diffblocks.presets.stable_diffusion import TEXT2IMAGE_BLOCKS  # noqa: E402

STEPS = 20


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    executor = Executor(preview_every=0)
    base = leaf_text2image("embedded", steps=STEPS)
    bundle = executor.run(base, targets=["load"])["load"]["components"]
    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline()
    pipe.update_components(**{n: c for n, c in bundle.components.items() if n in pipe.component_names})
    pipe.set_progress_bar_config(disable=True)
    tail = SequentialPipelineBlocks.from_blocks_dict({"denoise": TEXT2IMAGE_BLOCKS["denoise"], "decode": TEXT2IMAGE_BLOCKS["decode"]})
    tail_pipe = tail.init_pipeline()
    tail_pipe.update_components(**{n: c for n, c in bundle.components.items() if n in tail_pipe.component_names})
    tail_pipe.set_progress_bar_config(disable=True)

    times: dict[str, list[float]] = {k: [] for k in ("pipeline", "engine", "tail", "reseed", "identical")}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        prompt, seed = f"a handwritten digit {round_ % 10}", 100 + round_
        workflow = changed(changed(base, "text", prompt=prompt), "latents", seed=seed)
        engine, outputs = timed(lambda: executor.run(workflow))
        pipeline, image = timed(lambda: pipe(prompt=prompt, num_inference_steps=STEPS, output_type="pt", output="images",
                                             generator=torch.Generator().manual_seed(seed)))
        assert torch.equal(outputs["decode"]["images"], image), "the engine and the pipeline disagree"
        reseeded = changed(workflow, "latents", seed=seed + 1000)
        reseed, outputs = timed(lambda: executor.run(reseeded))
        given = {name: outputs[node][name] for node, name in (
            ("latents", "latents"), ("steps", "timesteps"), ("steps", "num_inference_steps"),
            ("input", "prompt_embeds"), ("input", "negative_prompt_embeds"))}
        scheduler = outputs["latents"]["scheduler"]
        tail_pipe.update_components(scheduler=scheduler)
        tail_time, _ = timed(lambda: tail_pipe(**given, output_type="pt", output="images"))
        identical, _ = timed(lambda: executor.run(reseeded))
        if round_:
            for key, value in zip(times, (pipeline, engine, tail_time, reseed, identical)):
                times[key].append(value)

    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"embedded model, DDIM, {STEPS} steps, median of {args.rounds} rounds (1 thread)")
    print(f"pipeline call          {median['pipeline'] * 1000:8.1f} ms")
    print(f"workflow, all nodes    {median['engine'] * 1000:8.1f} ms   overhead {median['engine'] / median['pipeline']:.3f}x (target <= 1.03)")
    print(f"denoise + decode alone {median['tail'] * 1000:8.1f} ms")
    print(f"seed change rerun      {median['reseed'] * 1000:8.1f} ms   {median['reseed'] / median['tail']:.3f}x (target <= 1.05)")
    print(f"identical job (cached) {median['identical'] * 1000:8.2f} ms")


if __name__ == "__main__":
    main()
