"""Errors of the node server (``diffblocks serve``): requests it refuses and jobs it cannot act on.

Each carries the HTTP ``status`` the server answers with; the message is the body's ``detail``."""

from __future__ import annotations

from .base import UsageError


class ServerError(UsageError):
    """A request the server refuses; ``status`` is the HTTP status code of the answer."""

    status = 400

    def _with_status(self, status: int) -> "ServerError":
        self.status = status
        return self


class RequestError(ServerError):
    """A request that is malformed, too large or not allowed."""

    @classmethod
    def too_large(cls, what: str, size: int | None, limit: int) -> "RequestError":
        got = f" ({size} bytes)" if size is not None else ""
        return cls(f"{what} is too large{got}: the limit is {limit} bytes")._with_status(413)

    @classmethod
    def malformed_json(cls, problem: str) -> "RequestError":
        return cls(f"the request body is not valid JSON: {problem}")._with_status(400)

    @classmethod
    def bad_fields(cls, problems: list[str]) -> "RequestError":
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in all)" if len(problems) > 5 else "")
        return cls(f"the request does not fit the endpoint: {shown}")._with_status(422)

    @classmethod
    def remote_code(cls, node: str, input_name: str) -> "RequestError":
        return cls(
            f"node '{node}' asks for remote code ('{input_name}'), which this server does not run; "
            f"start it with --allow-remote-code to allow it"
        )._with_status(403)

    @classmethod
    def origin(cls, origin: str) -> "RequestError":
        return cls(f"origin {origin} is not allowed; start the server with --cors-origin {origin}")._with_status(403)

    @classmethod
    def unknown_model_kind(cls, kind: str, known) -> "RequestError":
        shown = kind if len(kind) <= 64 else kind[:61] + "..."
        return cls(f"no kind of model '{shown}'; the kinds are {', '.join(known)}")._with_status(404)

    @classmethod
    def unknown_model(cls, kind: str, name: str, names) -> "RequestError":
        from .base import _did_you_mean

        shown = name if len(name) <= 200 else name[:197] + "..."
        return cls(f"no {kind} model '{shown}' in the model folders{_did_you_mean(name, names)}; "
                   f"GET /api/models/{kind} lists them")._with_status(404)


class JobError(ServerError):
    """A job id that is unknown, or a job in a state that cannot do what was asked."""

    @classmethod
    def unknown(cls, job_id: str) -> "JobError":
        shown = job_id if len(job_id) <= 64 else job_id[:61] + "..."
        return cls(f"no job '{shown}' (GET /api/jobs lists them)")._with_status(404)

    @classmethod
    def already(cls, job_id: str, status: str) -> "JobError":
        return cls(f"job '{job_id}' is already {status}; only queued or running jobs can be cancelled")._with_status(409)


class ServerSetupError(ServerError):
    """The server cannot start as asked."""

    @classmethod
    def missing_extra(cls, cause: BaseException) -> "ServerSetupError":
        return cls(f"diffblocks serve needs the server extra ({cause}); install it with: "
                   f"pip install 'diffblocks[server]'")

    @classmethod
    def missing_queue_extra(cls, cause: BaseException) -> "ServerSetupError":
        return cls(f"a Redis queue needs the queue extra ({cause}); install it with: "
                   f"pip install 'diffblocks[queue]'")

    @classmethod
    def bad_device(cls, name: str, problem: str) -> "ServerSetupError":
        return cls(f"--device {name}: {problem}")

    @classmethod
    def queue_unreachable(cls, url: str, cause: BaseException) -> "ServerSetupError":
        return cls(f"--queue {url}: no Redis server answers there ({type(cause).__name__}: {cause}); "
                   f"start one (redis-server --port PORT) or fix the address")


class EngineError(ServerError):
    """The engine's own process (``diffblocks serve --engine-process``) stopped, or cannot be given what was asked."""

    @classmethod
    def stopped(cls, why: str) -> "EngineError":
        return cls(f"the engine's process is not running ({why}); GET /api/system says whether it starts "
                   f"again")._with_status(503)

    @classmethod
    def died(cls, exit_reason: str) -> "EngineError":
        return cls(f"the engine's process stopped ({exit_reason})")

    @classmethod
    def not_in_child(cls) -> "EngineError":
        return cls("engine_process=True runs the node engine in a child process, which imports it itself: "
                   "create_app(engine=...) cannot send another one there")
