"""Errors of the node engine: a workflow that cannot run, a node that failed, a run that was stopped.

Every problem names the node id and, where there is one, the input, so a node UI can show it on the node."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .base import DiffblocksError, UsageError, _did_you_mean


def problem(node: str | None, input: str | None, message: str) -> dict[str, Any]:
    """One workflow problem as the wire carries it: ``{"node", "input", "message"}``."""
    return {"node": node, "input": input, "message": message}


def _line(p: dict[str, Any]) -> str:
    where = f"node '{p['node']}'" if p.get("node") else "workflow"
    if p.get("input"):
        where += f", input '{p['input']}'"
    return f"{where}: {p['message']}"


class WorkflowError(UsageError):
    """A workflow that cannot run; ``errors`` lists every problem as ``{"node", "input", "message"}``."""

    def __init__(self, errors: Sequence[dict[str, Any]]):
        self.errors = list(errors)
        count = f"{len(self.errors)} problem{'s' if len(self.errors) != 1 else ''}"
        super().__init__(f"{count} in the workflow:\n" + "\n".join(f"  - {_line(p)}" for p in self.errors))

    @classmethod
    def one(cls, node: str | None, input: str | None, message: str) -> "WorkflowError":
        return cls([problem(node, input, message)])

    @classmethod
    def unknown_type(cls, node: str, type_name: str, known: Iterable[str]) -> "WorkflowError":
        return cls.one(node, None, f"unknown node type '{type_name}'{_did_you_mean(type_name, known)}")


class NodeRunError(DiffblocksError, RuntimeError):
    """A node failed while the workflow ran; ``node``, ``input`` and ``message`` say where and why."""

    def __init__(self, node: str, message: str, input: str | None = None):
        self.node, self.input, self.message = node, input, message
        super().__init__(_line(problem(node, input, message)))

    def error_json(self) -> dict[str, Any]:
        return problem(self.node, self.input, self.message)

    @classmethod
    def failed(cls, node: str, node_type: str, cause: BaseException) -> "NodeRunError":
        return cls(node, f"{node_type} failed: {cause}", getattr(cause, "input_name", None))


class Interrupted(DiffblocksError):
    """A workflow run was stopped by its stop event; ``node`` is the node that was running."""

    def __init__(self, node: str | None):
        self.node = node
        super().__init__(f"the run was interrupted{f' in node {node!r}' if node else ''}")


class ArtifactError(UsageError):
    """An artifact id that is malformed or unknown, or bytes that are not an acceptable image."""

    @classmethod
    def bad_id(cls, value: object) -> "ArtifactError":
        return cls(f"artifact id must be 64 lowercase hex characters (a sha256), got {str(value)[:80]!r}")

    @classmethod
    def missing(cls, sha: str) -> "ArtifactError":
        return cls(f"no artifact {sha}; upload it first (POST /api/uploads)")

    @classmethod
    def not_an_image(cls, why: str) -> "ArtifactError":
        return cls(f"not an image this server accepts: {why}")

    @classmethod
    def too_many_pixels(cls, width: int, height: int, limit: int) -> "ArtifactError":
        return cls(f"image of {width}x{height} pixels is over the limit of {limit} pixels")
