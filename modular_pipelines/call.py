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
from ..components.errors import DiffblocksError, MissingInputError
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


def first_missing_input(block, provided: set[str], path: str = ""):
    """The first required input that nothing gives when ``block`` runs with ``provided`` (names of the values
    that are not None), as ``(param, block path, block class)``; None when every one is there.

    Walks the blocks that would run, in order: an Auto block's chosen branch, a sequence's blocks (each adding
    its outputs), a loop wrapper's own ``loop_inputs`` (its sub-blocks' are checked as they run, see :mod:`.loop`).
    ``provided`` is extended with the outputs on the way.
    """
    if isinstance(block, AutoPipelineBlocks):
        chosen = block.select(provided)
        if chosen is None:
            return None
        return first_missing_input(chosen[1], provided, f"{path}.{chosen[0]}" if path else chosen[0])
    if isinstance(block, SequentialPipelineBlocks):
        for name, sub in block.sub_blocks.items():
            missing = first_missing_input(sub, provided, f"{path}.{name}" if path else name)
            if missing is not None:
                return missing
        return None
    is_loop = isinstance(block, LoopSequentialPipelineBlocks)
    inputs = block.inputs
    for param in block.loop_inputs if is_loop else inputs:
        if param.required and param.name not in provided and param.name is not None:
            return param, path, type(block).__name__
    for param in block.intermediate_outputs:
        provided.add(param.name)
    # an input left unset gets its default, which the block writes back to the state for later blocks
    for param in inputs:
        if param.name is not None and param.default is not None and param.has_default:
            provided.add(param.name)
    return None


def check_required_inputs(blocks, values: dict[str, Any]) -> None:
    """Refuse, before any block runs, a call that leaves a required input of a block that would run unset.

    Raises:
        MissingInputError: naming the input, the block path and class, and what the input is for.
    """
    missing = first_missing_input(blocks, {name for name, value in values.items() if value is not None})
    if missing is not None:
        param, path, cls_name = missing
        raise MissingInputError.required(param.name, path, cls_name, param.description)
