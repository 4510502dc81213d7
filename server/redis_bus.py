"""What travels between a front and its workers through Redis: events and images.

Every event (the workers' and the front's own) is appended to one Redis stream, so all of them have one order,
Redis's. The front's ``RedisEventBus`` reads the stream in a thread and hands each event to ``EventBus``, which
numbers it with ``seq``, keeps it for replay and fans it out to WebSocket clients as before. A stream rather than
pub/sub: a front that loses its connection for a moment reads on from the last entry it saw, losing nothing.

Images are kept in Redis too (PNGs, by sha256), so workers on other hosts need no shared folder: each process
keeps a local ``ArtifactStore`` folder as a cache and fetches what it lacks, checking the bytes' hash. Redis only
carries them across: a copy there expires a day after it was last stored or fetched, so Redis's memory holds a
day of images, not all of them. The front copies each finished job's images into its own folder at once
(``OutputKeeper``), and puts an image back into Redis when a new job refers to it."""

from __future__ import annotations

import hashlib
import json
import logging
import queue as queue_module
import threading
from pathlib import Path
from typing import Any, Callable

import redis

from ..nodes.artifacts import ArtifactStore, write_new
from ..nodes.values import artifact_refs
from .bus import EventBus
from .settings import ARTIFACT_TTL
from .workers import TERMINAL

logger = logging.getLogger("diffblocks.server")
STREAM_LENGTH = 10_000  # events kept in the stream (approximately): a front that was away longer takes a snapshot


def _stream(prefix: str) -> str:
    return f"{prefix}:events"


class RedisEventPublisher:
    """A worker's bus: ``publish`` appends the event to the stream; the front numbers it."""

    clients = 1  # previews are always sent: the front, not the worker, knows who watches

    def __init__(self, url: str, prefix: str = "diffblocks"):
        self.redis, self.stream = redis.Redis.from_url(url), _stream(prefix)

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Send ``event`` to every front; returns it unnumbered."""
        event = {"job": None, "node": None, **event}
        self.redis.xadd(self.stream, {"e": json.dumps(event, separators=(",", ":"))}, maxlen=STREAM_LENGTH,
                        approximate=True)
        return event

    def close(self) -> None:
        self.redis.close()


class RedisEventBus(EventBus):
    """The front's bus: events published here go to the stream; a thread reads the stream from the moment the
    bus opens and numbers and fans out each event, whichever process sent it."""

    def __init__(self, url: str, snapshot: Callable[[], list[dict[str, Any]]], replay: int = 4096,
                 client_buffer: int = 512, prefix: str = "diffblocks"):
        super().__init__(snapshot, replay, client_buffer)
        self.on_ended: Callable[[str], None] | None = None  # told each job whose last event passed
        self._publisher = RedisEventPublisher(url, prefix)
        self._reader = redis.Redis.from_url(url)
        last = self._reader.xrevrange(self._publisher.stream, count=1)
        self._last = last[0][0] if last else b"0-0"  # read from now on: older events are in no client's window
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="diffblocks-events", daemon=True)
        self._thread.start()

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Send ``event`` through Redis; it gets its ``seq`` when the stream hands it back."""
        return self._publisher.publish(event)

    def _listen(self) -> None:
        while not self._stopped.is_set():
            try:
                answer = self._reader.xread({self._publisher.stream: self._last}, count=256, block=250)
            except redis.RedisError as err:  # Redis away: try again, from the last event seen
                logger.warning("reading events from Redis failed: %s", err)
                self._stopped.wait(1.0)
                continue
            for _, entries in answer or ():
                for entry_id, fields in entries:
                    self._last = entry_id
                    event = EventBus.publish(self, json.loads(fields[b"e"]))
                    if event["type"] in TERMINAL and self.on_ended is not None:
                        self.on_ended(event["job"])

    def close(self) -> None:
        """Stop reading the stream and close every subscription."""
        self._stopped.set()
        self._thread.join(5)
        super().close()
        self._publisher.close()
        self._reader.close()


