"""``GET /api/system`` (devices, memory, components, cache) and ``POST /api/free``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ...components.errors import UsageError
from ..models import FreeResponse, SystemInfo
from ..state import ServerState, server_state

router = APIRouter(tags=["system"])


# plain functions, run in the thread pool: with --engine-process the answer comes from the engine's process
@router.get("/system", response_model=SystemInfo, summary="Devices, memory, loaded components and cache size")
def system(state: ServerState = Depends(server_state)) -> dict[str, Any]:
    active = state.queue.active()
    info = state.pool.info()
    return {"devices": info["devices"], "memory": {"rss_bytes": info["rss_bytes"], "cuda": info["cuda"]},
            "components": info["components"], "cache": info["cache"],
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
    return state.pool.free()
