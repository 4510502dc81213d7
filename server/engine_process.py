"""The node engine in a process of its own: ``diffblocks serve --engine-process``.

The server's process answers HTTP and WebSocket clients; a child process imports torch and runs the workers.
Both open the same job queue (SQLite, whose claims are safe across processes) and artifact folder. One pipe
carries the rest: up, the engine's events, which the server numbers and sends; down, a wake-up for each queued
job, cancellations, how many clients listen (no previews are made for nobody), and the questions of
``GET /api/system`` and ``POST /api/free``.

Why: Python runs one thread at a time per process. In one process, every request the event loop answers and
every event it sends takes that turn from the engine's thread, which on a GPU spends its time in Python launching
kernels: on an H200 the embedded model's 180 ms job ran 8-30 ms slower inside the server than called directly.
In its own process the engine never waits for the server's Python. The child is also the only process that holds
models: if it dies (a driver fault, the kernel's out-of-memory killer), its running job fails with that reason and
a new child takes the next job.

The child is a fresh interpreter (``python -m diffblocks.server.engine_process FD``), not a fork: it copies
neither the server's threads nor its event loop, and, unlike ``multiprocessing``'s spawn, it does not run the
script that started the server again."""

from __future__ import annotations

import itertools
import logging
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..components.errors import ServerSetupError
from ..components.errors.server import EngineError
from .memory import rss_bytes
from .workers import TERMINAL

logger = logging.getLogger("diffblocks.server")
CALL_SECONDS = 120.0  # the longest GET /api/system or POST /api/free waits for the engine's process


class EngineProcess:
    """The server's stand-in for ``workers.WorkerPool`` when the workers run in a child process.

    ``ready`` and ``error`` mean what they mean for ``WorkerPool``: set once the child has made its executors, or
    found it cannot (a device the machine lacks)."""

    def __init__(self, settings, queue, bus, artifacts_root: Path):
        self.settings, self.queue, self.bus, self.artifacts_root = settings, queue, bus, Path(artifacts_root)
        self.manager = None  # the components manager lives in the child
        self.devices: list[str] = []
        self.ready = threading.Event()
        self.error: Exception | None = None
        self.stopping = False
        self.restarts = 0  # children started again after one died
        self.process = None
        self._conn = None
        self._send_lock = threading.Lock()
        self._calls: dict[int, list] = {}  # call id -> [done event, answer]
        self._call_ids = itertools.count()
        self._running: set[str] = set()  # jobs the child's events say have started and not ended

    # --- the child's life ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine's process and the thread that reads from it; returns at once."""
        self.queue.on_submit = lambda job: self._send("wake", None)
        self.bus.on_clients = lambda count: self._send("clients", count)
        self._spawn()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                       pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        ours = Connection(ours.detach())
        ours.send((self.settings, self.queue.path, str(self.artifacts_root)))
        with self._send_lock:
            self.process, self._conn = process, ours
        self._send("clients", self.bus.clients)
        threading.Thread(target=self._read, args=(ours, process), name="diffblocks-engine-reader", daemon=True).start()

    def _read(self, conn, process) -> None:
        """Publish the child's events and hand its answers to the callers, until its end of the pipe closes."""
        while True:
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                conn.close()
                break
            if kind == "event":
                if payload["type"] == "job.started":
                    self._running.add(payload["job"])
                elif payload["type"] in TERMINAL:
                    self._running.discard(payload["job"])
                self.bus.publish(payload)
            elif kind == "answer":
                call_id, answer = payload
                waiting = self._calls.get(call_id)
                if waiting is not None:
                    waiting[1] = answer
                    waiting[0].set()
            elif kind == "ready":
                self.devices = payload["devices"]
                if payload["error"] is not None:
                    usage, message = payload["error"]
                    self.error = (ServerSetupError if usage else EngineError)(message)
                self.ready.set()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._ended(process)

    def _ended(self, process) -> None:
        """The child's pipe closed: if the server is not stopping, fail what it ran and start another."""
        for waiting in list(self._calls.values()):
            waiting[0].set()  # their answers stay None: the callers say the engine stopped
        self._running.clear()
        if self.stopping:
            return
        died = EngineError.died(_exit_reason(process.returncode))
        why = str(died)
        logger.error("%s", why)
        for job in self.queue.active():
            if job.status == "running":
                error = {"node": None, "input": None, "message": f"{why} while this job ran"}
                self.queue.finish(job.id, "failed", {}, error)
                self.bus.publish({"type": "job.failed", "job": job.id, **error})
        if not self.ready.is_set() or self.error is not None:  # it never got going: another would fare no better
            self.error = self.error or died
            self.ready.set()
            return
        self.restarts += 1
        self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to stop (running jobs are queued again at the next start) and wait for it."""
        self.stopping = True
        process = self.process
        if process is None:
            return
        self._send("stop", None)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _send(self, kind: str, payload: Any) -> None:
        with self._send_lock:
            conn = self._conn
            if conn is None:
                return
            try:
                conn.send((kind, payload))
            except (OSError, ValueError):  # the child is gone; the reader thread deals with that
                pass

    # --- what WorkerPool answers ------------------------------------------------------------------------------
    def interrupt(self, job_id: str) -> bool:
        """Ask the child to interrupt ``job_id`` if its events say it runs, before any query of the queue; False
        otherwise (a job claimed but not started yet gets ``cancel_running`` once the queue says it runs)."""
        if job_id not in self._running:
            return False
        self._send("cancel", job_id)
        return True

    def cancel_running(self, job_id: str) -> None:
        """Ask the child to interrupt ``job_id`` (or to cancel it as it starts)."""
        self._send("cancel", job_id)

    def info(self) -> dict[str, Any]:
        """``GET /api/system``'s engine part, from the child; ``rss_bytes`` counts both processes."""
        answer = self._call("info") if self.ready.is_set() and self.error is None else None
        if answer is None:
            answer = {"devices": [], "components": [], "cache": {"entries": 0, "bytes": 0, "budget": 0}, "cuda": {},
                      "rss_bytes": 0}
        return {**answer, "rss_bytes": answer["rss_bytes"] + rss_bytes()}

    def free(self) -> dict[str, Any]:
        """``POST /api/free`` in the child; the sizes count both processes."""
        self.ready.wait()
        here = rss_bytes()
        answer = self._call("free") if self.error is None else None
        if answer is None:
            raise EngineError.stopped(str(self.error or "it stopped while answering"))
        return {**answer, "rss_before": answer["rss_before"] + here, "rss_after": answer["rss_after"] + rss_bytes()}

    def _call(self, name: str) -> Any:
        """Ask the child ``name`` (``info`` or ``free``) and wait for the answer (None if it stopped)."""
        call_id = next(self._call_ids)
        waiting = self._calls[call_id] = [threading.Event(), None]
        try:
            self._send("call", (call_id, name))
            waiting[0].wait(CALL_SECONDS)
            return waiting[1]
        finally:
            del self._calls[call_id]


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class PipeBus:
    """The child's stand-in for ``bus.EventBus``: events go up the pipe; the server numbers and sends them."""

    def __init__(self, send):
        self._send = send
        self.clients = 0  # the server says how many listen

    def publish(self, event: dict[str, Any]) -> None:
        self._send("event", event)


