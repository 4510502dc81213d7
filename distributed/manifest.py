"""The items of a batch run and its manifest: which prompts, which seeds, which images are already written.

Each rendered image is recorded as one JSON line, ``{"item", "prompt", "inputs", "seed", "file", "sha256",
"rank", "seconds"}``. While a run goes, every rank appends to its own part file
(``manifest.part-<rank>.jsonl``), so no two processes write one file; at the end rank 0 merges
``manifest.jsonl`` and the parts, in item order, and removes the parts. A run that was killed leaves its
parts behind: the next run reads them as well, so nothing rendered before the crash is rendered again.

An item counts as done only when its manifest entry describes the same item (prompt, inputs, seed, file)
and its PNG is there with the recorded sha256: a half-written file, a PNG without an entry or an entry for
a changed prompt are all rendered again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..components.errors import BatchError

MANIFEST = "manifest.jsonl"
PART_GLOB = "manifest.part-*.jsonl"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
# set by the batch runner itself, never by a prompts file
RESERVED_INPUTS = ("generator", "output_type", "num_images_per_prompt")


@dataclass(frozen=True)
class BatchItem:
    """One image to render: the ``index``-th prompt of the file, rendered with seed ``base + index``.

    Args:
        index: position among the prompts (blank lines not counted); names the PNG, ``{index:06d}.png``.
        prompt: the text prompt.
        inputs: the other pipeline inputs (JSON values: the flags' defaults, then the line's own).
        seed: the noise seed.
        line: the line of the prompts file it came from (for error messages).
    """

    index: int
    prompt: str
    inputs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    line: int = 0

    @property
    def file(self) -> str:
        return f"{self.index:06d}.png"

    def describes(self, entry: dict[str, Any]) -> bool:
        """Whether a manifest entry was written for this very item (same prompt, inputs, seed and file)."""
        mine = {"item": self.index, "prompt": self.prompt, "seed": self.seed, "file": self.file,
                "inputs": _as_json(self.inputs)}
        return all(entry.get(key) == value for key, value in mine.items())


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _jsonl_item(path: str, number: int, text: str) -> tuple[str, dict[str, Any]]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise BatchError.bad_line(path, number, f"not a JSON object ({err.msg})") from err
    if not isinstance(record, dict):
        raise BatchError.bad_line(path, number, f"expected a JSON object, got {type(record).__name__}")
    prompt = record.pop("prompt", None)
    if not isinstance(prompt, str):
        raise BatchError.bad_line(path, number, "needs a \"prompt\" string")
    reserved = [k for k in record if k in RESERVED_INPUTS]
    if reserved:
        raise BatchError.reserved_inputs(path, number, reserved)
    return prompt, record


def read_items(path: str | os.PathLike, base_seed: int = 0, defaults: dict[str, Any] | None = None) -> list[BatchItem]:
    """The items of a prompts file: one prompt a line, or for ``.jsonl`` / ``.ndjson`` one JSON object a
    line (``{"prompt": ..., <any pipeline input>: ...}``). Blank lines are skipped; item ``i`` has seed
    ``base_seed + i`` and the inputs ``defaults`` updated with its line's own.

    Raises:
        BatchError: the file cannot be read, holds no prompt, or a JSONL line is not an object with a prompt.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BatchError.unreadable(name, err) from err
    jsonl = Path(path).suffix.lower() in JSONL_SUFFIXES
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        prompt, own = _jsonl_item(name, number, line) if jsonl else (line.strip(), {})
        index = len(items)
        items.append(BatchItem(index, prompt, {**(defaults or {}), **own}, base_seed + index, number))
    if not items:
        raise BatchError.empty(name)
    return items


def check_inputs(items: Iterable[BatchItem], valid: Iterable[str], path: str) -> None:
    """Every input an item sets is one the pipeline takes; checked on every rank before anything renders.

    Raises:
        BatchError: naming the line, the unknown input and the closest valid one.
    """
    valid = sorted(set(valid) - set(RESERVED_INPUTS))
    for item in items:
        unknown = [k for k in item.inputs if k not in valid]
        if unknown:
            raise BatchError.unknown_inputs(path, item.line, unknown, valid)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_entries(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Every manifest entry in ``out_dir`` (the merged manifest, then the part files; a later entry for an
    item wins). Lines a killed process left half-written are skipped."""
    entries: dict[int, dict[str, Any]] = {}
    for path in [out_dir / MANIFEST, *sorted(out_dir.glob(PART_GLOB))]:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("item"), int):
                entries[entry["item"]] = entry
    return entries


def verified(item: BatchItem, entry: dict[str, Any] | None, out_dir: Path) -> bool:
    """The item's PNG is there and its sha256 is the one its (matching) manifest entry records."""
    if entry is None or not item.describes(entry):
        return False
    path = out_dir / item.file
    return path.is_file() and sha256_of(path.read_bytes()) == entry.get("sha256")


def done_entries(items: list[BatchItem], out_dir: Path) -> dict[int, dict[str, Any]]:
    """The manifest entries of the items already rendered and verified, by item index."""
    entries = read_entries(out_dir)
    return {item.index: entries[item.index] for item in items if verified(item, entries.get(item.index), out_dir)}


class PartWriter:
    """One rank's manifest part file, appended one entry (one flushed line) per image."""

    def __init__(self, out_dir: Path, rank: int):
        self.path = out_dir / f"manifest.part-{rank}.jsonl"
        self._file = None

    def append(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            # a process killed mid-line leaves no newline: start on a fresh line so this entry stays readable
            torn = self.path.is_file() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
            self._file = self.path.open("a", encoding="utf-8")
            if torn:
                self._file.write("\n")
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def merge_manifest(items: list[BatchItem], out_dir: Path) -> int:
    """Write ``manifest.jsonl`` (atomically): the verified entries of ``items``, in item order; remove the
    part files. Returns the number of entries."""
    done = done_entries(items, out_dir)
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text("".join(json.dumps(done[i]) + "\n" for i in sorted(done)), encoding="utf-8")
    os.replace(tmp, out_dir / MANIFEST)
    for part in out_dir.glob(PART_GLOB):
        part.unlink(missing_ok=True)
    return len(done)
