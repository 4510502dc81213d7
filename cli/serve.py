"""``diffblocks serve``: the node server (HTTP and WebSocket over the node engine) on 127.0.0.1 by default.

    diffblocks serve                                  # http://127.0.0.1:8188, the CPU or every CUDA device
    diffblocks serve --device cuda:0,cuda:1 --model embedded --data-dir ~/diffblocks-jobs
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..components.errors import FlagError
from ..components.errors.server import ServerSetupError
from .files import model_dirs, start_model

QUEUES = ("sqlite", "redis", "rediss", "unix")  # unix: a Redis socket (unix:///run/redis.sock?db=0)
KEEP_ALIVE_S = 75  # seconds an idle HTTP connection stays open (nginx's and aiohttp's servers keep 75)


def default_data_dir() -> Path:
    """Where the job queue, history and artifacts live unless ``--data-dir`` says otherwise."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "diffblocks" / "serve"


def pick_devices(value: str) -> list[str]:
    """``--device``: ``auto`` (every CUDA device, else the CPU) or a comma-separated list. Whether the devices
    exist is checked when the workers start (``resolve_devices``): that needs torch and CUDA, seconds that the
    server spends answering instead; ``serve`` stops with the error if one is missing."""
    from ..server.settings import AUTO_DEVICES

    if value == AUTO_DEVICES:
        return [AUTO_DEVICES]
    devices = [name.strip() for name in value.split(",") if name.strip()]
    if not devices:
        raise FlagError.bad_value("--device", "auto, cpu, or a list like cuda:0,cuda:1", value)
    if len(set(devices)) != len(devices):
        raise FlagError.unusable("--device", value, "names a device twice")
    return devices


def check_queue(value: str | None) -> str | None:
    """``--queue``: ``sqlite`` (the queue in the data folder; None is returned) or a Redis URL, which must answer."""
    if value is None or value == "sqlite":
        return None
    if value.split(":", 1)[0] not in QUEUES[1:] or "://" not in value:
        raise FlagError.bad_value("--queue", "sqlite (the queue in --data-dir) or a Redis URL (redis://HOST:PORT/DB)",
                                  value)
    try:
        import redis
    except ImportError as err:
        raise ServerSetupError.missing_queue_extra(err) from err
    try:
        with redis.Redis.from_url(value, socket_connect_timeout=5) as client:
            client.ping()
    except (redis.RedisError, ValueError) as err:
        raise ServerSetupError.queue_unreachable(value, err) from err
    return value


def check_preview_interval(value: float) -> float:
    """``--preview-interval``: seconds, 0 or more."""
    if not value >= 0:
        raise FlagError.bad_value("--preview-interval", "a number of seconds, 0 or more (0: a preview every step)",
                                  value)
    return value


NO_METADATA_HELP = ("do not write the job's workflow into output PNGs (written by default, as ComfyUI does: an image "
                    "loaded into the editor brings back its graph, prompts included)")
MODELS_DIR_HELP = ("a folder laid out as ComfyUI's models/ (checkpoints/, loras/, vae/, controlnet/, diffusion_models/, "
                   "diffusers/; an existing ComfyUI's or AUTOMATIC1111's works as it is): the loaders take the names "
                   "of its files and GET /api/models lists them (repeatable; the first folder that has a name wins)")
PREVIEW_INTERVAL_HELP = ("the least time between two previews of one job, in seconds (default 0.1; 0: one every "
                         "denoising step)")


def check_retention(args, redis_queue: bool) -> dict:
    """``--keep-jobs`` and ``--artifact-ttl`` (hours), which only a Redis queue has: the settings they give."""
    given = {}
    if getattr(args, "keep_jobs", None) is not None:
        if not args.keep_jobs >= 1:
            raise FlagError.bad_value("--keep-jobs", "a number of jobs, 1 or more", args.keep_jobs)
        given["keep_jobs"] = args.keep_jobs
    if args.artifact_ttl is not None:
        if not args.artifact_ttl > 0:
            raise FlagError.bad_value("--artifact-ttl", "a number of hours above 0", args.artifact_ttl)
        given["artifact_ttl"] = args.artifact_ttl * 3600
    if given and not redis_queue:
        flag = "--keep-jobs" if "keep_jobs" in given else "--artifact-ttl"
        raise FlagError.needs(flag, "a Redis --queue", "the SQLite queue keeps every job and image on disk")
    return given


ARTIFACT_TTL_HELP = ("with a Redis queue: hours an image stays in Redis after it was last stored or fetched "
                     "(default 24); the front keeps its own copy of every finished job's images")


def settings_from(args):
    """The server's settings from the flags; raises ``FlagError`` before anything starts."""
    from ..server.settings import ServerSettings

    redis_queue = args.queue not in (None, "sqlite")
    if args.engine_process and redis_queue:
        raise FlagError.needs("--engine-process", "the SQLite queue", "with a Redis --queue this process runs no job; "
                              "'diffblocks worker' processes do")
    retention = check_retention(args, redis_queue)
    queue = check_queue(args.queue)
    dirs = model_dirs(args.models_dir)
    model = start_model(args.model, dirs)
    if not 0 < args.port < 65536:
        raise FlagError.bad_value("--port", "a port number (1-65535)", args.port)
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    if data_dir.exists() and not data_dir.is_dir():
        raise FlagError.unusable("--data-dir", str(args.data_dir), "is a file; give a folder")
    return ServerSettings(data_dir=data_dir, devices=pick_devices(args.device),
                          model=model, queue=queue,
                          allow_remote_code=args.allow_remote_code, cors_origins=list(args.cors_origin or []),
                          preview_interval=check_preview_interval(args.preview_interval),
                          engine_process=args.engine_process, metadata=not args.no_metadata, model_dirs=dirs,
                          **retention)


