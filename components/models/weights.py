"""Weight files in the diffusers layout: find, read and write ``diffusion_pytorch_model[.variant].safetensors``,
sharded or not.

Reading memory-maps safetensors files when no dtype conversion is needed: the tensors returned are views
of the file's pages, so loading makes no copy until a device move needs one. When tensors must be
converted, they are read and converted one at a time instead.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
import threading
from pathlib import Path
from typing import Iterable

import torch

from ..errors import CorruptedFileError, MissingFileError, UnsafeFileError
from ..config import StagedFiles, staged_files
from ..files import SAFETENSORS_SUFFIXES, resolve_file, try_resolve_file

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
PICKLE_WEIGHTS_NAME = "diffusion_pytorch_model.bin"
DEFAULT_MAX_SHARD_SIZE = "10GB"


def with_variant(filename: str, variant: str | None) -> str:
    """``a.b.ext`` -> ``a.b.<variant>.ext`` (the variant goes before the last extension, as diffusers names it)."""
    if not variant:
        return filename
    stem, ext = filename.rsplit(".", 1)
    return f"{stem}.{variant}.{ext}"


def candidate_names(variant: str | None = None) -> list[str]:
    """Weight file names to look for, in order: single safetensors file, sharded index, legacy pickle."""
    names = [with_variant(WEIGHTS_NAME, variant), with_variant(WEIGHTS_INDEX_NAME, variant)]
    if variant:  # the spelling some repos use for variant indexes
        names.append(f"diffusion_pytorch_model.{variant}.safetensors.index.json")
    names.append(with_variant(PICKLE_WEIGHTS_NAME, variant))
    return names


def _describe(path_or_repo: str | os.PathLike, subfolder: str | None, name: str) -> str:
    return "/".join([str(path_or_repo)] + ([subfolder] if subfolder else []) + [name])


def find_weight_files(
    path_or_repo: str | os.PathLike,
    subfolder: str | None = None,
    variant: str | None = None,
    revision: str | None = None,
) -> list[Path]:
    """The local paths of a model's weight files (one file, or every shard named by the index).

    Raises:
        MissingFileError: no weight file, or a shard named by the index, is there; names every path looked for.
        CorruptedFileError: the shard index is not valid JSON.
    """
    names = candidate_names(variant)
    for name in names:
        found = try_resolve_file(path_or_repo, name, subfolder=subfolder, revision=revision)
        if found is None:
            continue
        if not name.endswith(".json"):
            return [found]
        shards = _read_index(found)
        return [resolve_file(path_or_repo, shard, subfolder=subfolder, revision=revision, what="weights shard") for shard in shards]
    raise MissingFileError.not_found([_describe(path_or_repo, subfolder, n) for n in names], what="weights")


def _read_index(path: Path) -> list[str]:
    """The shard file names of a sharded checkpoint's index, in first-seen order."""
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
        return list(dict.fromkeys(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CorruptedFileError.unreadable(str(path), err) from err


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
    "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None),
}


def single_file(path: str | os.PathLike, revision: str | None = None) -> Path:
    """A weights file on disk, or ``owner/name/FILE`` (``FILE`` may have folders) fetched from the Hub."""
    local = Path(path).expanduser()
    if local.is_file():
        return local
    parts = str(path).split("/")
    if isinstance(path, os.PathLike) or len(parts) < 3 or str(path).startswith(("/", ".", "~")):
        raise MissingFileError.not_found([str(path)], what="weights file")
    return resolve_file("/".join(parts[:2]), parts[-1], subfolder="/".join(parts[2:-1]) or None, revision=revision,
                        what="weights file")


def read_weights(paths: Iterable[Path], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """All tensors of the given files.

    A safetensors file whose floating-point tensors already have ``dtype`` (or any file when ``dtype`` is
    None) is memory-mapped: no copy. Otherwise its tensors are read one at a time and converted, so the peak
    is the converted weights plus one tensor, not the whole file plus the converted weights. Legacy ``.bin``
    files (``.bin``, ``.ckpt``, ``.pt``, ``.pth``) are mmap-loaded by ``torch.load`` (weights only: see
    :func:`_read_pickle`) and not converted here.

    Raises:
        CorruptedFileError: a file is truncated, corrupted or not a weights file; names the file.
        UnsafeFileError: a pickled file calls something besides tensors and a training run's record.
    """
    state_dict: dict[str, torch.Tensor] = {}
    for path in map(Path, paths):
        if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
            state_dict.update(_read_pickle(path))
            continue
        entries, data_start = _read_header(path)
        if dtype is not None and any(_needs_conversion(e["dtype"], dtype) for e in entries.values()):
            state_dict.update(_read_converted(path, entries, data_start, dtype))
        else:
            state_dict.update(_read_mapped(path))
    return state_dict


def _needs_conversion(file_dtype: torch.dtype, dtype: torch.dtype) -> bool:
    return file_dtype.is_floating_point and file_dtype != dtype


def _read_header(path: Path) -> tuple[dict[str, dict], int]:
    """The tensor entries (dtype as a torch dtype, shape, offsets) of a safetensors file, checked against
    the file's size, and where its data starts."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > size - 8:
                raise CorruptedFileError.bad_entry(str(path), f"header of {length} bytes in a {size}-byte file")
            header = json.loads(f.read(length))
        header.pop("__metadata__", None)
        entries = {key: _check_entry(path, key, value, size - 8 - length) for key, value in header.items()}
    except CorruptedFileError:
        raise
    except FileNotFoundError as err:  # not there at all: nothing corrupted
        raise MissingFileError.not_found([str(path)], what="weights file") from err
    except (OSError, ValueError, TypeError, KeyError, struct.error) as err:
        raise CorruptedFileError.unreadable(str(path), err) from err
    return entries, 8 + length


def _check_entry(path: Path, key: str, entry: dict, data_size: int) -> dict:
    dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
    if dtype is None:
        raise CorruptedFileError.bad_entry(str(path), f"tensor '{key}' has unknown dtype {entry['dtype']!r}")
    begin, end = entry["data_offsets"]
    numel = 1
    for dim in entry["shape"]:
        numel *= dim
    itemsize = dtype.itemsize
    if not 0 <= begin <= end <= data_size or end - begin != numel * itemsize:
        raise CorruptedFileError.bad_entry(
            str(path), f"tensor '{key}' has offsets {begin}..{end} outside the {data_size} bytes of data or of the wrong size")
    return {"dtype": dtype, "shape": list(entry["shape"]), "begin": begin, "end": end}


def _read_mapped(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error types
        raise CorruptedFileError.unreadable(str(path), err) from err


def _read_converted(path: Path, entries: dict[str, dict], data_start: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Read each tensor, in file order, into one reused scratch buffer and convert floating-point ones to
    ``dtype`` (others are copied out): the only new memory is the converted tensors."""
    sizes = [entry["end"] - entry["begin"] for entry in entries.values()]
    scratch = torch.empty(max(sizes, default=0), dtype=torch.uint8)
    tensors = {}
    with open(path, "rb") as f:
        for key, entry in sorted(entries.items(), key=lambda item: item[1]["begin"]):
            nbytes = entry["end"] - entry["begin"]
            f.seek(data_start + entry["begin"])
            if f.readinto(scratch[:nbytes].numpy()) != nbytes:
                raise CorruptedFileError.unreadable(str(path), EOFError(f"tensor '{key}' is cut short"))
            raw = scratch[:nbytes].view(entry["dtype"]).reshape(entry["shape"])
            tensors[key] = raw.to(dtype) if _needs_conversion(entry["dtype"], dtype) else raw.clone()
    return tensors


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Each tensor's name and shape: from a safetensors file's header alone, or a pickled file loaded memory-mapped
    (once per version of the file: a checkpoint's family and its UNet's inputs are both read off it)."""
    path = Path(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return {key: tuple(entry["shape"]) for key, entry in _read_header(path)[0].items()}
    stat = path.stat()
    return dict(_pickle_shapes(str(path.resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _pickle_shapes(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((key, tuple(tensor.shape)) for key, tensor in _read_pickle(Path(path)).items())


class _TrainingRecord:
    """Stands in for the training-callback classes a Lightning checkpoint names (their state is kept as plain
    attributes; nothing of theirs runs)."""


_NUMPY_RECORDS: list | None = None
_pickle_lock = threading.Lock()  # torch's allow-list is process-wide: one reader adds to it at a time


def _allowed_globals() -> list:
    """What a training checkpoint (A1111's ``.ckpt``, a Lightning run's) pickles besides tensors: numpy scalars and
    dtypes (``global_step``), and PyTorch Lightning's ``ModelCheckpoint`` as a key of ``callbacks``."""
    global _NUMPY_RECORDS
    if _NUMPY_RECORDS is None:
        import numpy as np

        try:
            from numpy._core.multiarray import scalar
        except ImportError:  # numpy 1.x
            from numpy.core.multiarray import scalar
        _NUMPY_RECORDS = [np.dtype, *(getattr(np.dtypes, name) for name in np.dtypes.__all__),
                          (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    return [*_NUMPY_RECORDS, *((_TrainingRecord, f"{module}.ModelCheckpoint") for module in
                               ("pytorch_lightning.callbacks.model_checkpoint", "lightning.pytorch.callbacks.model_checkpoint"))]


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    """A pickled state dict (``.bin``, ``.pt``, ``.pth``), or a training checkpoint's ``state_dict`` (``.ckpt``), read
    by torch's weights-only unpickler: tensors, plain containers, numbers and the records of :func:`_allowed_globals`;
    anything else it would have to call is refused (``UnsafeFileError``) before it runs."""
    import pickle

    try:
        with _pickle_lock, torch.serialization.safe_globals(_allowed_globals()):
            try:
                loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # files from before torch's zip format cannot be memory-mapped
                loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:GLOBAL|global:?) ([\w.]+)", str(err))
        raise UnsafeFileError.pickled_code(str(path), found.group(1) if found else str(err).splitlines()[0]) from err
    except Exception as err:  # pickle and zip readers raise many types
        raise CorruptedFileError.unreadable(str(path), err) from err
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):  # a training checkpoint
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CorruptedFileError.unreadable(str(path), TypeError("not a dict of tensors"))
    return loaded


def save_weights(
    state_dict: dict[str, torch.Tensor],
    directory: str | os.PathLike,
    variant: str | None = None,
    max_shard_size: int | str | None = None,
) -> list[Path]:
    """Write ``state_dict`` as one safetensors file, or as shards plus an index when it exceeds
    ``max_shard_size`` (default 10GB).

    Every file is written beside its target under a temporary name and all are swapped in only once all
    are written; weight files of this variant that the new save does not rewrite (the other layout, extra
    shards) are removed only after that. A save that fails midway leaves the old files as they were.

    Returns:
        The paths written.
    """
    with staged_files(directory) as staged:
        names = stage_weights(state_dict, staged, variant=variant, max_shard_size=max_shard_size)
    remove_stale_weights(Path(directory), variant, keep=set(names))
    return [Path(directory) / name for name in names]


def stage_weights(
    state_dict: dict[str, torch.Tensor],
    staged: StagedFiles,
    variant: str | None = None,
    max_shard_size: int | str | None = None,
) -> list[str]:
    """Write the weight files into ``staged`` (see :func:`save_weights`); returns their names, shards
    before the index, so the index is swapped in last."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    pattern = with_variant(WEIGHTS_NAME, variant).replace(".safetensors", "{suffix}.safetensors")
    split = split_torch_state_dict_into_shards(
        state_dict, filename_pattern=pattern, max_shard_size=max_shard_size or DEFAULT_MAX_SHARD_SIZE
    )
    names = []
    for filename, keys in split.filename_to_tensors.items():
        shard = {key: state_dict[key].detach().contiguous() for key in keys}
        save_file(shard, str(staged.path(filename)), metadata={"format": "pt"})
        names.append(filename)
    if split.is_sharded:
        index = {"metadata": dict(split.metadata), "weight_map": dict(split.tensor_to_filename)}
        names.append(with_variant(WEIGHTS_INDEX_NAME, variant))
        staged.write_text(names[-1], json.dumps(index, indent=2, sort_keys=True) + "\n")
    return names


def remove_stale_weights(directory: Path, variant: str | None, keep: set[str]) -> None:
    """Delete this variant's single file, index and shards that the new save did not rewrite."""
    single = with_variant(WEIGHTS_NAME, variant)
    stem = single[: -len(".safetensors")]
    shard = re.compile(re.escape(stem) + r"-\d{5}-of-\d{5}\.safetensors")
    stale_names = {single, with_variant(WEIGHTS_INDEX_NAME, variant)}
    for path in directory.iterdir() if directory.is_dir() else ():
        if path.name in keep or not path.is_file():
            continue
        if path.name in stale_names or shard.fullmatch(path.name):
            path.unlink()
