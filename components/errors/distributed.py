"""Errors of work spread over processes: batch prompt files, batch runs, and guidance-parallel denoising."""

from __future__ import annotations

from typing import Iterable

from .base import DiffblocksError, UsageError, _did_you_mean, _listing


class BatchError(UsageError):
    """A prompts file or output folder ``diffblocks batch`` cannot use; names the file and line."""

    @classmethod
    def unreadable(cls, path: str, cause: BaseException) -> "BatchError":
        return cls(f"cannot read the prompts file {path}: {cause}")

    @classmethod
    def empty(cls, path: str) -> "BatchError":
        return cls(f"the prompts file {path} holds no prompts (blank lines are skipped)")

    @classmethod
    def bad_line(cls, path: str, line: int, problem: str) -> "BatchError":
        return cls(f"{path}, line {line}: {problem}")

    @classmethod
    def unknown_inputs(cls, path: str, line: int, names: Iterable[str], valid: Iterable[str]) -> "BatchError":
        valid = list(valid)
        shown = ", ".join(f"'{n}'" + _did_you_mean(n, valid) for n in names)
        return cls(f"{path}, line {line}: {shown} is not an input of the pipeline; its inputs: {_listing(valid)}")

    @classmethod
    def reserved_inputs(cls, path: str, line: int, names: Iterable[str]) -> "BatchError":
        return cls(f"{path}, line {line}: {', '.join(repr(n) for n in names)} is set by diffblocks batch "
                   f"(the seed is --seed plus the item's index; images are written as PNG)")

    @classmethod
    def bad_setting(cls, name: str, expected: str, value: object) -> "BatchError":
        return cls(f"{name} must be {expected}, got {value!r}")

    @classmethod
    def out_dir(cls, path: str, problem: str) -> "BatchError":
        return cls(f"--out-dir {path}: {problem}")


class BatchItemError(DiffblocksError, RuntimeError):
    """One item of a batch run failed; names the item and its line, and is raised from the cause."""

    @classmethod
    def failed(cls, index: int, line: int, cause: BaseException) -> "BatchItemError":
        text = str(cause).strip().splitlines()
        what = text[0] if isinstance(cause, DiffblocksError) and text else f"{type(cause).__name__}: {' '.join(text)}"
        return cls(f"item {index} (line {line} of the prompts file) failed: {what}")


class DistributedError(DiffblocksError, RuntimeError):
    """torch.distributed is not set up as the work needs, or another process of the run failed."""

    @classmethod
    def not_initialized(cls, what: str) -> "DistributedError":
        return cls(f"{what} needs torch.distributed: call torch.distributed.init_process_group first "
                   f"(or start the script with torchrun / accelerate launch)")

    @classmethod
    def peer_failed(cls, ranks: Iterable[int]) -> "DistributedError":
        return cls(f"stopped: process(es) of rank {', '.join(map(str, ranks))} failed (see their error)")

    @classmethod
    def uneven(cls, what: str, detail: str) -> "DistributedError":
        return cls(f"{what}: the processes disagree ({detail}); every rank must run the same call")
