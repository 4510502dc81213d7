"""What travels between a front and its workers through Redis: events and images.

Every event (the workers' and the front's own) is appended to one Redis stream, so all of them have one order,
Redis's. The front's ``RedisEventBus`` reads the stream in a thread and hands each event to ``EventBus``, which
numbers it with ``seq``, keeps it for replay and fans it out to WebSocket clients as before. A stream rather than
pub/sub: a front that loses its connection for a moment reads on from the last entry it saw, losing nothing.

Images are kept in Redis too (small PNGs, by sha256), so workers on other hosts need no shared folder: each
process keeps a local ``ArtifactStore`` folder as a cache and fetches what it lacks, checking the bytes' hash."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import redis

from ..nodes.artifacts import ArtifactStore, write_new
from .bus import EventBus

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
                    EventBus.publish(self, json.loads(fields[b"e"]))

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
    from Redis when its path is asked for, and only kept when its bytes hash to its id."""

    def __init__(self, url: str, root: str | Path | None = None, max_pixels: int = 4096 * 4096,
                 prefix: str = "diffblocks"):
        super().__init__(root, max_pixels)
        self.redis, self.prefix = redis.Redis.from_url(url), prefix

    def path(self, sha: str) -> Path:
        target = super().path(sha)
        if not target.is_file():
            self._fetch(sha, target)
        return target

    def put_bytes(self, data: bytes, media_type: str = "image/png") -> str:
        sha = super().put_bytes(data, media_type)
        self.redis.hset(f"{self.prefix}:artifact:{sha}", mapping={"data": data, "type": media_type})
        return sha

    def _fetch(self, sha: str, target: Path) -> None:
        data, media_type = self.redis.hmget(f"{self.prefix}:artifact:{sha}", ["data", "type"])
        if data is None or hashlib.sha256(data).hexdigest() != sha:
            return
        if media_type and media_type != b"image/png":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.with_suffix(".type").write_bytes(media_type)
        write_new(target, data)
