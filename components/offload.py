"""Automatic CPU offload: which models to move off the device, and the hooks that move them.

The decision is a pure function, :func:`choose_offload`, of model sizes and free memory, so it is tested on
CPU with made-up numbers. :class:`AutoOffloader` is the thin layer around it: an accelerate ``ModelHook`` on
each model asks it to make room right before the model's forward runs, and it moves weights accordingly.
Free device memory is read through an injectable probe, so tests can simulate a device of any size.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module
from accelerate.utils import send_to_device

from ..modular_pipelines.errors import ConfigError

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
    """A model on the device that could be moved off it."""

    id: str
    size_bytes: int
    last_used: float


def choose_offload(
    needed_bytes: int, free_bytes: int, reserve_bytes: int, candidates: Sequence[Candidate]
) -> list[str]:
    """Which on-device models to move to CPU so that a model of ``needed_bytes`` fits.

    The model fits when ``needed_bytes <= free_bytes - reserve_bytes``; then nothing is evicted. Otherwise
    the answer is the set of candidates that frees enough with the fewest bytes; among sets freeing the same
    bytes, the one whose most recently used member is oldest (least recently used first). When even
    evicting every candidate is not enough, every candidate is evicted.

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
    lru = sorted(candidates, key=lambda c: c.last_used)
    if sum(c.size_bytes for c in lru) < shortfall:
        return [c.id for c in lru]
    if len(lru) <= MAX_EXACT_CANDIDATES:
        chosen = _smallest_sufficient(lru, shortfall)
    else:
        chosen = _greedy_sufficient(lru, shortfall)
    return [c.id for c in sorted(chosen, key=lambda c: c.last_used)]


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
    """Decorate a model's non-``forward`` entry point (``vae.decode``) so an offload hook still runs first."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        hook = getattr(self, "_hf_hook", None)
        if hook is not None:
            args, kwargs = hook.pre_forward(self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return wrapper


class AutoOffloadHook(ModelHook):
    """Keeps its model on CPU and asks the offloader to place it on the device before each forward."""

    def __init__(self, offloader: "AutoOffloader"):
        self.execution_device = offloader.device
        # A weak reference: a model outliving its manager must not keep the manager's other models alive.
        self._offloader = weakref.ref(offloader)

    def init_hook(self, module):
        return module.to("cpu")

    def pre_forward(self, module, *args, **kwargs):
        offloader = self._offloader()
        if offloader is not None:
            offloader.prepare(module)
        return send_to_device(args, self.execution_device), send_to_device(kwargs, self.execution_device)


@dataclass
class _Placed:
    module: torch.nn.Module
    ids: list[str]
    last_used: int = 0
    on_device: bool = False


class AutoOffloader:
    """Moves hooked models between CPU and one device, evicting with :func:`choose_offload`.

    One object may be registered under several component ids; it gets one hook. All bookkeeping and every
    move happen under ``lock`` (the manager's), so concurrent forwards see consistent decisions.

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
            add_hook_to_module(module, AutoOffloadHook(self))
            self._placed[id(module)] = _Placed(module, [component_id])

    def detach(self, component_id: str) -> None:
        """Forget ``component_id``; the last id of a model takes its hook off and returns it to CPU."""
        with self._lock:
            for key, placed in self._placed.items():
                if component_id in placed.ids:
                    placed.ids.remove(component_id)
                    if not placed.ids:
                        del self._placed[key]
                        _unhook(placed.module, to_cpu=placed.on_device)
                    return

    def detach_all(self) -> None:
        """Take every hook off and return every model to CPU."""
        with self._lock:
            placed, self._placed = list(self._placed.values()), {}
            for p in placed:
                _unhook(p.module, to_cpu=True)
            self._empty_cache()

    def prepare(self, module: torch.nn.Module) -> list[str]:
        """Make room for ``module`` on the device and move it there; returns the evicted component ids."""
        with self._lock:
            placed = self._placed.get(id(module))
            if placed is None:  # a stale hook: the model was detached meanwhile
                return []
            evicted: list[str] = []
            if not placed.on_device:
                evicted = self._make_room(placed)
                module.to(self.device)
                placed.on_device = True
                logger.info(
                    "moved %s to %s%s", placed.ids[0], self.device,
                    f", offloading {', '.join(evicted)} to cpu" if evicted else "",
                )
            placed.last_used = next(self._clock)
            self.last_evicted = evicted
            return evicted

    def _make_room(self, incoming: _Placed) -> list[str]:
        on_device = {p.ids[0]: p for p in self._placed.values() if p.on_device and p is not incoming}
        if not on_device:
            return []
        candidates = [Candidate(key, module_size_bytes(p.module), p.last_used) for key, p in on_device.items()]
        chosen = choose_offload(
            module_size_bytes(incoming.module), self.memory_probe(self.device), self.reserve_bytes, candidates
        )
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

