"""Guidance-parallel denoising: a guider's branches (cond / uncond / perturbed) on different ranks.

Every rank runs the whole pipeline on the same inputs, so each holds the same latents, guider state and
branch list at every step. Only the model forward over the branches is shared out, as xDiT's CFG
parallelism does: the branches are cut into contiguous chunks, one per rank (CFG on 2 ranks: cond on rank 0,
uncond on rank 1; PAG: cond and uncond on rank 0, the perturbed branch on rank 1), each rank runs the
forward of its own chunk (perturbations applied to its rows, as in a one-process forward), and an
``all_gather`` hands every rank all the predictions in branch order. The guider then combines exactly the
tensors one process would have, and every rank goes on with the same next latents.

Bitwise equality with one process holds when the forwards compute each row the same whatever the batch
size. On CPU that is so for batches of two rows or more, but a batch of one row takes other matmul and
convolution kernels (so CFG on a single image gives per-rank batches of one and differs from one process
in the last bits); GPU kernels may also depend on the batch size.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch

from ..components.errors import DistributedError

RunBranches = Callable[[Sequence], Mapping[str, torch.Tensor]]


def _dist():
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise DistributedError.not_initialized("guidance-parallel denoising")
    return dist


class GuidanceParallel:
    """Runs each step's guidance branches on the ranks of a torch.distributed process group.

    Args:
        group: the process group (None: the default group). Every rank of it must run the same pipeline
            call with the same inputs.

    Raises:
        DistributedError: torch.distributed is not initialised.
    """

    def __init__(self, group=None):
        dist = _dist()
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)

    def chunks(self, branches: Sequence) -> list[list]:
        """The branches each rank runs: contiguous chunks of ``ceil(len / world)``, the last ones maybe empty."""
        size = max(1, math.ceil(len(branches) / self.world))
        return [list(branches[r * size:(r + 1) * size]) for r in range(self.world)]

    def run(self, branches: Sequence, run_branches: RunBranches, device: torch.device) -> dict[str, torch.Tensor]:
        """Every branch's prediction, in branch order, with this rank running only its own chunk.

        Args:
            branches: the guider's branches for this step (the same list on every rank).
            run_branches: runs the forward of some branches on this rank; returns ``{branch name: prediction}``.
            device: where the predictions belong (the model input's device).
        """
        chunks = self.chunks(branches)
        mine = chunks[self.rank]
        local = run_branches(mine) if mine else {}
        like = local[mine[0].name] if mine else None
        if not all(chunks):  # some rank has no branch this step: it learns the prediction's shape from rank 0
            like = self._broadcast_like(like, device)
        stacked = torch.zeros((len(chunks[0]), *like.shape), dtype=like.dtype, device=like.device)
        for j, branch in enumerate(mine):
            stacked[j] = local[branch.name]
        gathered = self._all_gather(stacked)
        return {b.name: gathered[r][j] for r, chunk in enumerate(chunks) for j, b in enumerate(chunk)}

    def _broadcast_like(self, pred: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """An empty tensor of rank 0's prediction's shape and dtype (rank 0 always runs the first branch)."""
        dist = _dist()
        meta = torch.zeros(2 + _MAX_DIMS, dtype=torch.int64)
        if pred is not None:
            meta[0], meta[1] = pred.ndim, _DTYPES.index(pred.dtype)
            meta[2:2 + pred.ndim] = torch.tensor(pred.shape)
        meta = meta.to(device if dist.get_backend(self.group) == "nccl" else "cpu")
        source = 0 if self.group is None else dist.get_global_rank(self.group, 0)
        dist.broadcast(meta, src=source, group=self.group)
        meta = meta.tolist()
        return torch.empty(meta[2:2 + meta[0]], dtype=_DTYPES[meta[1]], device=device)

    def _all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        dist = _dist()
        # gloo gathers CPU tensors only: go through the CPU (an exact copy both ways)
        via_cpu = tensor.device.type != "cpu" and dist.get_backend(self.group) == "gloo"
        sent = tensor.cpu() if via_cpu else tensor.contiguous()
        out = [torch.empty_like(sent) for _ in range(self.world)]
        dist.all_gather(out, sent, group=self.group)
        return [t.to(tensor.device) for t in out] if via_cpu else out


_MAX_DIMS = 8
_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def enable_guidance_parallel(pipe, group=None) -> GuidanceParallel:
    """Make ``pipe`` run its guider's branches on the ranks of ``group`` (see the module docstring); the
    denoisers read it as ``components.guidance_parallel``. Returns the runner."""
    runner = GuidanceParallel(group)
    pipe.guidance_parallel = runner
    return runner
