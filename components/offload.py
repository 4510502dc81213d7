"""Automatic CPU offload: which models to move off the device, and the hooks that move them.

The decisions are pure functions of model sizes and free memory, :func:`choose_offload` (what to evict) and
:func:`should_wait` (whether to wait for running models first), so they are tested on CPU with made-up
numbers. :class:`AutoOffloader` is the thin layer around them: an accelerate ``ModelHook`` on each model asks
it to make room right before the model's forward runs, and it moves weights accordingly. A model counts as
in use from the start of its forward (or decorated entry point) to its end, in any thread, and is never
moved meanwhile. Free device memory is read through an injectable probe, so tests can simulate a device of
any size.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import re
import sys
import threading
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module
from accelerate.utils import send_to_device

from .errors import ConfigError

logger = logging.getLogger(__name__)

MemoryProbe = Callable[[torch.device], int]
"""Returns the free memory, in bytes, of a device."""

# Beyond this many models on the device the exact search (2**n subsets) gives way to a greedy one.
MAX_EXACT_CANDIDATES = 12

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")


def parse_size(size: str | int | float, what: str = "size") -> int:
    """Bytes in ``size``: an int, or a string such as ``"3GB"`` (10**9), ``"512MiB"`` (2**20) or ``"100"``.

    Raises:
        ConfigError: ``size`` is negative or not a size.
    """
    if isinstance(size, (int, float)) and not isinstance(size, bool) and size >= 0:
        return int(size)
    match = _SIZE.fullmatch(size) if isinstance(size, str) else None
    if match is None or match.group(2).lower() not in _UNITS:
        raise ConfigError.bad_value(
            "ComponentsManager", what, "a size such as '3GB', '512MiB' or a number of bytes", size
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def module_size_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (each tensor counted once)."""
    tensors = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


@dataclass(frozen=True)
class Candidate:
    """A model on the device, other than the one about to run; one ``in_use`` (its forward is running in
    some thread) is never moved off it."""

    id: str
    size_bytes: int
    last_used: float
    in_use: bool = False


def choose_offload(
    needed_bytes: int, free_bytes: int, reserve_bytes: int, candidates: Sequence[Candidate]
) -> list[str]:
    """Which on-device models to move to CPU so that a model of ``needed_bytes`` fits.

    The model fits when ``needed_bytes <= free_bytes - reserve_bytes``; then nothing is evicted. Otherwise
    the answer is the set of idle candidates (not ``in_use``) that frees enough with the fewest bytes; among
    sets freeing the same bytes, the one whose most recently used member is oldest (least recently used
    first). When even evicting every idle candidate is not enough, every idle candidate is evicted.

    Args:
        needed_bytes: Size of the model about to run.
        free_bytes: Free memory on the device now.
        reserve_bytes: Memory to keep free for activations.
        candidates: The models on the device, other than the one about to run.

    Returns:
        The ids to evict, least recently used first.
    """
    shortfall = needed_bytes - (free_bytes - reserve_bytes)
    if shortfall <= 0:
        return []
    lru = sorted((c for c in candidates if not c.in_use), key=lambda c: c.last_used)
    if sum(c.size_bytes for c in lru) < shortfall:
        return [c.id for c in lru]
    if len(lru) <= MAX_EXACT_CANDIDATES:
        chosen = _smallest_sufficient(lru, shortfall)
    else:
        chosen = _greedy_sufficient(lru, shortfall)
    return [c.id for c in sorted(chosen, key=lambda c: c.last_used)]


def should_wait(
    needed_bytes: int, free_bytes: int, reserve_bytes: int, candidates: Sequence[Candidate]
) -> bool:
    """Whether the model about to run should wait for running models to end rather than go over budget.

    True when evicting every idle candidate still leaves too little room and some candidate is in use:
    its forward ends eventually and then it may be evicted. When nothing is in use, waiting cannot help and
    the model is placed anyway, over budget. Arguments as for :func:`choose_offload`.
    """
    shortfall = needed_bytes - (free_bytes - reserve_bytes)
    idle_bytes = sum(c.size_bytes for c in candidates if not c.in_use)
    return shortfall > idle_bytes and any(c.in_use for c in candidates)


