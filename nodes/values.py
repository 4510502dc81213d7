"""Values that travel between nodes: artifact references, generators made from seeds (and copied, so a cached
generator is never advanced by the node that reads it), and the size of an output for the cache's budget."""

from __future__ import annotations

import re
import sys
from typing import Any

ARTIFACT_ID = re.compile(r"^[0-9a-f]{64}$")


def artifact_ref(value: Any) -> str | None:
    """The sha256 of ``{"artifact": sha}``, or None when ``value`` is not such a reference."""
    if isinstance(value, dict) and set(value) == {"artifact"} and isinstance(value["artifact"], str) \
            and ARTIFACT_ID.match(value["artifact"]):
        return value["artifact"]
    return None


def artifact_refs(value: Any) -> set[str]:
    """Every artifact id referred to anywhere in ``value`` (nested dicts and lists): a workflow's inputs, a job's
    outputs as ``GET /api/jobs/{id}`` shows them."""
    if isinstance(value, dict):
        sha = artifact_ref(value)
        return {sha} if sha is not None else set().union(*map(artifact_refs, value.values()))
    if isinstance(value, list):
        return set().union(*map(artifact_refs, value))
    return set()


def generator_from_seed(seed: int):
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)


def clone_generator(generator):
    """A new generator in the same state (lists of generators element-wise)."""
    import torch

    if isinstance(generator, (list, tuple)):
        return [clone_generator(g) for g in generator]
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy


def size_of(value: Any, _seen: set[int] | None = None) -> int:
    """Bytes a value holds (tensors by storage, images by pixels, containers summed; shared objects once)."""
    seen = set() if _seen is None else _seen
    if value is None or id(value) in seen:
        return 0
    seen.add(id(value))
    if hasattr(value, "untyped_storage"):
        return value.untyped_storage().nbytes()
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if hasattr(value, "getbands") and hasattr(value, "size"):  # a PIL image
        width, height = value.size
        return width * height * len(value.getbands())
    if isinstance(value, dict):
        return sum(size_of(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(size_of(v, seen) for v in value)
    return sys.getsizeof(value)
