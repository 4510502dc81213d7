"""What the routes share while the server runs: settings, engine, queue, bus, workers and artifacts."""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request, WebSocket

from ..components.files import is_weights_file
from ..nodes.artifacts import ArtifactStore
from ..nodes.family_check import family_problems
from ..nodes.model_files import ModelFolders, model_problems
from .bus import EventBus
from .outputs import OutputEncoder
from .queue import Job, JobQueue
from .settings import ServerSettings, resolve_devices
from .workers import WorkerPool


@dataclass
class ServerState:
    """One running server's parts; the lifespan opens it (``open``) and closes it (``close``)."""

    settings: ServerSettings
    engine: Any
    artifacts: ArtifactStore
    queue: JobQueue
    bus: EventBus
    pool: WorkerPool
    data_dir: Path
    _tmp: Any = field(default=None, repr=False)
    catalog_body: bytes | None = None  # GET /api/nodes, serialised once
    catalog_thread: threading.Thread | None = None  # builds the catalog when a stored one is served meanwhile
    keeper: Any = None  # with Redis, the OutputKeeper copying finished jobs' images here

    @classmethod
    def open(cls, settings: ServerSettings, engine) -> "ServerState":
        """Open the queue and artifacts under the data folder; the pool makes one executor per device when it
        starts."""
        tmp = None
        if settings.data_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="diffblocks-serve-")
        data_dir = Path(settings.data_dir or tmp.name)
        data_dir.mkdir(parents=True, exist_ok=True)
        if settings.queue:  # Redis: `diffblocks worker` processes run the jobs, this one only serves
            from .redis_bus import OutputKeeper, RedisArtifactStore, RedisEventBus
            from .redis_queue import RedisJobQueue, RemotePool

            artifacts = RedisArtifactStore(settings.queue, data_dir / "artifacts", max_pixels=settings.max_pixels,
                                           ttl_seconds=settings.artifact_ttl)
            queue = RedisJobQueue(settings.queue, settings.lease_seconds)
            bus = RedisEventBus(settings.queue, lambda: [job_snapshot(job) for job in queue.active()],
                                settings.replay_events, settings.client_buffer)
            keeper = OutputKeeper(queue, artifacts, settings.keep_jobs)
            bus.on_ended = keeper.ended
            return cls(settings, engine, artifacts, queue, bus, RemotePool(queue), data_dir, tmp, keeper=keeper)
        artifacts = ArtifactStore(data_dir / "artifacts", max_pixels=settings.max_pixels)
        queue = JobQueue(data_dir / "jobs.sqlite")
        bus = EventBus(lambda: [job_snapshot(job) for job in queue.active()], settings.replay_events,
                       settings.client_buffer)
        if settings.engine_process:
            from .engine_process import EngineProcess

            pool = EngineProcess(settings, queue, bus, artifacts.root)
        else:
            pool = worker_pool(settings, engine, artifacts, queue, bus)
        return cls(settings, engine, artifacts, queue, bus, pool, data_dir, tmp)

    def problems(self, workflow: dict[str, Any]) -> list[dict[str, Any]]:
        """Everything wrong with ``workflow`` before it runs: the engine's validation, then the model names it
        gives that the model folders (``--models-dir``) do not have, and the presets wired to another family's
        checkpoint file."""
        folders = ModelFolders(self.settings.model_dirs)
        return self.engine.validate(workflow) or model_problems(workflow, folders) + family_problems(workflow, folders)

    @property
    def manager(self):
        """The components manager every executor shares (None until the workers have started)."""
        return self.pool.manager

    def serve_catalog(self) -> None:
        """Have ``GET /api/nodes`` answer now: from the catalog a previous start stored when there is one (the
        node types are then built in a thread, and replace it when ready), else built here."""
        stored = getattr(self.engine, "stored_catalog", lambda: None)()
        if stored is None:
            self.catalog_body = _serialise(self.engine.catalog())
            return

        def build() -> None:
            self.catalog_body = _serialise(self.engine.catalog())

        self.catalog_body = _serialise(stored)
        self.catalog_thread = threading.Thread(target=build, name="diffblocks-catalog", daemon=True)
        self.catalog_thread.start()

    def close(self) -> None:
        """Stop the workers (running jobs are queued again at the next start), close clients and the queue, and
        let a catalog still being built finish: a thread left importing torch while the interpreter shuts down can
        abort the process (SIGABRT) instead of ending it cleanly."""
        if self.catalog_thread is not None:
            self.catalog_thread.join(60)
        self.pool.stop()
        self.bus.close()
        if self.keeper is not None:
            self.keeper.close()
        self.queue.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def worker_pool(settings: ServerSettings, engine, artifacts: ArtifactStore, queue, bus) -> WorkerPool:
    """One worker per device of ``settings``, taking jobs from ``queue`` and publishing on ``bus``."""

    def make_executors():  # imports torch: run by the pool in a thread, after the server answers
        manager = engine.components_manager()
        return manager, {device: engine.executor(device, manager, artifacts, settings.cache_bytes,
                                                 settings.allow_remote_code, settings.previews,
                                                 settings.preview_interval, settings.model_dirs)
                         for device in resolve_devices(settings.devices)}

    warmup = None
    if settings.model:
        load = (("LoadCheckpoint", "file") if is_weights_file(settings.model) else ("LoadComponents", "repo"))
        warmup = {"nodes": {"load": {"type": load[0], "inputs": {load[1]: settings.model}}}}
    return WorkerPool(make_executors, queue, bus, OutputEncoder(artifacts), settings.previews, warmup, settings.metadata)


def _serialise(catalog: dict[str, Any]) -> bytes:
    return json.dumps(catalog, separators=(",", ":")).encode()


def job_snapshot(job: Job) -> dict[str, Any]:
    """A running or queued job as a ``snapshot`` event lists it."""
    return {"job": job.id, "status": job.status, "priority": job.priority, "device": job.device}


async def server_state(request: Request) -> ServerState:
    """FastAPI dependency: the running server's state (a coroutine: a plain function would be run in the thread
    pool, a thread hop on every request)."""
    return request.app.state.server


def socket_state(websocket: WebSocket) -> ServerState:
    return websocket.app.state.server
