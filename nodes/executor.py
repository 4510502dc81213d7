"""Running workflows: validate, order, then for each node either take its outputs from the cache or run it.

A node's cache key (:mod:`.keys`) is computed just before it would run, from its type, constants, the keys of
its inputs' sources and the components it receives, so changing one widget re-runs that node and what reads
from it, and an identical run executes nothing. A node that is interrupted or fails is not cached. When two
runs need the same key at once, one computes and the other waits for it.

Events (plain dicts, see the package contract) go to ``on_event`` as they happen; :meth:`Executor.stream` yields
them instead.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from typing import Any, Callable, Iterator

from ..components.errors import DiffblocksError, Interrupted, NodeRunError, WorkflowError
from ..components.errors.nodes import ArtifactError
from .cache import OutputCache
from .catalog import node_type
from .family_check import family_problems
from .keys import file_stamp, identities, node_key
from .model_files import SCHEMA_KEY, ModelFolders, model_problems
from .node_type import RunContext
from .preview import latents_to_image
from .validation import check
from .values import artifact_ref
from .workflow import Link, Workflow

Event = dict[str, Any]


class Executor:
    """Runs workflows over shared components.

    Args:
        components_manager: where loaded components live and are shared (a new one when None).
        device: where loaders put models (``"cpu"``, ``"cuda:0"``).
        artifacts: an ArtifactStore for image references (``LoadImage``, image constants).
        cache_bytes: the output cache's budget.
        preview_every: a preview event every this many loop steps (0: none).
        preview_interval: and at least this many seconds after the node's previous preview: a preview per step
            of a fast model costs more than it shows, so a server sends a few a second (0: no such limit). A
            loop's last step is previewed whatever these say.
        allow_remote_code: let ``LoadComponents`` run a modular repo's custom block code.
        model_folders: folders laid out as ComfyUI's ``models/`` (a :class:`ModelFolders` or a list of them): a
            loader input marked with a model kind takes the name of a file there (see :mod:`.model_files`).
    """

    def __init__(self, components_manager=None, device: str = "cpu", artifacts=None, cache_bytes: int = 2 * 1024**3,
                 preview_every: int = 1, allow_remote_code: bool = False, preview_interval: float = 0.0,
                 model_folders=None):
        if components_manager is None:
            from ..components.manager import ComponentsManager

            components_manager = ComponentsManager()
        self.components_manager = components_manager
        self.device = device
        self.artifacts = artifacts
        self.cache = OutputCache(cache_bytes)
        self.preview_every, self.preview_interval = preview_every, preview_interval
        self.allow_remote_code = allow_remote_code
        self.model_folders = (model_folders if isinstance(model_folders, ModelFolders)
                              else ModelFolders(model_folders or ()))
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def free(self) -> None:
        """Drop every cached output."""
        self.cache.free()

    def cache_info(self) -> dict[str, int]:
        return self.cache.info()

    def stream(self, workflow, **kwargs: Any) -> Iterator[Event]:
        """Run in a thread and yield its events until the job ends (finished, failed or cancelled).

        On the CPU, keep a process's torch work in one thread: each thread that runs torch has its own OpenMP
        pool, and once there are more pool threads than cores, GNU OpenMP lets idle ones sleep at once and wakes
        them for every parallel region. On a 2-core machine, after one ``run`` (or any torch work) in the main
        thread, every later ``stream`` job took 3 times as long (770 ms against 255 ms for 20 steps of the
        embedded model). ``stream`` alone runs at ``run``'s speed."""
        events: queue.Queue = queue.Queue()
        thread = threading.Thread(target=self._run_quietly, args=(workflow, events.put, kwargs), daemon=True)
        thread.start()
        while True:
            event = events.get()
            yield event
            if event["type"] in ("job.finished", "job.failed", "job.cancelled"):
                break
        thread.join()

    def _run_quietly(self, workflow, emit, kwargs) -> None:
        try:
            self.run(workflow, on_event=emit, **kwargs)
        except DiffblocksError as err:
            if not getattr(err, "_reported", False):
                emit({"type": "job.failed", "job": kwargs.get("job"), "node": None, "input": None, "message": str(err)})

    def run(self, workflow: Workflow | dict, on_event: Callable[[Event], None] | None = None,
            stop_event: threading.Event | None = None, job: str | None = None,
            targets: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Run ``workflow`` (only what ``targets`` need, default the workflow's own ``targets``); returns
        ``{node: {output: value}}``.

        Raises:
            WorkflowError: the workflow's problems, before anything runs (a model name the folders lack, a
                preset wired to another family's checkpoint file too).
            NodeRunError: a node failed (``node``, ``input``, ``message``).
            Interrupted: ``stop_event`` was set; the node that was running is not cached.
        """
        workflow = check(workflow)
        as_json = workflow.to_json()
        problems = model_problems(as_json, self.model_folders) if self.model_folders else []
        if problems or (problems := family_problems(as_json, self.model_folders)):
            raise WorkflowError(problems)
        job = job or uuid.uuid4().hex[:12]
        run = _Run(self, workflow, job, on_event or (lambda event: None), stop_event or threading.Event())
        return run.execute(workflow.order(targets))

    # --- one computation per key at a time ---------------------------------------------------------------
    def _claim(self, key: str) -> threading.Event | None:
        """None when this caller computes ``key``; else the event the computing caller sets when done."""
        with self._lock:
            if key in self._inflight:
                return self._inflight[key]
            self._inflight[key] = threading.Event()
            return None

    def _release(self, key: str) -> None:
        with self._lock:
            self._inflight.pop(key).set()


class _Run:
    """One job's pass over its nodes."""

    def __init__(self, executor: Executor, workflow: Workflow, job: str, emit, stop: threading.Event):
        self.executor, self.workflow, self.job, self.emit, self.stop = executor, workflow, job, emit, stop
        self.results: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.executed: list[str] = []
        self.cached: list[str] = []

    def execute(self, order: list[str]) -> dict[str, dict[str, Any]]:
        started = time.perf_counter()
        self.emit({"type": "job.started", "job": self.job, "node": None, "nodes": order})
        for node_id in order:
            if self.stop.is_set():
                self._cancelled(node_id)
            self._node(node_id)
        self.emit({"type": "job.finished", "job": self.job, "node": None, "executed": self.executed,
                   "cached": self.cached, "seconds": time.perf_counter() - started})
        return {n: self.results[n] for n in order}

    def _node(self, node_id: str) -> None:
        spec = self.workflow.nodes[node_id]
        node = node_type(spec.type)
        values, links = self._inputs(node_id, spec)
        files = self._model_files(node, values)
        constants = {n: v for n, v in spec.constants().items() if v is not None}
        key = node_key(node.name, node.version(), constants, links, identities(values), files)
        self.keys[node_id] = key
        while True:
            hit = self.executor.cache.get(key)
            if hit is not None:
                self.results[node_id] = hit
                self.cached.append(node_id)
                self.emit({"type": "node.cached", "job": self.job, "node": node_id})
                return
            waiting = self.executor._claim(key)
            if waiting is None:
                break
            waiting.wait()  # another run computes this key; take its result (or compute, if it failed)
        try:
            self._compute(node_id, node, values, key)
        finally:
            self.executor._release(key)

    def _compute(self, node_id, node, values, key) -> None:
        self.emit({"type": "node.started", "job": self.job, "node": node_id})
        ctx = self._context(node_id)
        started = time.perf_counter()
        try:
            outputs = node.run(ctx, values)
        except DiffblocksError as err:
            if self.stop.is_set():
                self._cancelled(node_id)
            self._failed(node_id, NodeRunError.failed(node_id, node.name, err), err)
        except Exception as err:  # a block's own bug still names the node; the cause is chained
            self._failed(node_id, NodeRunError.failed(node_id, node.name, err), err)
        if self.stop.is_set():
            self._cancelled(node_id)
        seconds = time.perf_counter() - started
        self.executor.cache.put(key, outputs, seconds)
        self.results[node_id] = outputs
        self.executed.append(node_id)
        self.emit({"type": "node.finished", "job": self.job, "node": node_id, "seconds": seconds})

    def _model_files(self, node, values: dict[str, Any]) -> dict[str, str]:
        """Names from the model folders, for the inputs that take them, as the paths they name there (the cache
        key keeps the name); returns the :func:`file_stamp` of each such input that names a file (a name or a
        path), for the key."""
        folders, stamps = self.executor.model_folders, {}
        for name, value in values.items():
            kind = node.inputs[name].schema.get(SCHEMA_KEY) if name in node.inputs else None
            if kind is None or not isinstance(value, str):
                continue
            if folders and (found := folders.resolve(kind, value)) is not None:
                values[name] = str(found)
            if (stamp := file_stamp(values[name])) is not None:
                stamps[name] = stamp
        return stamps

    def _inputs(self, node_id: str, spec) -> tuple[dict[str, Any], dict[str, str]]:
        """The node's input values (links resolved, image references opened) and its links as key parts."""
        values, links = {}, {}
        for name, value in spec.inputs.items():
            if isinstance(value, Link):
                values[name] = self.results[value.node].get(value.output)
                links[name] = f"{self.keys[value.node]}:{value.output}"
            elif (sha := artifact_ref(value)) is not None:
                if self.executor.artifacts is None:
                    raise NodeRunError(node_id, "an image reference needs an artifact store (Executor(artifacts=...))", name)
                try:
                    values[name] = self.executor.artifacts.open_image(sha)
                except ArtifactError as err:  # gone from this store (or, with Redis, from every copy)
                    raise NodeRunError(node_id, str(err), name) from err
            else:
                values[name] = value
        return values, links

    def _context(self, node_id: str) -> RunContext:
        ex = self.executor
        ctx = RunContext(node_id, self.job, self.stop, self.emit, ex.components_manager, ex.device, ex.artifacts,
                         ex.allow_remote_code, ex.preview_every)
        if ex.preview_every:
            ctx.extra["step_callback"] = _previewer(ctx, ex.preview_interval)
        return ctx

    def _failed(self, node_id: str, error: NodeRunError, cause: BaseException) -> None:
        self.emit({"type": "job.failed", "job": self.job, **error.error_json()})
        error._reported = True
        raise error from cause

    def _cancelled(self, node_id: str | None) -> None:
        self.emit({"type": "job.cancelled", "job": self.job, "node": node_id})
        error = Interrupted(node_id)
        error._reported = True
        raise error


def _previewer(ctx: RunContext, interval: float):
    """A loop ``step_callback`` that emits a preview every ``ctx.preview_every`` steps, at least ``interval``
    seconds apart, and one of the loop's last step whatever the interval: the image a node keeps showing is then
    what the loop ended with, not a step the interval caught (never stops the loop)."""
    last: float | None = None

    def step_callback(i: int, t: Any, latents: Any) -> None:
        nonlocal last
        if latents is None:
            return
        bar = ctx.extra.get("progress")
        final = bar is not None and bar.step >= bar.total  # the bar moved on before this callback
        if (i + 1) % ctx.preview_every and not final:
            return
        now = time.monotonic()
        if last is not None and now - last < interval and not final:
            return
        last = now
        ctx.event("node.preview", step=i + 1, image=latents_to_image(latents, ctx.extra.get("vae")))

    return step_callback
