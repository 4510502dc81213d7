"""Per-call edits of a shared model: one dispatcher hook pair per module, the edits in a ``ContextVar``.

Several pipeline calls may run one model at once from different threads (a PAG pipeline and a CFG
pipeline sharing a UNet, or four threads on one pipeline). A hook on a module is seen by every thread's
forward, so the hooks installed here carry no per-call data: :func:`_before` / :func:`_after` look up the
edits of the *calling context* (``_ACTIVE``, set by :func:`activate` and reset when it ends) and do
nothing for a context without edits for that module. A new thread starts with an empty context, so
another call's forward through the same module runs unperturbed.

The dispatchers are reference-counted per module under a lock and removed when the last call using the
module leaves: outside a perturbed forward the model carries no hooks at all (no overhead for plain
calls, nothing left on a model that is saved, copied or compiled). Adding or removing them while other
threads run forwards through the module is harmless by construction:

- A call holds a reference to every module it edits for as long as its edits are active, so the hooks
  its own forward goes through never change under it. Only a thread *without* edits for a module can see
  that module's dispatchers half-registered or half-removed, and for it they are no-ops whatever they
  receive: PyTorch registers a hook and its ``with_kwargs`` flag in two steps, so :func:`_before` and
  :func:`_after` accept both calling conventions.
- ``torch.nn.Module`` snapshots its hook dicts before calling them, so a dispatcher removed mid-forward
  may still be called (a no-op) and one added mid-forward may be missed (nothing to do for that thread).
- One case is PyTorch's: a forward that raises walks its module's *live* forward-hook dict; should another
  thread add or remove that module's dispatchers just then, the error that forward was raising anyway
  becomes a ``RuntimeError`` (dictionary changed size during iteration) chained to it.

A torch-function mode entered for a module's forward (:meth:`CallState.enter`) is left by the dispatcher
when the forward returns or raises an ``Exception`` (``always_call``), and otherwise (a ``BaseException``
such as ``KeyboardInterrupt``, which PyTorch does not run ``always_call`` hooks for, or an interruption
anywhere in between) by :func:`activate` when the ``with`` block ends, wherever the mode then is on this
thread's mode stack.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Any, Iterator, Mapping, Sequence

from torch import nn
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack, _pop_mode, _push_mode


class Edit:
    """One change to one module's forward; subclasses override either or both steps."""

    def before(self, module: nn.Module, args: tuple, kwargs: dict, state: "CallState") -> None:
        """Runs before the module's forward."""

    def after(self, module: nn.Module, args: tuple, kwargs: dict, output: Any, state: "CallState") -> Any:
        """Runs after it; returns the (possibly edited) output."""
        return output


class FrameMode(TorchFunctionMode):
    """A torch-function mode active during one forward of one module (see :meth:`CallState.enter`)."""

    def left(self, module: nn.Module) -> None:
        """Called after the module's forward returned and the mode was left (e.g. to check it did its work)."""


def leave_mode(mode: TorchFunctionMode) -> None:
    """Take ``mode`` off this thread's torch-function mode stack wherever it is, keeping the modes above it.

    A no-op when ``mode`` is not on the stack (never entered, or already left).
    """
    if not any(m is mode for m in _get_current_function_mode_stack()):
        return
    above = []
    try:
        while (top := _pop_mode()) is not mode:
            above.append(top)
    finally:
        for other in reversed(above):
            _push_mode(other)


