"""The job queue and history, persisted in SQLite: a restart loses no queued job and keeps finished ones.

Jobs run by priority (higher first), then in the order they were submitted. A worker claims the next job in one
``BEGIN IMMEDIATE`` transaction, so two workers (threads or processes sharing the file) never claim the same job.
A job found ``running`` when the queue opens was cut off by a stop, and is queued again."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    workflow TEXT NOT NULL,
    device TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (status, priority DESC, n);
"""
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Job:
    """One job as stored: its workflow, where it stands, and (once finished) its result or error."""

    id: str
    status: str
    priority: int
    workflow: dict[str, Any]
    created: float
    device: str | None = None
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        return cls(id=row["id"], status=row["status"], priority=row["priority"], workflow=json.loads(row["workflow"]),
                   created=row["created"], device=row["device"], started=row["started"], finished=row["finished"],
                   result=json.loads(row["result"]) if row["result"] else {},
                   error=json.loads(row["error"]) if row["error"] else None)


class JobQueue:
    """Jobs in a SQLite file (``":memory:"`` for none); every method is thread-safe.

    ``claim`` blocks until a job is queued here or ``poke`` says one was queued by another process, or the queue
    is closed. ``on_submit`` (when set) is called with each job once it is stored."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.on_submit: Callable[[Job], None] | None = None
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._closed = False
        # bumped by every submit and poke; a claim that found the file empty at the current number waits without
        # asking it again (an empty claim is a write transaction, and it ran after every job, against the next one)
        self._submissions, self._empty_at = 1, 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a crash of the process, not of the OS
            self._db.executescript(_SCHEMA)
            self._db.execute("UPDATE jobs SET status = 'queued', started = NULL, device = NULL WHERE status = 'running'")

    def submit(self, workflow: dict[str, Any], priority: int = 0, job_id: str | None = None) -> Job:
        """Queue ``workflow`` (as ``job_id``, or a new id); returns the new job (status ``queued``)."""
        job = Job(id=job_id or new_job_id(), status="queued", priority=int(priority), workflow=workflow,
                  created=time.time())
        with self._ready:
            self._db.execute("INSERT INTO jobs (id, status, priority, workflow, created) VALUES (?, ?, ?, ?, ?)",
                             (job.id, job.status, job.priority, json.dumps(workflow), job.created))
            self._submissions += 1
            self._ready.notify()
        if self.on_submit is not None:
            self.on_submit(job)
        return job

    def poke(self) -> None:
        """Wake the waiting ``claim`` calls to look again: another process sharing the file queued a job."""
        with self._ready:
            self._submissions += 1
            self._ready.notify_all()

    def claim(self, device: str, timeout: float | None = None) -> Job | None:
        """Take the next queued job for ``device`` (marking it running); None when closed or after ``timeout``.

        The file is read when something was submitted or poked since it was last found empty; a claim with a
        ``timeout`` also reads it at its start and when the time runs out (a job stored by another connection that
        did not poke)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        look = timeout is not None
        with self._ready:
            while not self._closed:
                if look or self._empty_at != self._submissions:
                    job = self._claim_locked(device)
                    if job is not None:
                        return job
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                look = not self._ready.wait(remaining)
        return None

    def _claim_locked(self, device: str) -> Job | None:
        """Claim the next queued job, noting when none is left after it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            rows = self._db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY priority DESC, n LIMIT 2").fetchall()
            row = rows[0] if rows else None
            if len(rows) < 2:
                self._empty_at = self._submissions
            if row is not None:
                started = time.time()
                self._db.execute("UPDATE jobs SET status = 'running', device = ?, started = ? WHERE id = ?",
                                 (device, started, row["id"]))
        finally:
            self._db.execute("COMMIT")
        if row is None:
            return None
        job = Job.from_row(row)
        job.status, job.device, job.started = "running", device, started
        return job

    def finish(self, job_id: str, status: str, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> None:
        """Record how a running job ended: ``done`` with ``result``, ``failed`` with ``error``, or ``cancelled``."""
        if status not in FINISHED:
            raise ValueError(f"a job finishes as one of {FINISHED}, not {status!r}")
        with self._lock:
            self._db.execute("UPDATE jobs SET status = ?, finished = ?, result = ?, error = ? WHERE id = ?",
                             (status, time.time(), json.dumps(result or {}), json.dumps(error) if error else None, job_id))

    def cancel_queued(self, job_id: str) -> bool:
        """Cancel ``job_id`` if it is still queued; False if it is running, finished or unknown."""
        with self._lock:
            cursor = self._db.execute("UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND status = 'queued'",
                                      (time.time(), job_id))
            return cursor.rowcount == 1

    def get(self, job_id: str) -> Job | None:
        """The job ``job_id``, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else Job.from_row(row)

    def list(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """Up to ``limit`` jobs, newest first, optionally only those with ``status``."""
        query, args = "SELECT * FROM jobs", []
        if status is not None:
            query, args = query + " WHERE status = ?", [status]
        with self._lock:
            rows = self._db.execute(query + " ORDER BY n DESC LIMIT ?", (*args, int(limit))).fetchall()
        return [Job.from_row(row) for row in rows]

    def active(self) -> list[Job]:
        """Running and queued jobs, in the order they will run."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE status IN ('running', 'queued') "
                                    "ORDER BY status = 'queued', priority DESC, n").fetchall()
        return [Job.from_row(row) for row in rows]

    def stop_claims(self) -> None:
        """Wake every waiting ``claim``; from now on they return None."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def close(self) -> None:
        """Stop claims and close the file."""
        self.stop_claims()
        with self._lock:
            self._db.close()