def _smallest_sufficient(candidates: Sequence[Candidate], shortfall: int) -> tuple[Candidate, ...]:
    def cost(subset: tuple[Candidate, ...]) -> tuple:
        recency = tuple(sorted((c.last_used for c in subset), reverse=True))
        return sum(c.size_bytes for c in subset), recency

    subsets = (
        s
        for r in range(1, len(candidates) + 1)
        for s in itertools.combinations(candidates, r)
        if sum(c.size_bytes for c in s) >= shortfall
    )
    return min(subsets, key=cost)


def _greedy_sufficient(lru: Sequence[Candidate], shortfall: int) -> list[Candidate]:
    # Take least recently used models until enough is freed, then give back the largest ones not needed.
    chosen, freed = [], 0
    for candidate in lru:
        if freed >= shortfall:
            break
        chosen.append(candidate)
        freed += candidate.size_bytes
    for candidate in sorted(chosen, key=lambda c: -c.size_bytes):
        if freed - candidate.size_bytes >= shortfall:
            chosen.remove(candidate)
            freed -= candidate.size_bytes
    return chosen


def device_free_memory(device: torch.device) -> int:
    """Free bytes on ``device``; CPU (and any device torch cannot query) counts as unlimited.

    Raises:
        RuntimeError, AssertionError: from torch, when the device is not available.
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "xpu" and hasattr(torch, "xpu"):
        return torch.xpu.mem_get_info(device)[0]
    if device.type == "mps":
        return torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
    return sys.maxsize


def apply_forward_hook(method: Callable) -> Callable:
    """Decorate a model's non-``forward`` entry point (``vae.decode``) so an offload hook still runs first and
    the model stays in use, never evicted, until the method returns or raises."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        hook = getattr(self, "_hf_hook", None)
        if hook is None:
            return method(self, *args, **kwargs)
        return _call_hooked(hook, self, functools.partial(method, self), args, kwargs)

    return wrapper


def _call_hooked(hook: ModelHook, module: torch.nn.Module, method: Callable, args: tuple, kwargs: dict) -> Any:
    # A try/finally of our own around the whole call (``running``): accelerate's hooked forward calls
    # ``post_forward`` only when the forward succeeds, so it could not end an in-use count.
    running = getattr(hook, "running", None)
    with running(module) if running is not None else contextlib.nullcontext():
        args, kwargs = hook.pre_forward(module, *args, **kwargs)
        return method(*args, **kwargs)


def _guard_forward(module: torch.nn.Module, hook: "AutoOffloadHook") -> None:
    """Replace the ``forward`` accelerate installed by one that keeps the model in use while it runs.

    It calls the hook it was built with, so taking the hook off in the middle of a forward (a component
    removed from another thread) does not break that forward.
    """
    original = module._old_forward

    @functools.wraps(original)
    def forward(*args, **kwargs):
        return _call_hooked(hook, module, original, args, kwargs)

    module.forward = forward


class AutoOffloadHook(ModelHook):
    """Keeps its model on CPU and asks the offloader to place it on the device before each forward."""

    def __init__(self, offloader: "AutoOffloader"):
        self.execution_device = offloader.device
        # A weak reference: a model outliving its manager must not keep the manager's other models alive.
        self._offloader = weakref.ref(offloader)

    def init_hook(self, module):
        return module.to("cpu")

    def running(self, module: torch.nn.Module) -> contextlib.AbstractContextManager:
        """A context in which ``module`` is on the device and counted in use (see :meth:`AutoOffloader.running`)."""
        offloader = self._offloader()
        return offloader.running(module) if offloader is not None else contextlib.nullcontext()

    def pre_forward(self, module, *args, **kwargs):
        offloader = self._offloader()
        # Within ``running`` the model is already placed. A caller that only calls ``pre_forward`` (an entry
        # point decorated by other code) gets it placed, but not kept from eviction while it runs.
        if offloader is not None and not offloader.holds(module):
            offloader.prepare(module)
        return send_to_device(args, self.execution_device), send_to_device(kwargs, self.execution_device)


