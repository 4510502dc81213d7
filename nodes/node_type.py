"""What every node type has: named inputs (a JSON schema, whether required, a socket) and outputs, a version
for cache keys, a check for constant values, and ``run``.

Node types are made from declarations (a block's params, a guider's or scheduler's ``__init__``), never
written by hand per block; see :mod:`.block_nodes`, :mod:`.config_nodes` and :mod:`.loader_nodes`.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class NodeInput:
    """One input of a node type: ``schema`` (JSON schema of a constant), ``required``, ``socket`` (None: a widget)."""

    schema: dict[str, Any]
    required: bool = False
    socket: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "required": self.required, "socket": self.socket}


@dataclass(frozen=True)
class NodeOutput:
    socket: str

    def to_json(self) -> dict[str, Any]:
        return {"socket": self.socket}


@dataclass
class RunContext:
    """What a node sees while it runs: where it is, the engine's shared resources, its stop signal and its
    event sink (progress and previews)."""

    node: str
    job: str | None
    stop: threading.Event
    emit: Callable[[dict[str, Any]], None]
    components_manager: Any = None
    device: str = "cpu"
    artifacts: Any = None
    allow_remote_code: bool = False
    preview_every: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def event(self, type_: str, **data: Any) -> None:
        self.emit({"type": type_, "job": self.job, "node": self.node, **data})


def source_version(obj: Any) -> str:
    """A short hash of the source of ``obj``'s class and its bases (and, for a composite block, of every
    sub-block's class): a changed block re-runs instead of returning outputs computed by its old code."""
    classes = [obj if isinstance(obj, type) else type(obj)]
    walk = getattr(obj, "walk", None)
    if callable(walk) and not isinstance(obj, type):
        classes += [type(sub) for _, sub in walk()]
    digest = hashlib.sha256()
    for klass in dict.fromkeys(k for cls in classes for k in cls.__mro__):
        if klass.__module__ in ("builtins", "abc"):
            continue
        try:
            digest.update(inspect.getsource(klass).encode())
        except (OSError, TypeError):
            digest.update(f"{klass.__module__}.{klass.__qualname__}".encode())
    return digest.hexdigest()[:16]


class NodeType:
    """Base of node types. Subclasses fill ``inputs``/``outputs`` and implement :meth:`run`."""

    name: str
    category: str = ""
    description: str = ""
    inputs: dict[str, NodeInput]
    outputs: dict[str, NodeOutput]
    # outputs not listed in ``outputs`` are accepted by links (a loader's components depend on the repo)
    open_outputs: bool = False

    def version(self) -> str:
        cached = self.__dict__.get("_source_version")
        if cached is None:
            cached = self.__dict__["_source_version"] = source_version(getattr(self, "cls", None) or getattr(self, "block", self))
        return cached

    def check_value(self, name: str, value: Any) -> str | None:
        """The problem with constant ``value`` for input ``name``, or None when it is fine."""
        return None

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"inputs": {n: i.to_json() for n, i in self.inputs.items()},
                "outputs": {n: o.to_json() for n, o in self.outputs.items()},
                "category": self.category, "description": self.description}
