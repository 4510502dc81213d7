"""What one pipeline call sees: the shared models, its own copies of stateful components, its own stop signal.

Models are shared by every call. A scheduler (timesteps, step index, solver history) and a guider (step,
momentum) change while a call runs, so each call works on its own copy, made by the component's
``for_call()``; two calls running at once on one pipeline, or on pipelines sharing components, then never
see each other's state. A call stops at its next loop step when its own event is set, which
``ModularPipeline.interrupt()`` does for every running call.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

from .checks import check_input_type
from .composite import CompositeBlocks
from ..components.errors import BlockExecutionError, DiffblocksError, MissingInputError
from .loop import LoopSequentialPipelineBlocks
from .sequential import SequentialPipelineBlocks
from .auto import AutoPipelineBlocks


def call_copy(component: Any) -> Any:
    """``component.for_call()`` for components that keep per-call state, else the component itself."""
    for_call = getattr(component, "for_call", None)
    return for_call() if callable(for_call) else component


class CallComponents:
    """The ``components`` argument blocks get during one call: the pipeline's components and config values,
    with stateful components replaced by this call's copies, and ``interrupted`` read from this call's event.

    Args:
        pipeline: the ModularPipeline (or anything with ``_components`` and attribute access to them).
        stop: set it to stop this call at the next loop step.
        settings: per component name, config values for this call only (``{"guider": {"guidance_scale": 9}}``):
            that component is rebuilt for the call with ``component.new(**values)``.
    """

    def __init__(self, pipeline: Any, stop: threading.Event, settings: dict[str, dict[str, Any]] | None = None):
        self._pipeline = pipeline
        self._stop = stop
        self._own = {name: copy for name, component in pipeline._components.items()
                     if component is not None and (copy := call_copy(component)) is not component}
        for name, values in (settings or {}).items():
            self._own[name] = pipeline._components[name].new(**values)

    def __getattr__(self, name: str) -> Any:
        # only reached for names that are not attributes of this object
        own = self.__dict__.get("_own", {})
        if name in own:
            return own[name]
        return getattr(self.__dict__["_pipeline"], name)

    @property
    def components(self) -> dict[str, Any]:
        return {**self._pipeline.components, **self._own}

    @property
    def interrupted(self) -> bool:
        """Whether this call was asked to stop."""
        return self._stop.is_set()

    def interrupt(self) -> None:
        """Stop this call (only) at its next loop step: what a ``callback_on_step_end`` calls on the ``pipe`` it
        is given to end the run early."""
        self._stop.set()

    def __repr__(self) -> str:
        return f"CallComponents({', '.join(self.components)})"


class RunningCalls:
    """The stop events of a pipeline's running calls, so that ``interrupt()`` reaches each of them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: list[threading.Event] = []

    @contextmanager
    def track(self, event: threading.Event) -> Iterator[threading.Event]:
        with self._lock:
            self._events.append(event)
        try:
            yield event
        finally:
            with self._lock:
                self._events.remove(event)

    def stop_all(self) -> int:
        """Set every running call's event; returns how many calls were running."""
        with self._lock:
            events = list(self._events)
        for event in events:
            event.set()
        return len(events)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


def declarations(blocks) -> dict[str, list[tuple[str, str, Any]]]:
    """Every place an input name is declared in a block tree: ``{name: [(path, block class, param)]}``.

    Leaves declare their ``inputs``; a loop wrapper its ``loop_inputs`` (its sub-blocks are leaves).
    """
    found: dict[str, list[tuple[str, str, Any]]] = {}
    nodes = [("", blocks), *(blocks.walk() if isinstance(blocks, CompositeBlocks) else [])]
    for path, block in nodes:
        if isinstance(block, LoopSequentialPipelineBlocks):
            params = block.loop_inputs
        elif isinstance(block, CompositeBlocks):
            continue
        else:
            params = block.inputs
        for param in params:
            if param.name is not None:
                found.setdefault(param.name, []).append((path, type(block).__name__, param))
    return found


def check_given_inputs(blocks, inputs: dict[str, Any]) -> None:
    """Refuse, before any block runs, a given value that no declaration of its name accepts.

    A name may be declared by several blocks (of which an Auto block runs only some); the value is refused
    when it fails every one of them, with the first declaration's error (naming block, input, expectation).
    """
    declared = declarations(blocks)
    for name, value in inputs.items():
        if value is None or name not in declared:
            continue
        first_error = None
        for path, cls_name, param in declared[name]:
            try:
                check_input_type(param, value, path, cls_name)
            except DiffblocksError as err:
                first_error = first_error or err
                continue
            first_error = None
            break
        if first_error is not None:
            raise first_error


def blocks_that_run(block, provided: set[str], path: str = ""):
    """``(path, block)`` of each block that would run when ``block`` runs with ``provided`` (names of the values
    that are not None), in order: an Auto block's chosen branch, a sequence's blocks, a loop wrapper as one (its
    sub-blocks' inputs are checked as they run, see :mod:`.loop`). ``provided`` is extended with each block's
    outputs once the caller has looked at it."""
    if isinstance(block, AutoPipelineBlocks):
        chosen = block.select(provided)
        if chosen is not None:
            yield from blocks_that_run(chosen[1], provided, f"{path}.{chosen[0]}" if path else chosen[0])
        return
    if isinstance(block, SequentialPipelineBlocks):
        for name, sub in block.sub_blocks.items():
            yield from blocks_that_run(sub, provided, f"{path}.{name}" if path else name)
        return
    yield path, block
    for param in block.intermediate_outputs:
        provided.add(param.name)
    # an input left unset gets its default, which the block writes back to the state for later blocks
    for param in block.inputs:
        if param.name is not None and param.default is not None and param.has_default:
            provided.add(param.name)


def first_missing_input(block, provided: set[str], path: str = ""):
    """The first required input that nothing gives when ``block`` runs with ``provided`` (extended with the
    outputs on the way), as ``(param, block path, block class)``; None when every one is there."""
    for where, running in blocks_that_run(block, provided, path):
        params = running.loop_inputs if isinstance(running, LoopSequentialPipelineBlocks) else running.inputs
        for param in params:
            if param.required and param.name not in provided and param.name is not None:
                return param, where, type(running).__name__
    return None


def check_ready(blocks, components, values: dict[str, Any], path: str = "") -> None:
    """Ask each block that would run whether it can (``ModularPipelineBlocks.check_ready``), before any runs
    (``path``: where ``blocks`` sits, as the run names it).

    Raises:
        BlockExecutionError: naming the block path and class, and why it cannot run.
    """
    provided = {name for name, value in values.items() if value is not None}
    for path, block in blocks_that_run(blocks, provided, path):
        try:
            block.check_ready(components, values)
        except DiffblocksError as err:
            raise BlockExecutionError.not_ready(path, type(block).__name__, err) from err


def check_required_inputs(blocks, values: dict[str, Any]) -> None:
    """Refuse, before any block runs, a call that leaves a required input of a block that would run unset.

    Raises:
        MissingInputError: naming the input, the block path and class, and what the input is for.
    """
    missing = first_missing_input(blocks, {name for name, value in values.items() if value is not None})
    if missing is not None:
        param, path, cls_name = missing
        raise MissingInputError.required(param.name, path, cls_name, param.description)
