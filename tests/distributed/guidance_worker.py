"""Renders the guidance cases of test_guidance.py on the embedded model, one torch thread.

    python guidance_worker.py OUT_DIR                               # one process, the reference
    torchrun --nproc_per_node 2 guidance_worker.py OUT_DIR --parallel

Each rank saves ``{case}-rank{rank}.pt`` (the images as a float tensor, ``output_type="pt"``); the reference
also saves ``{case}-split-rank0.pt``, rendered with ``split_guidance_batches=True`` (each branch its own forward).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

CASES = {
    # name: (guider class, guider kwargs, prompts)
    "cfg": ("ClassifierFreeGuidance", {"guidance_scale": 7.5}, ["a seven", "a three"]),
    "pag": ("PerturbedAttentionGuidance", {"perturbed_guidance_layers": [0], "perturbed_guidance_stop": 0.5},
            ["a seven", "a three"]),
    "cfg-one-image": ("ClassifierFreeGuidance", {"guidance_scale": 7.5}, ["a seven"]),
    "one-branch": ("ClassifierFreeGuidance", {"guidance_scale": 1.0}, ["a seven", "a three"]),
}
STEPS = 4


def pipeline():
    from diffblocks import SequentialPipelineBlocks
    from diffblocks.presets import embedded_model_path
    from diffblocks.presets.stable_diffusion import TEXT2IMAGE_BLOCKS

    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(str(embedded_model_path()))
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe, case: str, **call) -> torch.Tensor:
    from diffblocks import guiders

    class_name, kwargs, prompts = CASES[case]
    pipe.update_components(guider=getattr(guiders, class_name)(**kwargs))
    generators = [torch.Generator().manual_seed(7 + i) for i in range(len(prompts))]
    return pipe(prompt=prompts, generator=generators, num_inference_steps=STEPS, output_type="pt", output="images",
                **call)


def main(out_dir: str, parallel: bool) -> None:
    torch.set_num_threads(1)
    rank = 0
    pipe = pipeline()
    if parallel:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank = dist.get_rank()
        pipe.enable_guidance_parallel()
    for case in CASES:
        torch.save(render(pipe, case), Path(out_dir) / f"{case}-rank{rank}.pt")
        if not parallel:
            torch.save(render(pipe, case, split_guidance_batches=True), Path(out_dir) / f"{case}-split-rank0.pt")
    if parallel:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], "--parallel" in sys.argv[2:])