class CallState:
    """What one thread's forward under one set of edits accumulates: entered modes, probed values."""

    def __init__(self) -> None:
        self.frames: list[tuple[nn.Module, list[FrameMode]]] = []
        self.values: dict[Any, Any] = {}

    def open(self, module: nn.Module) -> None:
        """A dispatched forward of ``module`` starts."""
        self.frames.append((module, []))

    def enter(self, mode: FrameMode) -> None:
        """Enter ``mode`` for the forward that is about to run (the last opened)."""
        # recorded before it is pushed: an interruption in between leaves nothing untracked on the stack
        self.frames[-1][1].append(mode)
        _push_mode(mode)

    def leave(self, module: nn.Module) -> list[FrameMode]:
        """Close ``module``'s forward: leave its modes, and any a raising inner forward left behind."""
        index = next((i for i in reversed(range(len(self.frames))) if self.frames[i][0] is module), None)
        if index is None:
            return []
        modes = list(self.frames[index][1])
        self.leave_from(index)
        return modes

    def leave_from(self, index: int = 0) -> None:
        """Leave every mode of the frames from ``index`` on, the last entered first."""
        while len(self.frames) > index:
            _, modes = self.frames[-1]
            while modes:
                leave_mode(modes[-1])
                modes.pop()
            self.frames.pop()


class _Active:
    """The edits active in a context, with one :class:`CallState` per thread that runs forwards under them."""

    def __init__(self, edits: Mapping[nn.Module, tuple[Edit, ...]]):
        self.edits = edits
        self._local = threading.local()

    def state(self) -> CallState:
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = CallState()
        return state


_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar("diffblocks_model_edits", default=None)


def _before(module: nn.Module, args: tuple, kwargs: dict | None = None) -> None:
    active = _ACTIVE.get()
    edits = active.edits.get(module) if active is not None else None
    if edits:
        state = active.state()
        state.open(module)
        for edit in edits:
            edit.before(module, args, kwargs or {}, state)


def _after(module: nn.Module, args: tuple, *rest: Any) -> Any:
    active = _ACTIVE.get()
    edits = active.edits.get(module) if active is not None else None
    if not edits:
        return None
    # (kwargs, output) as registered; (output,) only for a thread that met the hook half-registered
    kwargs, output = rest if len(rest) == 2 else ({}, rest[0])
    modes = active.state().leave(module)
    if output is None:  # the forward raised (an always_call hook): leaving the modes is all there is to do
        return None
    for mode in modes:
        mode.left(module)
    state = active.state()
    for edit in edits:
        output = edit.after(module, args, kwargs, output, state)
    return output


_LOCK = threading.Lock()
_HELD: dict[nn.Module, tuple[int, tuple]] = {}


def _acquire(modules: Sequence[nn.Module], held: list[nn.Module]) -> None:
    with _LOCK:
        for module in modules:
            count, handles = _HELD.get(module, (0, ()))
            if not count:
                handles = (
                    module.register_forward_pre_hook(_before, with_kwargs=True),
                    # first among the module's forward hooks: a mode must not outlive the forward itself
                    module.register_forward_hook(_after, with_kwargs=True, always_call=True, prepend=True),
                )
            _HELD[module] = (count + 1, handles)
            held.append(module)


def _release(held: list[nn.Module]) -> None:
    with _LOCK:
        while held:
            module = held[-1]
            count, handles = _HELD[module]
            if count > 1:
                _HELD[module] = (count - 1, handles)
            else:
                del _HELD[module]
                for handle in handles:
                    handle.remove()
            held.pop()


def dispatched_modules() -> int:
    """How many modules carry dispatcher hooks right now (0 when no perturbed forward is in flight)."""
    with _LOCK:
        return len(_HELD)


@contextlib.contextmanager
def activate(edits: Mapping[nn.Module, Sequence[Edit]]) -> Iterator[None]:
    """Apply ``edits`` (module -> its edits, in order) to the forwards this context runs in the ``with`` block.

    Edits active in an enclosing ``activate`` of the same context stay active (inner ones run after them).
    Whatever ends the block, the modes entered on this thread are left, the context's previous edits are
    restored and this call's hook references are released.
    """
    outer = _ACTIVE.get()
    merged = dict(outer.edits) if outer is not None else {}
    for module, more in edits.items():
        merged[module] = merged.get(module, ()) + tuple(more)
    active = _Active(merged)
    held: list[nn.Module] = []
    try:
        _acquire(list(edits), held)
        token = _ACTIVE.set(active)
        try:
            yield
        finally:
            try:
                active.state().leave_from(0)
            finally:
                _ACTIVE.reset(token)
    finally:
        _release(held)
