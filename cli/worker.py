"""``diffblocks worker``: run the jobs of a ``diffblocks serve --queue redis://...`` front, on any host.

    diffblocks serve --queue redis://queue-host:6379/0                     # the front: HTTP, WebSocket, no job
    diffblocks worker --queue redis://queue-host:6379/0 --device cuda:0   # one per GPU, on as many hosts as wanted

Each worker claims jobs from the Redis queue, renews their leases while it runs them, publishes their events
and stores their images in Redis. Ctrl-C or SIGTERM hands a running job back to the queue at once; a worker
that dies without a word has its job queued again when the lease runs out (``--lease``).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from ..components.errors import FlagError
from ..components.errors.server import ServerSetupError
from .files import model_dirs, start_model
from .serve import (ARTIFACT_TTL_HELP, MODELS_DIR_HELP, NO_METADATA_HELP, PREVIEW_INTERVAL_HELP,
                    check_preview_interval, check_queue, check_retention, default_data_dir, pick_devices)


def default_cache_dir() -> Path:
    """Where a worker keeps its copies of images unless ``--data-dir`` says otherwise."""
    return default_data_dir().parent / "worker"


def settings_from(args):
    """The worker's settings from the flags; raises ``FlagError`` before anything starts."""
    from ..server.settings import ServerSettings

    if args.queue == "sqlite":
        raise FlagError.bad_value("--queue", "a Redis URL (redis://HOST:PORT/DB), the one the front serves", args.queue)
    retention = check_retention(args, True)
    queue = check_queue(args.queue)
    dirs = model_dirs(args.models_dir)
    model = start_model(args.model, dirs)
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_cache_dir()
    if data_dir.exists() and not data_dir.is_dir():
        raise FlagError.unusable("--data-dir", str(args.data_dir), "is a file; give a folder")
    if not args.lease > 0:
        raise FlagError.bad_value("--lease", "a number of seconds above 0", args.lease)
    return ServerSettings(data_dir=data_dir, devices=pick_devices(args.device), model=model, queue=queue,
                          lease_seconds=args.lease, allow_remote_code=args.allow_remote_code,
                          previews=not args.no_previews, metadata=not args.no_metadata,
                          preview_interval=check_preview_interval(args.preview_interval), model_dirs=dirs,
                          **retention)


def worker(args) -> int:
    """``diffblocks worker``: check the flags, take jobs until interrupted."""
    try:
        from ..server.engine import NodeEngine
        from ..server.redis_bus import RedisArtifactStore, RedisEventPublisher
        from ..server.redis_queue import RedisJobQueue
        from ..server.state import worker_pool
    except ImportError as err:
        raise ServerSetupError.missing_extra(err) from err
    settings = settings_from(args)
    queue = RedisJobQueue(settings.queue, settings.lease_seconds)
    artifacts = RedisArtifactStore(settings.queue, settings.data_dir / "artifacts", settings.max_pixels,
                                   ttl_seconds=settings.artifact_ttl)
    bus = RedisEventPublisher(settings.queue)
    pool = worker_pool(settings, NodeEngine(None), artifacts, queue, bus)
    queue.on_cancel = pool.cancel_running
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    pool.start()
    pool.ready.wait()
    if isinstance(pool.error, ServerSetupError):  # a device this machine does not have
        queue.close()
        bus.close()
        raise pool.error
    for thread in pool.workers:
        thread.warm.wait()
    if pool.workers:  # printed once the model is loaded and jobs are taken, so a script may wait for this line
        print(f"diffblocks worker: {', '.join(f'{device}@{queue.name}' for device in pool.executors)} "
              f"taking jobs from {settings.queue}", flush=True)
    try:
        while pool.workers and not stop.wait(1.0):
            pass
    finally:  # a job cut off here goes back to the queue now, not when its lease runs out
        pool.stop()
        queue.close()
        bus.close()
    return 0 if pool.workers else 1


def add_parser(commands) -> None:
    """Add the ``worker`` subcommand to ``commands`` (an argparse subparsers action)."""
    w = commands.add_parser("worker", help="run the jobs of a 'diffblocks serve --queue redis://...' front")
    w.add_argument("--queue", metavar="URL", required=True, help="the front's Redis queue: redis://HOST:PORT/DB")
    w.add_argument("--device", default="auto",
                   help="auto (default), cpu, or a list like cuda:0,cuda:1: one worker thread each")
    w.add_argument("--model", metavar="PATH_OR_REPO", help="load this model at start ('embedded' for the shipped one; a "
                   "folder, a Hub repo, or an SD 1.x / 2.x / SDXL checkpoint .safetensors or .ckpt)")
    w.add_argument("--models-dir", action="append", metavar="DIR", help=MODELS_DIR_HELP)
    w.add_argument("--data-dir", metavar="DIR", help=f"this worker's copies of images (default {default_cache_dir()})")
    w.add_argument("--lease", type=float, default=30.0, metavar="SECONDS",
                   help="how long a job stays with this worker if it stops answering, before it runs elsewhere "
                        "(default 30)")
    w.add_argument("--allow-remote-code", action="store_true",
                   help="let workflows run code that model repos ship (off by default)")
    w.add_argument("--no-previews", action="store_true", help="do not send preview images while denoising")
    w.add_argument("--no-metadata", action="store_true", help=NO_METADATA_HELP)
    w.add_argument("--preview-interval", type=float, default=0.1, metavar="SECONDS", help=PREVIEW_INTERVAL_HELP)
    w.add_argument("--artifact-ttl", type=float, metavar="HOURS", help=ARTIFACT_TTL_HELP)
    w.set_defaults(func=worker)