@dataclass
class _Placed:
    module: torch.nn.Module
    ids: list[str]
    last_used: int = 0
    on_device: bool = False
    in_use: int = 0  # forwards of this model running now, in all threads (nested calls counted each)
    detached: bool = False  # unhooked while in use: goes back to CPU when its last forward ends


class AutoOffloader:
    """Moves hooked models between CPU and one device, evicting with :func:`choose_offload`.

    One object may be registered under several component ids; it gets one hook. All bookkeeping and every
    move happen under ``lock`` (the manager's), so concurrent forwards see consistent decisions. A model
    whose forward runs in any thread is never moved; a model that cannot get room without evicting one
    waits (:func:`should_wait`) until a forward ends, unless its thread itself is inside a forward: then
    it is placed over budget, so that no two threads can wait on each other.

    Args:
        device: Where models run.
        reserve_bytes: Memory to keep free on the device for activations.
        memory_probe: Returns the free bytes of a device; defaults to :func:`device_free_memory`.
        lock: The lock guarding the caller's registry; a fresh one when not given.
    """

    def __init__(
        self,
        device: torch.device,
        reserve_bytes: int,
        memory_probe: MemoryProbe | None = None,
        lock: threading.RLock | None = None,
    ):
        self.device = device
        self.reserve_bytes = reserve_bytes
        self.memory_probe = memory_probe or device_free_memory
        self.last_evicted: list[str] = []
        self._lock = lock or threading.RLock()
        self._forward_ended = threading.Condition(self._lock)
        self._local = threading.local()  # .held: Counter of id(module) -> forwards this thread is inside
        self._placed: dict[int, _Placed] = {}
        self._clock = itertools.count(1)

    @property
    def resident_ids(self) -> list[str]:
        """Component ids of the models this offloader has placed on the device, least recently used first."""
        with self._lock:
            placed = sorted((p for p in self._placed.values() if p.on_device), key=lambda p: p.last_used)
            return [cid for p in placed for cid in p.ids]

    def attach(self, component_id: str, module: torch.nn.Module) -> None:
        """Hook ``module`` (moving it to CPU), or record another id for an already hooked one."""
        with self._lock:
            placed = self._placed.get(id(module))
            if placed is not None:
                placed.ids.append(component_id)
                return
            hook = AutoOffloadHook(self)
            add_hook_to_module(module, hook)
            _guard_forward(module, hook)
            self._placed[id(module)] = _Placed(module, [component_id])

    def detach(self, component_id: str) -> None:
        """Forget ``component_id``; the last id of a model takes its hook off and returns it to CPU (when its
        running forwards end, if any)."""
        with self._lock:
            for key, placed in self._placed.items():
                if component_id in placed.ids:
                    placed.ids.remove(component_id)
                    if not placed.ids:
                        del self._placed[key]
                        self._retire(placed)
                    return

    def detach_all(self) -> None:
        """Take every hook off and return every model to CPU (those running, when their forwards end)."""
        with self._lock:
            placed, self._placed = list(self._placed.values()), {}
            for p in placed:
                self._retire(p)
            self._empty_cache()

    def _retire(self, placed: _Placed) -> None:
        placed.detached = True
        _unhook(placed.module, to_cpu=placed.on_device and not placed.in_use)
        self._forward_ended.notify_all()  # a thread waiting to place this model stops waiting

    def holds(self, module: torch.nn.Module) -> bool:
        """Whether the calling thread is inside ``module``'s forward (or decorated entry point)."""
        return self._held()[id(module)] > 0

    def _held(self) -> Counter:
        if not hasattr(self._local, "held"):
            self._local.held = Counter()
        return self._local.held

    @contextlib.contextmanager
    def running(self, module: torch.nn.Module) -> Iterator[None]:
        """Place ``module`` on the device (see :meth:`prepare`) and keep it there, counted in use, until the
        block ends, also by an exception. Nested blocks for a model this thread already runs move nothing."""
        placed = self._enter(module)
        try:
            yield
        finally:
            if placed is not None:
                self._leave(placed)

    def _enter(self, module: torch.nn.Module) -> _Placed | None:
        with self._lock:
            if not self.holds(module):
                self.prepare(module)
            placed = self._placed.get(id(module))
            if placed is None or not placed.on_device:  # detached meanwhile: the forward runs unmanaged
                return None
            placed.in_use += 1
            self._held()[id(module)] += 1
            return placed

    def _leave(self, placed: _Placed) -> None:
        with self._lock:
            placed.in_use -= 1
            held = self._held()
            held[id(placed.module)] -= 1
            if not held[id(placed.module)]:
                del held[id(placed.module)]
            if placed.in_use:
                return
            # A model detached while it ran goes back to CPU now, unless another offloader has hooked it since.
            if placed.detached and placed.on_device and getattr(placed.module, "_hf_hook", None) is None:
                placed.module.to("cpu")
                placed.on_device = False
            self._forward_ended.notify_all()

    def prepare(self, module: torch.nn.Module) -> list[str]:
        """Make room for ``module`` on the device and move it there; returns the evicted component ids.

        Models in use are not evicted: when room can only be made by evicting them, this waits until a
        forward ends (see :func:`should_wait`). The model is not counted in use; :meth:`running` does that.
        """
        with self._lock:
            placed = self._placed.get(id(module))
            if placed is None:  # a stale hook: the model was detached meanwhile
                return []
            evicted = self._place(placed)
            placed.last_used = next(self._clock)
            self.last_evicted = evicted
            return evicted

    def _place(self, placed: _Placed) -> list[str]:
        # Never wait while this thread is inside a forward: a waiting thread then holds no model in use, so
        # every model in use belongs to a thread that is running, and its end wakes the waiters.
        may_wait = not self._held()
        while not placed.on_device and not placed.detached:
            on_device = {p.ids[0]: p for p in self._placed.values() if p.on_device and p is not placed}
            needed, free, candidates = module_size_bytes(placed.module), sys.maxsize, []
            if on_device:  # the device is only queried when something could have to leave
                free = self.memory_probe(self.device)
                candidates = [
                    Candidate(key, module_size_bytes(p.module), p.last_used, p.in_use > 0)
                    for key, p in on_device.items()
                ]
            if may_wait and should_wait(needed, free, self.reserve_bytes, candidates):
                busy = ", ".join(c.id for c in candidates if c.in_use)
                logger.info("%s waits for room on %s: %s in use", placed.ids[0], self.device, busy)
                self._forward_ended.wait()
                continue
            evicted = self._evict(choose_offload(needed, free, self.reserve_bytes, candidates), on_device)
            placed.module.to(self.device)
            placed.on_device = True
            logger.info(
                "moved %s to %s%s", placed.ids[0], self.device,
                f", offloading {', '.join(evicted)} to cpu" if evicted else "",
            )
            return evicted
        return []

    def _evict(self, chosen: list[str], on_device: dict[str, _Placed]) -> list[str]:
        for key in chosen:
            on_device[key].module.to("cpu")
            on_device[key].on_device = False
        if chosen:
            self._empty_cache()
        return [cid for key in chosen for cid in on_device[key].ids]

    def _empty_cache(self) -> None:
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()


def _unhook(module: torch.nn.Module, to_cpu: bool) -> None:
    remove_hook_from_module(module)
    # accelerate restores ``forward`` as an instance attribute holding a bound method: a reference cycle
    # that would keep a removed model alive until the garbage collector runs.
    forward = module.__dict__.get("forward")
    if getattr(forward, "__self__", None) is module and forward.__func__ is getattr(type(module), "forward", None):
        del module.__dict__["forward"]
    if to_cpu:
        module.to("cpu")
