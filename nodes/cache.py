"""The output cache: node outputs by key, within a byte budget.

Components are not held here (they live in the ComponentsManager); an entry that holds components counts none
of their bytes. When the budget is passed, the entries worth least go first: worth is the seconds it took to
compute an entry per megabyte it holds, halved for every ``half_life`` seconds since it was last used (a pure
function, :func:`eviction_order`, so what goes first can be tested over a table).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .values import size_of

HALF_LIFE = 300.0


@dataclass
class Entry:
    outputs: dict[str, Any]
    size: int
    seconds: float
    last_used: float = field(default_factory=time.monotonic)


def worth(entry: Entry, now: float, half_life: float = HALF_LIFE) -> float:
    """Seconds saved per MB kept, decayed by age since last use."""
    megabytes = max(entry.size, 1) / 2**20
    return entry.seconds / megabytes * 0.5 ** ((now - entry.last_used) / half_life)


def eviction_order(entries: dict[str, Entry], now: float) -> list[str]:
    """Keys from first to last to evict."""
    return sorted(entries, key=lambda key: worth(entries[key], now))


def _weighable(value: Any) -> Any:
    """The part of an output that counts against the budget (models and bundles count nothing)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return value
    if isinstance(value, torch.nn.Module) or type(value).__name__ == "ComponentsBundle":
        return None
    return value


class OutputCache:
    """Thread-safe ``{key: outputs}`` with a byte budget; ``clock`` is injectable for tests."""

    def __init__(self, budget: int, clock: Callable[[], float] = time.monotonic):
        self.budget = budget
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            entry.last_used = self._clock()
            return entry.outputs

    def put(self, key: str, outputs: dict[str, Any], seconds: float) -> bool:
        """Keep ``outputs``; False when they alone are over the budget (then nothing is kept)."""
        size = size_of({k: _weighable(v) for k, v in outputs.items()})
        if size > self.budget:
            return False
        with self._lock:
            self._entries[key] = Entry(outputs, size, seconds, self._clock())
            self._evict(keep=key)
        return True

    def _evict(self, keep: str) -> None:
        total = sum(e.size for e in self._entries.values())
        if total <= self.budget:
            return
        for key in eviction_order(self._entries, self._clock()):
            if key == keep:
                continue
            total -= self._entries.pop(key).size
            if total <= self.budget:
                return

    def free(self) -> None:
        with self._lock:
            self._entries.clear()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def info(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._entries), "bytes": sum(e.size for e in self._entries.values()),
                    "budget": self.budget}
