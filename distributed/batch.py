"""Render many prompts, one PNG each, on one process or on every process of a torch.distributed run.

Under ``torchrun`` / ``accelerate launch`` each process holds its own pipeline; accelerate's
``PartialState.split_between_processes`` gives each rank a contiguous share of the items still to render
(rank 0 decides which those are and broadcasts the list, so every rank splits the same list). Item ``i``
is rendered alone, with ``torch.Generator().manual_seed(base + i)``: its bytes depend neither on how
many processes run nor on ``batch_size``. (Rendering several items in one batched forward would not keep
that promise: on CPU a batch of one takes other matmul/convolution kernels than a batch of two, and the
last bits of the images differ; so ``batch_size`` only sets how many items a rank renders between two
progress updates.)

The ranks meet once per round of ``batch_size`` items to add up what was done (rank 0's single progress
bar shows it) and whether any rank failed: a failure stops every rank at the end of that round instead of
leaving the others waiting forever. See :mod:`.manifest` for the manifest and how a rerun resumes.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..components.errors import BatchError, BatchItemError, DistributedError
from .manifest import BatchItem, PartWriter, done_entries, merge_manifest, sha256_of

# inputs whose JSON value is an image file (a path relative to the prompts file's folder)
IMAGE_INPUTS = ("image", "mask_image", "control_image", "ip_adapter_image")


@dataclass
class BatchReport:
    """What a batch run did: items in all, skipped as already done, rendered now (by every rank), and the
    seconds from the moment the ranks met to the merged manifest."""

    total: int
    skipped: int
    rendered: int
    seconds: float


def check_images(items: list[BatchItem], path: str, base: Path) -> None:
    """Every image input of every item names an image file (relative to ``base``, the prompts file's folder),
    checked by its header before any model loads.

    Raises:
        BatchError: naming the line, the input and the file.
    """
    from PIL import Image, UnidentifiedImageError

    for item in items:
        for name in IMAGE_INPUTS:
            if name not in item.inputs:
                continue
            value = item.inputs[name]
            if not isinstance(value, str):
                raise BatchError.bad_line(path, item.line, f"'{name}' must be an image file's path, got {value!r}")
            try:
                with Image.open(base / value):
                    pass
            except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
                problem = "no such file" if not (base / value).is_file() else f"not an image ({err})"
                raise BatchError.bad_line(path, item.line, f"'{name}': {value}: {problem}") from err


def _open_images(inputs: dict[str, Any], base: Path) -> dict[str, Any]:
    from PIL import Image

    opened = dict(inputs)
    for name in IMAGE_INPUTS:
        if isinstance(opened.get(name), str):
            with Image.open(base / opened[name]) as image:
                opened[name] = image.convert("RGB")
    return opened


def render_item(pipe, item: BatchItem, out_dir: Path, rank: int, images_dir: Path | None = None,
                parameters: Callable[[BatchItem, Any], str] | None = None) -> dict[str, Any]:
    """Render one item to ``out_dir/{index:06d}.png`` (written whole, then renamed into place), with
    ``parameters(item, image)`` as its ``parameters`` text when given; returns its manifest entry."""
    import torch

    start = time.perf_counter()
    inputs = _open_images(item.inputs, images_dir or Path("."))
    generator = torch.Generator().manual_seed(item.seed)
    image = pipe(prompt=item.prompt, generator=generator, output_type="pil", output="images", **inputs)[0]
    info = None
    if parameters is not None:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("parameters", parameters(item, image))  # PIL writes an iTXt chunk for text beyond Latin-1
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    data = buffer.getvalue()
    path = out_dir / item.file
    tmp = path.with_name(f".{item.file}.rank{rank}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return {"item": item.index, "prompt": item.prompt, "inputs": item.inputs, "seed": item.seed, "file": item.file,
            "sha256": sha256_of(data), "rank": rank, "seconds": round(time.perf_counter() - start, 4)}


class _Collectives:
    """The few collectives a batch run needs, as no-ops on a single process."""

    def __init__(self, state):
        self.state = state
        self.rank = state.process_index
        self.world = state.num_processes

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def all_reduce(self, values: list[int], op: str = "sum") -> list[int]:
        if self.world == 1:
            return values
        import torch
        import torch.distributed as dist

        device = self.state.device if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(values, dtype=torch.int64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return tensor.tolist()


def _pending(items: list[BatchItem], out_dir: Path, comm: _Collectives) -> list[BatchItem]:
    """The items not yet rendered and verified, as rank 0 sees them (hashing every PNG once, not per rank)."""
    done = set(done_entries(items, out_dir)) if comm.rank == 0 else None
    done = comm.broadcast(done)
    return [item for item in items if item.index not in done]


def _progress(comm: _Collectives, total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="image", desc="batch", disable=not enabled or comm.rank != 0)


def run_batch(pipe, items: list[BatchItem], out_dir: str | Path, state=None, batch_size: int = 1,
              progress: bool = True, images_dir: str | Path | None = None,
              on_image: Callable[[dict[str, Any]], None] | None = None,
              parameters: Callable[[BatchItem, Any], str] | None = None) -> BatchReport:
    """Render every item not already in ``out_dir`` (see :mod:`.manifest`), sharing them among the ranks.

    Every rank calls this with the same items.

    Args:
        pipe: this rank's pipeline (on this rank's device).
        items: from :func:`~diffblocks.distributed.manifest.read_items`.
        out_dir: an existing folder every rank sees (on several nodes: a shared filesystem; rank 0 checks
            and merges every rank's images).
        state: an ``accelerate.PartialState`` (default: the launcher's, with gloo when there is no CUDA; a
            single process without a launcher).
        batch_size: items a rank renders between two progress updates (items always render one by one).
        progress: rank 0 shows a tqdm bar over all items.
        images_dir: the folder image inputs (JSONL ``"image": "a.png"``) are relative to.
        on_image: called with each manifest entry this rank writes.
        parameters: ``parameters(item, image)``, the text each PNG carries as ``parameters`` (the CLI's A1111
            infotext); none when not given.

    Returns:
        BatchReport (the same on every rank).

    Raises:
        BatchError: ``out_dir`` is not a folder.
        DistributedError: another rank failed (the failing rank raises its own error).
    """
    if state is None:
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # else accelerate ignores a CPU-only launch
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise BatchError.out_dir(str(out_dir), "is not a folder")
    if batch_size < 1:
        raise BatchError.bad_setting("batch_size", "at least 1", batch_size)
    comm = _Collectives(state)
    pending = _pending(items, out_dir, comm)
    start = time.perf_counter()  # after the ranks met (a rank may have loaded its pipeline sooner)
    with state.split_between_processes(pending) as mine:
        mine = list(mine)
    rounds = comm.all_reduce([math.ceil(len(mine) / batch_size)], op="max")[0]
    writer = PartWriter(out_dir, comm.rank)
    rendered = 0
    with _progress(comm, len(items), len(items) - len(pending), progress) as bar:
        try:
            for r in range(rounds):
                rendered += _round(pipe, mine[r * batch_size:(r + 1) * batch_size], out_dir, comm, writer, bar,
                                   Path(images_dir) if images_dir else None, on_image, parameters)
        finally:
            writer.close()
    if comm.rank == 0:
        merge_manifest(items, out_dir)
    return BatchReport(len(items), len(items) - len(pending), rendered, time.perf_counter() - start)


def _round(pipe, chunk, out_dir, comm, writer, bar, images_dir, on_image, parameters) -> int:
    """Render this rank's ``chunk``, then add up with the other ranks what was done and who failed."""
    error = None
    done = 0
    for item in chunk:
        try:
            entry = render_item(pipe, item, out_dir, comm.rank, images_dir, parameters)
        except Exception as err:  # every rank must hear of it before anyone raises, or the others wait forever
            error = BatchItemError.failed(item.index, item.line, err)
            error.__cause__ = err
            break
        writer.append(entry)
        done += 1
        if on_image is not None:
            on_image(entry)
    failed = [0] * comm.world
    failed[comm.rank] = int(error is not None)
    totals = comm.all_reduce([done, *failed])
    bar.update(totals[0])
    if error is not None:
        raise error
    if any(totals[1:]):
        raise DistributedError.peer_failed([rank for rank, f in enumerate(totals[1:]) if f])
    return totals[0]
