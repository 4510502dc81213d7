"""The event bus: numbering, replay with ?since, snapshots, and slow clients that never block publishers."""

import asyncio
import json

import pytest

from diffblocks.server.bus import EventBus, Overflow, Subscription

pytestmark = pytest.mark.anyio


def make_bus(**kw):
    return EventBus(lambda: [{"job": "j1", "status": "running"}], **kw)


async def drain(subscription):
    out = []
    while subscription._items:
        out.append(json.loads(await subscription.get()))
    return out


async def test_events_are_numbered_in_order_with_job_and_node():
    bus = make_bus()
    live = bus.subscribe()
    for kind in ("job.queued", "job.started", "node.started"):
        bus.publish({"type": kind, "job": "j1"})
    events = await drain(live)
    assert [(e["seq"], e["type"], e["node"]) for e in events] == [
        (1, "job.queued", None), (2, "job.started", None), (3, "node.started", None)]


async def test_since_replays_what_was_missed_then_goes_live():
    bus = make_bus(replay=10)
    for i in range(5):
        bus.publish({"type": "node.started", "job": "j", "node": f"n{i}"})
    late = bus.subscribe(since=3)
    bus.publish({"type": "job.finished", "job": "j"})
    assert [e["seq"] for e in await drain(late)] == [4, 5, 6]
    assert await drain(bus.subscribe(since=6)) == []


@pytest.mark.parametrize("since", [1, 99])  # fell out of the window; from another server's numbering
async def test_since_out_of_the_window_gets_a_snapshot(since):
    bus = make_bus(replay=3)
    for _ in range(6):
        bus.publish({"type": "node.progress", "job": "j1"})
    events = await drain(bus.subscribe(since=since))
    assert events == [{"seq": 6, "type": "snapshot", "job": None, "node": None,
                       "jobs": [{"job": "j1", "status": "running"}]}]


async def test_slow_client_loses_previews_first_then_progress_then_is_cut_off():
    bus = make_bus(client_buffer=4)
    slow = bus.subscribe()
    for kind, node in (("job.started", None), ("node.progress", "a"), ("node.preview", "a"), ("node.preview", "b")):
        bus.publish({"type": kind, "job": "j", "node": node})
    bus.publish({"type": "node.finished", "job": "j"})  # full: the oldest preview goes
    bus.publish({"type": "job.finished", "job": "j"})  # the other preview goes
    assert slow.dropped == 2
    bus.publish({"type": "job.queued", "job": "k"})  # then the progress event
    kinds = [json.loads(item[2])["type"] for item in slow._items]
    assert kinds == ["job.started", "node.finished", "job.finished", "job.queued"]
    bus.publish({"type": "job.started", "job": "k"})  # nothing left to drop
    with pytest.raises(Overflow):
        await slow.get()
    fast = bus.subscribe()
    bus.publish({"type": "job.finished", "job": "k"})
    assert [e["type"] for e in await drain(fast)] == ["job.finished"]


async def test_publishing_from_threads_wakes_a_waiting_client():
    bus = make_bus()
    client = bus.subscribe()
    waiting = asyncio.create_task(client.get())
    await asyncio.sleep(0)  # usually lets the task reach its wait; the result is the same if not
    await asyncio.to_thread(bus.publish, {"type": "job.queued", "job": "j"})
    assert json.loads(await asyncio.wait_for(waiting, 5))["type"] == "job.queued"
    bus.close()
    assert await client.get() is None


class CountingLoop:
    """The running loop, counting how often another thread wakes it."""

    def __init__(self, loop):
        self.loop, self.wakes = loop, 0

    def call_soon_threadsafe(self, *args):
        self.wakes += 1
        return self.loop.call_soon_threadsafe(*args)

    def call_later(self, *args):
        return self.loop.call_later(*args)