class RedisArtifactStore(ArtifactStore):
    """An ``ArtifactStore`` whose files are also kept in Redis (``<prefix>:artifact:<sha>``), for every process.

    Ids are checked as the local store checks them before anything is read; a file missing here is fetched
    from Redis when its path is asked for, and only kept when its bytes hash to its id. Redis is the way across,
    not the archive: a copy there expires ``ttl_seconds`` after it was last stored or fetched. The front keeps
    every finished job's images in its own folder (``OutputKeeper``) and puts an image back (``share``) when a
    new job refers to it."""

    def __init__(self, url: str, root: str | Path | None = None, max_pixels: int = 4096 * 4096,
                 prefix: str = "diffblocks", ttl_seconds: float = ARTIFACT_TTL):
        super().__init__(root, max_pixels)
        self.redis, self.prefix = redis.Redis.from_url(url), prefix
        self.ttl_ms = max(1, int(ttl_seconds * 1000))

    def _key(self, sha: str) -> str:
        return f"{self.prefix}:artifact:{sha}"

    def path(self, sha: str) -> Path:
        target = super().path(sha)
        if not target.is_file():
            self._fetch(sha, target)
        return target

    def put_bytes(self, data: bytes, media_type: str = "image/png") -> str:
        sha = super().put_bytes(data, media_type)
        self._put(sha, data, media_type)
        return sha

    def _put(self, sha: str, data: bytes, media_type: str) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self._key(sha), mapping={"data": data, "type": media_type})
        pipe.pexpire(self._key(sha), self.ttl_ms)
        pipe.execute()

    def share(self, shas) -> None:
        """Keep ``shas`` in Redis for another ``ttl_seconds``, putting back from this folder those that expired."""
        for sha in shas:
            if not self.redis.pexpire(self._key(sha), self.ttl_ms):
                local = ArtifactStore.path(self, sha)
                if local.is_file():
                    self._put(sha, local.read_bytes(), self.media_type(sha))

    def _fetch(self, sha: str, target: Path) -> None:
        data, media_type = self.redis.hmget(self._key(sha), ["data", "type"])
        if data is None or hashlib.sha256(data).hexdigest() != sha:
            return
        self.redis.pexpire(self._key(sha), self.ttl_ms)
        if media_type and media_type != b"image/png":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.with_suffix(".type").write_bytes(media_type)
        write_new(target, data)


class OutputKeeper:
    """The front's side of a Redis queue's retention, in one thread: once a job has ended, its images are copied
    to the front's folder (Redis keeps them for ``ARTIFACT_TTL`` only) and the history is cut to the newest
    ``keep_jobs`` jobs (``RedisJobQueue.trim``)."""

    def __init__(self, queue, artifacts: RedisArtifactStore, keep_jobs: int):
        self.queue, self.artifacts, self.keep_jobs = queue, artifacts, keep_jobs
        self._ended: "queue_module.Queue[str | None]" = queue_module.Queue()
        self._thread = threading.Thread(target=self._run, name="diffblocks-keeper", daemon=True)
        self._thread.start()

    def ended(self, job_id: str) -> None:
        """Keep ``job_id``'s images and trim the history (in the keeper's thread; returns at once)."""
        self._ended.put(job_id)

    def _run(self) -> None:
        while (job_id := self._ended.get()) is not None:
            try:
                job = self.queue.get(job_id)
                for sha in sorted(artifact_refs(job.result.get("outputs", {}) if job else {})):
                    self.artifacts.path(sha)  # fetched into the front's folder unless it is there
                self.queue.trim(self.keep_jobs)
            except Exception as err:  # Redis or the disk away: logged, and the thread lives on for the next job
                logger.warning("keeping the images of job %s failed: %s: %s", job_id, type(err).__name__, err)
            finally:
                self._ended.task_done()

    def wait(self) -> None:
        """Until every job told so far has been dealt with (for tests)."""
        self._ended.join()

    def close(self) -> None:
        self._ended.put(None)
        self._thread.join(10)
