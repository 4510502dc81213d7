"""Workers: one thread per device, each claiming jobs from the queue and running them on its own ``Executor``.

Every executor shares one ``ComponentsManager``, so jobs for the same model share its components. Each worker
has its own cancel event: cancelling a running job sets it, and the engine stops within one denoising step. The
job's record is written before its last event is published, so a client that sees ``job.finished`` finds the
job done."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from ..components.errors import UsageError
from ..components.errors.nodes import Interrupted, NodeRunError, WorkflowError
from .bus import EventBus
from .memory import engine_info, free_engine
from .outputs import OutputEncoder, preview_data_url
from .queue import Job, JobQueue

logger = logging.getLogger("diffblocks.server")
TERMINAL = ("job.finished", "job.failed", "job.cancelled")


class JobRun:
    """What one run of a job has told so far: timings, which nodes ran or came from the cache, its last event."""

    def __init__(self, job: Job, bus: EventBus, encoder: OutputEncoder, previews: bool, metadata: bool = True):
        self.job, self.bus, self.encoder, self.previews, self.metadata = job, bus, encoder, previews, metadata
        self.executed: list[str] = []
        self.cached: list[str] = []
        self.seconds: dict[str, float] = {}
        self.last: dict[str, Any] | None = None
        self.final: str | None = None  # the node that runs last (job.started lists the order)
        self.held: dict[str, Any] | None = None  # its node.finished, published with the job's end: see on_event

    def on_event(self, event: dict[str, Any]) -> None:
        """The engine's ``on_event``: record, convert and publish, holding back the job's last event and the
        last node's ``node.finished``.

        That node.finished goes out just before the job's end, once the outputs are stored. Published at once, it
        kept the event loop sending while this thread stored the images, each waiting on the other for the GIL:
        1-2 ms more per job on 2 cores. Only the last node's is held: an earlier one may be followed by a wait on
        another job computing the same node."""
        kind = event["type"]
        if kind in TERMINAL:
            self.last = event
            return
        if kind == "job.started":
            self.final = (event.get("nodes") or [None])[-1]
        elif kind == "node.started":
            self.executed.append(event["node"])
        elif kind == "node.cached":
            self.cached.append(event["node"])
        elif kind == "node.finished":
            self.seconds[event["node"]] = event.get("seconds")
            event = {key: value for key, value in event.items() if key != "outputs"}
            if event["node"] == self.final:
                self.held = {**event, "job": self.job.id}
                return
        elif kind == "node.preview":
            if not self.previews or not self.bus.clients:  # nobody to show it to; a replay can do without
                return
            event = {**event, "image": preview_data_url(event["image"])}
        self.bus.publish({**event, "job": self.job.id})

    def publish_held(self) -> None:
        """Publish the last node's node.finished, if it was held back."""
        if self.held is not None:
            held, self.held = self.held, None
            self.bus.publish(held)

    def result(self, outputs: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
        last = self.last or {}
        workflow = self.job.workflow if self.metadata else None
        return {"outputs": self.encoder.outputs(outputs, workflow) if outputs else {},
                "executed": last.get("executed", self.executed), "cached": last.get("cached", self.cached),
                "seconds": last.get("seconds"), "node_seconds": self.seconds}

    def ending(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The job's last event: the engine's own if it sent one of this kind, else one made here."""
        if self.last is not None and self.last["type"] == kind:
            return {**self.last, "job": self.job.id}
        return {"type": kind, "job": self.job.id, "node": fields.pop("node", None), **fields}


class Worker(threading.Thread):
    """Runs queued jobs on one device until the queue closes."""

    def __init__(self, device: str, executor, pool: "WorkerPool"):
        super().__init__(name=f"diffblocks-worker-{device}", daemon=True)
        self.device, self.executor, self.pool = device, executor, pool
        self.cancel = threading.Event()
        self.warm = threading.Event()  # set once the start-up model is loaded and jobs are taken
        self.current: str | None = None

    def run(self) -> None:
        if self.pool.warmup is not None:
            self.warm_up(self.pool.warmup)
        self.warm.set()
        while True:
            job = self.pool.queue.claim(self.device)
            if job is None:
                return
            if self.pool.started(self, job.id):
                self.execute(job)
            self.pool.ended(self)

    def warm_up(self, workflow: dict[str, Any]) -> None:
        """Run ``workflow`` (loading the model the server was started with) before the first job."""
        try:
            self.executor.run(workflow, stop_event=self.cancel)
        except Exception:  # a model that cannot load is the first job's error to report, not the server's
            logger.exception("loading the model at start failed on %s", self.device)

    def execute(self, job: Job) -> None:
        """Run ``job``, record how it ended, then publish its last event."""
        run = JobRun(job, self.pool.bus, self.pool.encoder, self.pool.previews, self.pool.metadata)
        try:
            outputs = self.executor.run(job.workflow, on_event=run.on_event, stop_event=self.cancel, job=job.id)
            status, result, error = "done", run.result(outputs), None
            last = run.ending("job.finished", executed=result["executed"], cached=result["cached"],
                              seconds=result["seconds"])
        except Interrupted as err:
            if self.pool.stopping:  # left running in the file: the next start queues it again
                return
            status, result, error = "cancelled", run.result(None), None
            last = run.ending("job.cancelled", node=err.node)
        except NodeRunError as err:
            status, result, error = "failed", run.result(None), err.error_json()
            last = run.ending("job.failed", **error)
        except WorkflowError as err:
            status, result = "failed", run.result(None)
            error = {**(err.errors[0] if err.errors else {"node": None, "input": None, "message": str(err)}),
                     "errors": err.errors}
            last = run.ending("job.failed", **{k: error[k] for k in ("node", "input", "message")})
        except Exception as err:  # an engine bug must not take the worker down: the job fails and says why
            logger.exception("job %s failed inside the engine", job.id)
            status, result = "failed", run.result(None)
            error = {"node": None, "input": None, "message": f"{type(err).__name__}: {err}"}
            last = run.ending("job.failed", **error)
        finished = self.pool.queue.finish(job.id, status, result, error)
        run.publish_held()
        if finished is False:  # a lost lease: another claim has it
            return
        self.pool.bus.publish(last)


class WorkerPool:
    """The workers, the queue and bus they share, and cancellation by job id.

    ``make_executors()`` returns the shared components manager and ``{device: executor}``; it runs in a thread
    at ``start``, so the server answers (the catalog, the queue) while torch and the models' code import.
    ``ready`` is set once the workers run, or once it is known they cannot: ``error`` then says why
    (``GET /api/system`` shows it; ``diffblocks serve`` stops with it)."""

    def __init__(self, make_executors: Callable[[], tuple[Any, dict[str, Any]]], queue: JobQueue, bus: EventBus,
                 encoder: OutputEncoder, previews: bool = True, warmup: dict[str, Any] | None = None,
                 metadata: bool = True):
        self.queue, self.bus, self.encoder, self.previews, self.warmup = queue, bus, encoder, previews, warmup
        self.metadata = metadata  # output PNGs carry the job's workflow
        self._make_executors = make_executors
        self.manager, self.executors, self.workers = None, {}, []
        self.devices: list[str] = []  # where the workers run, once they do
        self.error: Exception | None = None  # why no worker runs, when make_executors failed
        self.ready = threading.Event()
        self._starter = threading.Thread(target=self._start_workers, name="diffblocks-start", daemon=True)
        self._lock = threading.Lock()
        self._cancel_requested: set[str] = set()
        self.stopping = False

    info = engine_info  # GET /api/system's devices, components, caches and memory
    free = free_engine  # POST /api/free

    def start(self) -> None:
        """Make the executors and start one worker per device, in a thread; returns at once."""
        self._starter.start()

    def _start_workers(self) -> None:
        try:
            manager, executors = self._make_executors()
            with self._lock:
                if not self.stopping:
                    self.manager, self.executors, self.devices = manager, executors, list(executors)
                    self.workers = [Worker(device, executor, self) for device, executor in executors.items()]
                    for worker in self.workers:
                        worker.start()
        except Exception as err:  # no worker runs; the server still answers, and jobs stay queued for the next start
            self.error = err  # a UsageError (a device this machine lacks) is for the starter to report
            if not isinstance(err, UsageError):
                logger.exception("the executors could not be made; no job will run")
        finally:
            self.ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, interrupt running jobs (they are queued again at the next start) and join."""
        with self._lock:
            self.stopping = True
            for worker in self.workers:
                worker.cancel.set()
        self.queue.stop_claims()
        deadline = time.monotonic() + timeout
        if self._starter.is_alive():
            self._starter.join(timeout)
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def started(self, worker: Worker, job_id: str) -> bool:
        """Mark ``job_id`` running on ``worker``; False (and the job recorded cancelled) if it was cancelled
        between being claimed and starting."""
        with self._lock:
            worker.cancel.clear()
            worker.current = job_id
            cancelled = job_id in self._cancel_requested
            self._cancel_requested.discard(job_id)
        if cancelled:
            self.queue.finish(job_id, "cancelled")
            self.bus.publish({"type": "job.cancelled", "job": job_id, "node": None})
        return not cancelled

    def ended(self, worker: Worker) -> None:
        with self._lock:
            worker.current = None

    def interrupt(self, job_id: str) -> bool:
        """Set the cancel event of the worker running ``job_id`` now; False when none is (in memory only, so a
        cancel reaches a running job before anything is read from the queue)."""
        with self._lock:
            return self._interrupt_locked(job_id)

    def cancel_running(self, job_id: str) -> None:
        """Interrupt ``job_id`` (known to be running): set its worker's cancel event, or remember the request
        for the moment a worker starts it."""
        with self._lock:
            if not self._interrupt_locked(job_id):
                self._cancel_requested.add(job_id)

    def _interrupt_locked(self, job_id: str) -> bool:
        for worker in self.workers:
            if worker.current == job_id:
                worker.cancel.set()
                return True
        return False

    def running(self) -> dict[str, str | None]:
        """Device -> the job running there (None when idle)."""
        with self._lock:
            return {worker.device: worker.current for worker in self.workers}