def engine_main(conn, settings, queue_path: str, artifacts_root: str) -> None:
    """The child: workers over the shared queue and artifacts, told what to do through ``conn``."""
    from ..nodes.artifacts import ArtifactStore
    from .engine import NodeEngine
    from .queue import JobQueue
    from .state import worker_pool

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal reaches us too; the server stops us
    lock = threading.Lock()

    def send(kind: str, payload: Any) -> None:
        with lock:
            try:
                conn.send((kind, payload))
            except OSError:  # the server is gone: the loop below reads the end of the pipe and stops the workers
                pass

    queue = JobQueue(queue_path)
    bus = PipeBus(send)
    pool = worker_pool(settings, NodeEngine(None), ArtifactStore(artifacts_root, max_pixels=settings.max_pixels),
                       queue, bus)

    def announce() -> None:
        pool.ready.wait()
        error = pool.error
        if error is not None:  # a device the machine lacks says so itself; anything else also names its type
            usage = isinstance(error, ServerSetupError)
            error = (usage, str(error) if usage else f"{type(error).__name__}: {error}")
        send("ready", {"devices": pool.devices, "error": error})

    def answer(call_id: int, name: str) -> None:
        try:
            result = pool.info() if name == "info" else pool.free()
        except Exception:
            logger.exception("the engine's process could not answer %s", name)
            result = None
        send("answer", (call_id, result))

    pool.start()
    threading.Thread(target=announce, name="diffblocks-engine-ready", daemon=True).start()
    try:
        while True:
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):  # the server is gone
                break
            if kind == "wake":
                queue.poke()
            elif kind == "cancel":
                pool.cancel_running(payload)
            elif kind == "clients":
                bus.clients = payload
            elif kind == "call":
                threading.Thread(target=answer, args=payload, daemon=True).start()
            elif kind == "stop":
                break
    finally:
        pool.stop()
        queue.close()


if __name__ == "__main__":  # the child: started by EngineProcess with its end of the socket pair
    _conn = Connection(int(sys.argv[1]))
    engine_main(_conn, *_conn.recv())
