"""Guidance-parallel denoising on the embedded model: 2 gloo processes (torchrun) against one process.

What is bitwise and what is not: the parallel run always equals, bit for bit, one process that runs each
branch as its own forward (``split_guidance_batches=True``), because each rank's forward is exactly such a
forward. Against one process that batches every branch into one forward it is bitwise when the batch
sizes take the same CPU kernels (CFG on two images: per-rank batches of 2 against one batch of 4), and
within 1e-5 (measured: under 4e-6) when they do not: a batch of one row (CFG on one image) and PAG's batch
of six rows (against 4 + 2 on the ranks) make MKL's sgemm take other code paths, e.g. in the UNet's
``time_embedding.linear_2``, so the last bits of a float differ.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffblocks.components.errors import DistributedError

WORKER = Path(__file__).with_name("guidance_worker.py")
BIN = Path(sys.executable).parent
BITWISE = ["cfg", "one-branch"]               # same kernels either way
KERNEL_BOUND = ["pag", "cfg-one-image"]       # batch sizes 6 vs 4+2, and 2 vs 1+1
TOLERANCE = 1e-5


def _run(command, out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*map(str, command), str(out), *(["--parallel"] if "torchrun" in str(command[0]) else [])],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    one, two = tmp_path_factory.mktemp("one-process"), tmp_path_factory.mktemp("two-processes")
    _run([sys.executable, WORKER], one)
    _run([BIN / "torchrun", "--nproc_per_node", "2", WORKER], two)

    def load(case: str, parallel: bool, rank: int = 0, split: bool = False) -> torch.Tensor:
        return torch.load((two if parallel else one) / f"{case}{'-split' if split else ''}-rank{rank}.pt")

    return load


@pytest.mark.slow
@pytest.mark.parametrize("case", BITWISE + KERNEL_BOUND)
def test_both_ranks_end_with_the_same_images(renders, case):
    assert torch.equal(renders(case, True, rank=0), renders(case, True, rank=1))


@pytest.mark.slow
@pytest.mark.parametrize("case", BITWISE + KERNEL_BOUND)
def test_parallel_is_bitwise_one_process_running_each_branch_alone(renders, case):
    assert torch.equal(renders(case, True), renders(case, False, split=True))


@pytest.mark.slow
@pytest.mark.parametrize("case", BITWISE)
def test_parallel_is_bitwise_one_batched_process_when_the_kernels_match(renders, case):
    assert torch.equal(renders(case, True), renders(case, False))


@pytest.mark.slow
@pytest.mark.parametrize("case", KERNEL_BOUND)
def test_parallel_is_within_float_rounding_of_one_batched_process_otherwise(renders, case):
    parallel, batched = renders(case, True), renders(case, False)
    assert torch.allclose(parallel, batched, rtol=0, atol=TOLERANCE)


class _OneProcessRunner:
    """Stands in for GuidanceParallel on one process: runs each rank's chunk (here: each branch) in turn."""

    def __init__(self):
        self.steps = []

    def run(self, branches, run_branches, device):
        self.steps.append([b.name for b in branches])
        preds = {}
        for branch in branches:
            preds.update(run_branches([branch]))
        return preds


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_denoiser_hands_its_branches_to_the_pipeline_runner(one_thread):
    spec = importlib.util.spec_from_file_location("guidance_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    pipe = worker.pipeline()
    reference = worker.render(pipe, "pag", split_guidance_batches=True)
    runner = pipe.guidance_parallel = _OneProcessRunner()
    assert torch.equal(worker.render(pipe, "pag"), reference)
    assert runner.steps[1] == ["pred_cond", "pred_uncond", "pred_cond_skip"] and len(runner.steps) == worker.STEPS


def test_enabling_without_torch_distributed_says_how_to_start_it():
    from diffblocks import ModularPipeline, SequentialPipelineBlocks

    pipe = ModularPipeline(SequentialPipelineBlocks.from_blocks_dict({}))
    with pytest.raises(DistributedError, match="init_process_group first .or start the script with torchrun"):
        pipe.enable_guidance_parallel()


@pytest.mark.parametrize("world, names, chunks", [
    (2, "c u", [["c"], ["u"]]),
    (2, "c u p", [["c", "u"], ["p"]]),
    (2, "c", [["c"], []]),
    (3, "c u", [["c"], ["u"], []]),
    (4, "c u p", [["c"], ["u"], ["p"], []]),
])
def test_branches_are_cut_in_contiguous_chunks_one_per_rank(world, names, chunks):
    from diffblocks.distributed.guidance import GuidanceParallel

    runner = object.__new__(GuidanceParallel)
    runner.world = world
    assert runner.chunks(names.split()) == chunks


def test_the_pipeline_method_hands_its_process_group_on(monkeypatch):
    from diffblocks import SequentialPipelineBlocks
    from diffblocks.distributed import guidance
    from diffblocks.presets import embedded_model_path, stable_diffusion

    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(
        embedded_model_path())
    seen = []
    monkeypatch.setattr(guidance, "enable_guidance_parallel", lambda *args: seen.append(args))
    pipe.enable_guidance_parallel()
    pipe.enable_guidance_parallel(group="a subgroup")
    assert seen == [(pipe, None), (pipe, "a subgroup")]