def serve(args) -> int:
    """``diffblocks serve``: check the flags, print the address, run until interrupted."""
    try:
        import uvicorn

        from ..server import create_app
        from ..server.settings import AUTO_DEVICES
    except ImportError as err:
        raise ServerSetupError.missing_extra(err) from err
    settings = settings_from(args)
    host = f"[{args.host}]" if ":" in args.host else args.host
    auto = settings.devices == [AUTO_DEVICES]
    devices = f"{AUTO_DEVICES}: every CUDA device, else the CPU" if auto else ", ".join(settings.devices)
    banner = (f"diffblocks serve: http://{host}:{args.port} (devices {devices}; "
              f"jobs and images in {settings.data_dir}"
              f"{'; models from ' + ', '.join(map(str, settings.model_dirs)) if settings.model_dirs else ''}"
              f"{'; the workers in a process of their own' if settings.engine_process else ''})")
    if settings.queue:
        banner = (f"diffblocks serve: http://{host}:{args.port} (jobs, events and images in {settings.queue}; "
                  f"start workers with: diffblocks worker --queue {settings.queue})")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        banner += f"\ndiffblocks serve: listening on {args.host}: anyone who can reach it can run jobs"

    app = create_app(settings)
    failed: list[Exception] = []

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:  # the address is printed once it answers, so a script may wait for this line
                print(banner, flush=True)
                threading.Thread(target=watch_workers, args=(app.state.server.pool, self, auto, failed),
                                 daemon=True).start()

    # no per-message deflate: previews are PNGs already, and compressing every event costs the workers CPU; an idle
    # connection kept longer than clients keep theirs (httpx 5 s, aiohttp 15 s): at uvicorn's 5 s, a client sending
    # on one as the server closes it gets "Server disconnected without sending a response"
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", ws_per_message_deflate=False,
                            timeout_keep_alive=KEEP_ALIVE_S)
    try:
        Server(config).run()
    except KeyboardInterrupt:  # uvicorn shuts down cleanly, then raises the Ctrl-C again: that is the normal end
        pass
    if failed:
        raise failed[0]
    return 0


def watch_workers(pool, server, auto: bool, failed: list) -> None:
    """Once the workers start: print the devices ``--device auto`` chose, or stop the server when they cannot
    run as asked (a device this machine does not have), leaving the error in ``failed`` for ``serve`` to raise."""
    pool.ready.wait()
    if isinstance(pool.error, ServerSetupError):
        failed.append(pool.error)
        server.should_exit = True
    elif auto and pool.devices:
        print(f"diffblocks serve: workers on {', '.join(pool.devices)}", flush=True)


def add_parser(commands) -> None:
    """Add the ``serve`` subcommand to ``commands`` (an argparse subparsers action)."""
    s = commands.add_parser("serve", help="serve the node engine over HTTP and WebSocket (a node UI's backend)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8188, help="port (default 8188)")
    s.add_argument("--model", metavar="PATH_OR_REPO", help="load this model at start ('embedded' for the shipped one; a "
                   "folder, a Hub repo, or an SD 1.x / 2.x / SDXL checkpoint .safetensors or .ckpt)")
    s.add_argument("--device", default="auto", help="auto (default), cpu, or a list like cuda:0,cuda:1: one worker each")
    s.add_argument("--models-dir", action="append", metavar="DIR", help=MODELS_DIR_HELP)
    s.add_argument("--data-dir", metavar="DIR", help=f"job queue, history and images (default {default_data_dir()})")
    s.add_argument("--allow-remote-code", action="store_true",
                   help="let workflows run code that model repos ship (off by default)")
    s.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                   help="allow a web page served from ORIGIN to call the API (repeatable; none by default)")
    s.add_argument("--preview-interval", type=float, default=0.1, metavar="SECONDS", help=PREVIEW_INTERVAL_HELP)
    s.add_argument("--queue", metavar="URL",
                   help="the job queue: sqlite (default, in --data-dir) or redis://HOST:PORT/DB, for "
                        "'diffblocks worker' processes on any host (this process then runs no job)")
    s.add_argument("--keep-jobs", type=int, metavar="N",
                   help="with a Redis queue: how many finished jobs the history keeps "
                        "(default 10000; the oldest go first)")
    s.add_argument("--artifact-ttl", type=float, metavar="HOURS", help=ARTIFACT_TTL_HELP)
    s.add_argument("--no-metadata", action="store_true", help=NO_METADATA_HELP)
    s.add_argument("--engine-process", action="store_true",
                   help="run the workers in a process of their own: the server's requests and events never take "
                        "the engine's turn at Python (GPUs), and a crash there fails one job, not the server")
    s.set_defaults(func=serve)
