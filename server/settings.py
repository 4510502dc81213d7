"""What a server is started with: devices, folders, limits and what it allows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..components.devices import device_problem
from ..components.errors import ServerSetupError

AUTO_DEVICES = "auto"
ARTIFACT_TTL = 24 * 3600.0  # with Redis: seconds an image stays there after it was last stored or fetched


@dataclass
class ServerSettings:
    """Everything ``create_app`` needs to know; ``diffblocks serve`` fills it from its flags.

    Args:
        data_dir: holds ``jobs.sqlite`` (the queue and history) and ``artifacts/``; ``None`` makes a temporary one.
        devices: one worker thread per device (``"cpu"``, ``"cuda:0"``, ...); ``["auto"]`` for every CUDA device, else
            the CPU, decided when the workers start (so torch is imported after the server answers, not before).
        model: a model folder, Hub id or ``"embedded"`` to load at start, so the first job finds it loaded.
        allow_remote_code: let workflows load code from model repos (off unless the server is started so).
        cors_origins: origins allowed to call the API from a browser page served elsewhere (none by default).
        max_json_bytes / max_upload_bytes: request body limits (413 past them).
        max_pixels: the largest image an upload or artifact may decode to.
        replay_events: how many past events a reconnecting client can catch up on.
        client_buffer: events queued per WebSocket client before previews, then progress, are dropped.
        cache_bytes: the engine's output cache budget, per device.
        previews: forward the engine's preview images to clients.
        metadata: write each job's workflow into its output PNGs (a ``workflow`` tEXt chunk, as ComfyUI does), so an
            image loaded into an editor brings back its graph; off keeps prompts out of shared images.
        preview_interval: the least time, in seconds, between two previews of one job (0: one every step). Ten
            a second is smooth to watch; a preview per step of a fast model costs the steps more than it shows.
        queue: ``redis://HOST:PORT/DB`` to keep jobs, events and images in Redis for ``diffblocks worker``
            processes on any host (this process then runs no job); None keeps them in ``data_dir`` (SQLite).
        lease_seconds: with Redis, how long a job stays with a worker that stopped answering before it is
            queued again.
        keep_jobs: with Redis, how many finished jobs the history keeps (the oldest go first; the SQLite file
            keeps them all, on disk).
        artifact_ttl: with Redis, how long (seconds) an image stays there after it was last stored or fetched;
            the front keeps its own copy of every finished job's images, and puts one back when a job needs it.
        model_dirs: folders laid out as ComfyUI's ``models/`` (``checkpoints/``, ``loras/``, ``vae/``, ...): the
            loaders take the names of the files there, and ``GET /api/models`` lists them (see
            ``nodes/model_files.py``). With Redis each ``diffblocks worker`` looks names up in its own.
        engine_process: run the workers in a child process (``server/engine_process.py``), so the event loop
            never takes the engine's turn at Python, and a crash there fails one job instead of the server.
    """

    data_dir: Path | None = None
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    model: str | None = None
    allow_remote_code: bool = False
    cors_origins: list[str] = field(default_factory=list)
    max_json_bytes: int = 2 * 1024 * 1024
    max_upload_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    replay_events: int = 4096
    client_buffer: int = 512
    cache_bytes: int = 2 * 1024**3
    previews: bool = True
    metadata: bool = True
    preview_interval: float = 0.1
    queue: str | None = None
    lease_seconds: float = 30.0
    keep_jobs: int = 10_000
    artifact_ttl: float = ARTIFACT_TTL
    engine_process: bool = False
    model_dirs: list[Path] = field(default_factory=list)


def resolve_devices(devices: list[str]) -> list[str]:
    """``devices`` as the workers run on them: ``["auto"]`` becomes every CUDA device, else ``["cpu"]``; any other
    list is checked, each device one torch knows and this machine has (``ServerSetupError`` names the first that
    is not). This imports torch and starts CUDA (seconds): the workers' start thread calls it, once the server
    answers."""
    import torch

    if list(devices) == [AUTO_DEVICES]:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    for name in devices:
        problem = device_problem(name)
        if problem is not None:
            raise ServerSetupError.bad_device(name, problem)
    return list(devices)