async def test_progress_comes_batched_and_lifecycle_events_at_once():
    loop = CountingLoop(asyncio.get_running_loop())
    client = Subscription(loop, size=64, batch_seconds=0.5)
    got = []

    async def read(count):
        for _ in range(count):
            got.append((json.loads(await client.get())["step"], asyncio.get_running_loop().time()))

    reader = asyncio.create_task(read(1))
    await asyncio.sleep(0.01)
    client.push(1, "node.progress", json.dumps({"step": 1}))  # the first goes out at once
    await asyncio.wait_for(reader, 5)
    reader = asyncio.create_task(read(10))
    await asyncio.sleep(0.01)
    start = asyncio.get_running_loop().time()
    for step in range(2, 11):  # within the batch: they wait for it, without waking the reader
        await asyncio.to_thread(client.push, step, "node.progress", json.dumps({"step": step}))
    assert loop.wakes == 1 and len(got) == 1
    await asyncio.to_thread(client.push, 11, "job.finished", json.dumps({"step": "end"}))  # at once, with the rest
    await asyncio.wait_for(reader, 5)
    assert [step for step, _ in got] == [1, *range(2, 11), "end"] and loop.wakes == 2
    assert got[-1][1] - start < 0.4  # the job's end cut the batch short


async def test_a_batch_ends_by_itself():
    client = Subscription(asyncio.get_running_loop(), size=64, batch_seconds=0.05)
    client.push(1, "node.progress", "1")
    assert await client.get() == "1"
    reader = asyncio.create_task(client.get())
    await asyncio.sleep(0.01)
    client.push(2, "node.preview", "2")  # inside the batch: no wake, the batch's end delivers it
    assert await asyncio.wait_for(reader, 5) == "2"
    client.close()
    assert await asyncio.wait_for(client.get(), 5) is None


async def test_a_waiting_progress_event_or_preview_is_superseded_by_the_next_for_its_job_and_node():
    bus = make_bus()
    client = bus.subscribe()
    published = [("node.progress", "j", "a", 1), ("node.preview", "j", "a", 1), ("node.progress", "j", "b", 1),
                 ("node.progress", "k", "a", 1), ("node.progress", "j", "a", 2), ("node.started", "j", "c", None),
                 ("node.preview", "j", "a", 2), ("node.progress", "j", "a", 3)]
    for kind, job, node, step in published:
        bus.publish({"type": kind, "job": job, "node": node, "step": step})
    got = [(e["type"], e["job"], e["node"], e["step"]) for e in await drain(client)]
    # the newest of each (type, job, node) in its own place; every other event as it came
    assert got == [("node.progress", "j", "b", 1), ("node.progress", "k", "a", 1), ("node.started", "j", "c", None),
                   ("node.preview", "j", "a", 2), ("node.progress", "j", "a", 3)]
    assert client.superseded == 3 and client.dropped == 0
    bus.publish({"type": "node.progress", "job": "j", "node": "a", "step": 4})  # the last one went: nothing to replace
    assert [e["step"] for e in await drain(client)] == [4]


async def test_lifecycle_events_are_never_superseded():
    bus = make_bus()
    client = bus.subscribe()
    for _ in range(3):
        bus.publish({"type": "node.started", "job": "j", "node": "a"})
    assert len(await drain(client)) == 3 and client.superseded == 0


async def test_a_replayed_backlog_keeps_only_the_latest_progress_of_each_node():
    bus = make_bus(replay=20)
    bus.publish({"type": "job.started", "job": "j"})
    for step in (1, 2, 3):
        bus.publish({"type": "node.progress", "job": "j", "node": "a", "step": step})
    bus.publish({"type": "node.finished", "job": "j", "node": "a"})
    events = await drain(bus.subscribe(since=0))
    assert [(e["type"], e.get("step")) for e in events] == [("job.started", None), ("node.progress", 3),
                                                            ("node.finished", None)]
    assert [e["seq"] for e in events] == [1, 4, 5]
