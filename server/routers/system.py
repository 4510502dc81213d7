"""``GET /api/system`` (devices, memory, components, cache) and ``POST /api/free``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ...components.errors import UsageError
from ..memory import component_rows, cuda_memory, release_memory, rss_bytes, unused_components
from ..models import FreeResponse, SystemInfo
from ..state import ServerState, server_state

router = APIRouter(tags=["system"])


def cache_total(state: ServerState) -> dict[str, int]:
    """The output caches of every device's executor, added up."""
    total = {"entries": 0, "bytes": 0, "budget": 0}
    for executor in state.pool.executors.values():
        for key, value in executor.cache_info().items():
            if key in total:
                total[key] += int(value)
    return total


@router.get("/system", response_model=SystemInfo, summary="Devices, memory, loaded components and cache size")
async def system(state: ServerState = Depends(server_state)) -> dict[str, Any]:
    active = state.queue.active()
    return {"devices": [{"device": device, "job": job} for device, job in state.pool.running().items()],
            "memory": {"rss_bytes": rss_bytes(), "cuda": cuda_memory()},
            "components": component_rows(state.manager) if state.manager is not None else [],
            "cache": cache_total(state),
            "queue": {"queued": sum(job.status == "queued" for job in active),
                      "running": sum(job.status == "running" for job in active)},
            "clients": state.bus.clients, "allow_remote_code": state.settings.allow_remote_code,
            "workers_error": workers_error(state.pool.error)}


def workers_error(error: Exception | None) -> str | None:
    if error is None:
        return None
    return str(error) if isinstance(error, UsageError) else f"{type(error).__name__}: {error}"


@router.post("/free", response_model=FreeResponse,
             summary="Drop cached outputs and the components nothing refers to any more")
def free(state: ServerState = Depends(server_state)) -> dict[str, Any]:
    state.pool.ready.wait()
    before = rss_bytes()
    for executor in state.pool.executors.values():
        executor.free()
    removed = unused_components(state.manager) if state.manager is not None else []
    for component_id in removed:
        state.manager.remove(component_id)
    release_memory()
    return {"removed_components": removed, "cache": cache_total(state), "rss_before": before, "rss_after": rss_bytes()}
