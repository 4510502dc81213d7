"""The job queue in Redis, for a front and ``diffblocks worker`` processes on many hosts.

Queued jobs wait in a sorted set scored by priority, then submission order (lists and streams only keep
arrival order, so priority needs a sorted set). Each step that moves a job is one Lua script, so it is atomic:
``claim`` pops the best job, marks it running with a new claim token and gives it a lease (a deadline in a
second sorted set, in Redis's own clock, so hosts' clocks need not agree). A worker renews the leases of its
jobs every fraction of a second; a claim first puts back every job whose lease ran out (its worker died), so
it runs elsewhere. ``finish`` only records a result that carries the job's current token while it is running:
a late result from a worker presumed dead changes nothing, and a job is done once.

Keys (under ``prefix``): ``job:<id>`` (a hash), ``queued``, ``leases`` and ``history`` (sorted sets; ``trim``
keeps the newest finished jobs), ``n`` (the submission counter), ``wake`` (a list idle workers block on),
``cancel:<id>`` (a running job to interrupt).
The scripts build job keys from the prefix, so the queue needs one Redis server, not a cluster."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis

from .memory import engine_info, free_engine
from .queue import ACTIVE, FINISHED, Job, new_job_id

logger = logging.getLogger("diffblocks.server")

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
_REQUEUE = """
local function requeue(p, id)
  local key = p .. ':job:' .. id
  redis.call('ZREM', p .. ':leases', id)
  redis.call('HSET', key, 'status', 'queued', 'device', '', 'started', '')
  redis.call('ZADD', p .. ':queued', redis.call('HGET', key, 'score'), id)
  redis.call('RPUSH', p .. ':wake', id)
end
"""
# ARGV: prefix, id, priority, workflow, created
_SUBMIT = """
local p = ARGV[1]
local n = redis.call('INCR', p .. ':n')
local score = -tonumber(ARGV[3]) * 1099511627776 + n  -- priority first (higher earlier), then order
redis.call('HSET', p .. ':job:' .. ARGV[2], 'id', ARGV[2], 'n', n, 'status', 'queued', 'priority', ARGV[3],
           'workflow', ARGV[4], 'created', ARGV[5], 'score', score, 'token', 0)
redis.call('ZADD', p .. ':queued', score, ARGV[2])
redis.call('ZADD', p .. ':history', n, ARGV[2])
redis.call('RPUSH', p .. ':wake', ARGV[2])
redis.call('LTRIM', p .. ':wake', -1000, -1)
return n
"""
# ARGV: prefix, device, started, lease_ms -> {id, token} or nil
_CLAIM = _NOW + _REQUEUE + """
local p = ARGV[1]
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':leases', '-inf', now)) do requeue(p, id) end
local popped = redis.call('ZPOPMIN', p .. ':queued')
if #popped == 0 then return false end
local id = popped[1]
local key = p .. ':job:' .. id
local token = redis.call('HINCRBY', key, 'token', 1)
redis.call('HSET', key, 'status', 'running', 'device', ARGV[2], 'started', ARGV[3])
redis.call('ZADD', p .. ':leases', now + tonumber(ARGV[4]), id)
return {id, token}
"""
# ARGV: prefix, id, token, lease_ms -> 1 while the lease is this holder's, else 0
_RENEW = _NOW + """
local key = ARGV[1] .. ':job:' .. ARGV[2]
if redis.call('HGET', key, 'status') ~= 'running' or redis.call('HGET', key, 'token') ~= ARGV[3] then return 0 end
redis.call('ZADD', ARGV[1] .. ':leases', 'XX', now + tonumber(ARGV[4]), ARGV[2])
return 1
"""
# ARGV: prefix, id, token, status, finished, result, error -> 1 if recorded, 0 for a stale holder
_FINISH = """
local p, id = ARGV[1], ARGV[2]
local key = p .. ':job:' .. id
if redis.call('HGET', key, 'status') ~= 'running' or redis.call('HGET', key, 'token') ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'status', ARGV[4], 'finished', ARGV[5], 'result', ARGV[6], 'error', ARGV[7])
redis.call('ZREM', p .. ':leases', id)
redis.call('DEL', p .. ':cancel:' .. id)
return 1
"""
# ARGV: prefix, id, token: a stopping worker hands its job back at once instead of waiting out the lease
_RELEASE = _REQUEUE + """
local key = ARGV[1] .. ':job:' .. ARGV[2]
if redis.call('HGET', key, 'status') ~= 'running' or redis.call('HGET', key, 'token') ~= ARGV[3] then return 0 end
requeue(ARGV[1], ARGV[2])
return 1
"""
# ARGV: prefix, keep -> how many finished jobs were deleted: the oldest beyond the newest ``keep`` (active jobs stay)
_TRIM = """
local p, excess = ARGV[1], redis.call('ZCARD', ARGV[1] .. ':history') - tonumber(ARGV[2])
if excess <= 0 then return 0 end
local removed = 0
for _, id in ipairs(redis.call('ZRANGE', p .. ':history', 0, excess - 1)) do
  local status = redis.call('HGET', p .. ':job:' .. id, 'status')
  if status ~= 'queued' and status ~= 'running' then
    redis.call('DEL', p .. ':job:' .. id)
    redis.call('ZREM', p .. ':history', id)
    removed = removed + 1
  end
