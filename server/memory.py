"""Memory the server holds: the process's resident size, CUDA memory, and components nothing uses any more."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from typing import Any


def rss_bytes() -> int:
    """The process's resident set size now (not its peak)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except ImportError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def imported_torch():
    """torch when it is imported, else None (it is not imported for the server's answers); None too while a worker
    is importing it, when ``sys.modules`` holds it half made (no ``torch.cuda`` yet, and nothing on a GPU either)."""
    torch = sys.modules.get("torch")
    if torch is None or getattr(getattr(torch, "__spec__", None), "_initializing", False):
        return None
    return torch if hasattr(torch, "cuda") else None


def cuda_memory() -> dict[str, dict[str, int]]:
    """Allocated and reserved bytes per CUDA device; empty without CUDA (torch is not imported for this)."""
    torch = imported_torch()
    if torch is None or not torch.cuda.is_available():
        return {}
    return {f"cuda:{i}": {"allocated": torch.cuda.memory_allocated(i), "reserved": torch.cuda.memory_reserved(i)}
            for i in range(torch.cuda.device_count())}


def _references(manager) -> dict[str, int]:
    snapshot = manager.components
    return {cid: sys.getrefcount(snapshot[cid]) for cid in list(snapshot)}


def unused_components(manager) -> list[str]:
    """Ids of the components only ``manager`` refers to (no pipeline, cached output or running job does).

    The count of references the manager and this function hold is measured on a fresh manager of the same
    class, so it follows the manager's internals rather than a constant written here."""
    gc.collect()
    probe_manager = type(manager)()
    probe_manager.add("probe", _Probe())  # held by the manager alone, as an unused component is
    baseline = next(iter(_references(probe_manager).values()))
    return [cid for cid, count in _references(manager).items() if count <= baseline]


class _Probe:
    pass


def release_memory() -> None:
    """Give freed memory back: collect cycles, empty the CUDA cache, and trim glibc's heap."""
    gc.collect()
    torch = imported_torch()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def component_rows(manager) -> list[dict[str, Any]]:
    """``{"id", "class", "collections"}`` for each component in ``manager``."""
    collections = manager.collections
    return [{"id": cid, "class": type(obj).__name__,
             "collections": sorted(name for name, ids in collections.items() if cid in ids)}
            for cid, obj in manager.components.items()]


def cache_total(executors) -> dict[str, int]:
    """The output caches of ``executors`` (``{device: Executor}``), added up."""
    total = {"entries": 0, "bytes": 0, "budget": 0}
    for executor in executors.values():
        for key, value in executor.cache_info().items():
            if key in total:
                total[key] += int(value)
    return total


def engine_info(pool) -> dict[str, Any]:
    """What ``pool`` (a ``WorkerPool``, or the Redis front's ``RemotePool``) holds, as ``GET /api/system`` shows
    it: each device and the job running there, the loaded components, the output caches, CUDA memory and this
    process's size."""
    return {"devices": [{"device": device, "job": job} for device, job in pool.running().items()],
            "components": component_rows(pool.manager) if pool.manager is not None else [],
            "cache": cache_total(pool.executors), "cuda": cuda_memory(), "rss_bytes": rss_bytes()}


def free_engine(pool) -> dict[str, Any]:
    """``POST /api/free`` on ``pool``: drop every output cache and the components nothing refers to any more,
    then give the memory back; what was removed and this process's size before and after."""
    pool.ready.wait()
    before = rss_bytes()
    for executor in pool.executors.values():
        executor.free()
    removed = unused_components(pool.manager) if pool.manager is not None else []
    for component_id in removed:
        pool.manager.remove(component_id)
    release_memory()
    return {"removed_components": removed, "cache": cache_total(pool.executors), "rss_before": before,
            "rss_after": rss_bytes()}