end
return removed
"""
# ARGV: prefix, id, finished
_CANCEL_QUEUED = """
if redis.call('ZREM', ARGV[1] .. ':queued', ARGV[2]) == 0 then return 0 end
redis.call('HSET', ARGV[1] .. ':job:' .. ARGV[2], 'status', 'cancelled', 'finished', ARGV[3])
return 1
"""


def worker_name() -> str:
    """``host:pid``, recorded with the device of each job a worker process claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RedisJobQueue:
    """``queue.JobQueue``'s methods over a Redis server, shared by a front and any number of workers.

    Args:
        url: ``redis://HOST:PORT/DB``.
        lease_seconds: how long a claimed job stays with a worker that stopped renewing its lease.
        name: recorded with the device of each job this process claims (``cpu@host:pid``).
        prefix: the keys' prefix, so several queues can share one Redis database.
    """

    def __init__(self, url: str, lease_seconds: float = 30.0, name: str | None = None, prefix: str = "diffblocks"):
        self.url, self.prefix, self.name = url, prefix, name or worker_name()
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.redis = redis.Redis.from_url(url)
        self.on_cancel = None  # called with a held job's id when a client asks to interrupt it
        self._scripts = {name: self.redis.register_script(code) for name, code in (
            ("submit", _SUBMIT), ("claim", _CLAIM), ("renew", _RENEW), ("finish", _FINISH), ("release", _RELEASE),
            ("cancel_queued", _CANCEL_QUEUED), ("trim", _TRIM))}
        self._held: dict[str, str] = {}  # job id -> claim token, for the jobs this process runs
        self._cancelling: set[str] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._own_wake = f"{prefix}:wake:{uuid.uuid4().hex}"  # stop_claims pushes here to end a blocked wait
        self._beat: threading.Thread | None = None

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _run(self, script: str, *args: Any):
        return self._scripts[script](args=[self.prefix, *args])

    def submit(self, workflow: dict[str, Any], priority: int = 0, job_id: str | None = None) -> Job:
        """Queue ``workflow`` (as ``job_id``, or a new id); returns the new job (status ``queued``)."""
        job = Job(id=job_id or new_job_id(), status="queued", priority=int(priority), workflow=workflow,
                  created=time.time())
        self._run("submit", job.id, job.priority, json.dumps(workflow), repr(job.created))
        return job

    def claim(self, device: str, timeout: float | None = None) -> Job | None:
        """Take the best queued job (marking it running on ``device@name`` under a lease this process renews);
        None when the queue is closed or after ``timeout``. Jobs of expired leases are queued again first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = min(1.0, self.lease_ms / 2000)  # expired leases are noticed by claims, so idle workers look often
        while not self._closed.is_set():
            claimed = self._run("claim", f"{device}@{self.name}", repr(time.time()), self.lease_ms)
            if claimed:
                job_id, token = claimed[0].decode(), str(claimed[1])
                with self._lock:
                    self._held[job_id] = token
                self._start_beat()
                return self.get(job_id)
            remaining = poll if deadline is None else min(poll, deadline - time.monotonic())
            if remaining <= 0:
                return None
            self.redis.blpop([self._key("wake"), self._own_wake], timeout=max(remaining, 0.01))
        return None

    def finish(self, job_id: str, status: str, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> bool:
        """Record how a job this process claimed ended; False (nothing recorded) if its lease was lost, as the
        job was then queued again and belongs to another claim."""
        if status not in FINISHED:
            raise ValueError(f"a job finishes as one of {FINISHED}, not {status!r}")
        with self._lock:
            token = self._held.pop(job_id, "")
            self._cancelling.discard(job_id)
        recorded = self._run("finish", job_id, token, status, repr(time.time()), json.dumps(result or {}),
                             json.dumps(error) if error else "")
        if not recorded:
            logger.warning("job %s was taken back from this worker (its lease ran out); its result is dropped", job_id)
        return bool(recorded)

    def cancel_queued(self, job_id: str) -> bool:
        """Cancel ``job_id`` if it is still queued; False if it is running, finished or unknown."""
        return bool(self._run("cancel_queued", job_id, repr(time.time())))

    def trim(self, keep: int) -> int:
        """Delete the oldest finished jobs beyond the newest ``keep`` in the history (queued and running jobs stay,
        however old); returns how many went."""
        return int(self._run("trim", int(keep)))

    def request_cancel(self, job_id: str) -> None:
        """Ask whichever worker runs ``job_id`` to interrupt it (it looks at its next lease renewal)."""
        self.redis.set(self._key("cancel", job_id), 1, px=self.lease_ms * 4)

    def get(self, job_id: str) -> Job | None:
        """The job ``job_id``, or None."""
        return _job(self.redis.hgetall(self._key("job", job_id)))

    def list(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """Up to ``limit`` jobs, newest first, optionally only those with ``status``."""
        jobs, start, page = [], 0, max(int(limit), 100)
        while len(jobs) < limit:
            ids = _ids(self.redis.zrevrange(self._key("history"), start, start + page - 1))
            jobs += [job for job in self._get_many(ids) if status is None or job.status == status]
            if len(ids) < page:
                break
            start += page
        return jobs[:int(limit)]

    def active(self) -> list[Job]:
        """Running and queued jobs, in the order they will run."""
        running = self._get_many(_ids(self.redis.zrange(self._key("leases"), 0, -1)))
        queued = self._get_many(_ids(self.redis.zrange(self._key("queued"), 0, -1)))
        running.sort(key=lambda job: (-job.priority, job.created))
        return [job for job in running + queued if job.status in ACTIVE]

    def _get_many(self, ids: list[str]) -> list[Job]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self._key("job", job_id))
        return [job for job in map(_job, pipe.execute()) if job is not None]

    def _start_beat(self) -> None:
        with self._lock:
            if self._beat is None:
                self._beat = threading.Thread(target=self._renew_leases, name="diffblocks-lease", daemon=True)
                self._beat.start()

    def _renew_leases(self) -> None:
        """Renew the leases of the held jobs and pass on requests to cancel them, a few times a lease."""
        while not self._closed.wait(min(0.5, self.lease_ms / 3000)):
            with self._lock:
                held = dict(self._held)
            for job_id, token in held.items():
                try:
                    if not self._run("renew", job_id, token, self.lease_ms):
                        logger.warning("job %s: the lease was lost; another worker may run it", job_id)
                    elif self.redis.exists(self._key("cancel", job_id)) and self._first_cancel(job_id):
                        if self.on_cancel is not None:
                            self.on_cancel(job_id)
                except redis.RedisError as err:  # Redis away for a moment: the lease outlives a short outage
                    logger.warning("renewing the lease of job %s failed: %s", job_id, err)

    def _first_cancel(self, job_id: str) -> bool:
        with self._lock:
            first = job_id in self._held and job_id not in self._cancelling
            self._cancelling.add(job_id)
        return first

    def stop_claims(self) -> None:
        """Wake a waiting ``claim``; from now on they return None."""
        self._closed.set()
        self.redis.rpush(self._own_wake, 1)
        self.redis.expire(self._own_wake, 60)

    def close(self) -> None:
        """Stop claims, hand the jobs still held back to the queue, and close the connections."""
        if not self._closed.is_set():
            self.stop_claims()
        with self._lock:
            held, self._held = dict(self._held), {}
        for job_id, token in held.items():
            self._run("release", job_id, token)
        self.redis.close()


class RemotePool:
    """The front's stand-in for ``workers.WorkerPool`` when workers run in other processes: it runs nothing,
    reports the running jobs from the queue, and passes cancellations on through Redis."""

    def __init__(self, queue: RedisJobQueue):
        self.queue, self.manager, self.executors, self.workers = queue, None, {}, []
        self.devices: list[str] = []
        self.error = None
        self.ready = threading.Event()
        self.ready.set()
        self.stopping = False

    info = engine_info  # nothing loaded here: the running jobs (from the queue) and this process's size
    free = free_engine

    def start(self) -> None:
        """Nothing to start: ``diffblocks worker`` processes run the jobs."""

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True

    def interrupt(self, job_id: str) -> bool:
        """No job runs in this process: False (``cancel_running`` asks the worker through Redis)."""
        return False

    def cancel_running(self, job_id: str) -> None:
        """Ask the worker running ``job_id`` to interrupt it."""
        self.queue.request_cancel(job_id)

    def running(self) -> dict[str, str | None]:
        """``device@host:pid`` -> the job running there, for the jobs running now."""
        return {job.device: job.id for job in self.queue.active() if job.status == "running"}


def _ids(members: list[bytes]) -> list[str]:
    return [member.decode() for member in members]


def _job(fields: dict[bytes, bytes]) -> Job | None:
    if not fields:
        return None
    row = {key.decode(): value.decode() for key, value in fields.items()}
    number = lambda name: float(row[name]) if row.get(name) else None  # noqa: E731
    return Job(id=row["id"], status=row["status"], priority=int(row["priority"]), workflow=json.loads(row["workflow"]),
               created=float(row["created"]), device=row.get("device") or None, started=number("started"),
               finished=number("finished"), result=json.loads(row["result"]) if row.get("result") else {},
               error=json.loads(row["error"]) if row.get("error") else None)
