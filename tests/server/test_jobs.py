"""Jobs over the fake engine: queue, run, outputs as JSON and artifacts, cache, failure, cancel, priority, restart."""

import asyncio
import io
import json
import time

import pytest
from PIL import Image
from server_helpers import events_until, fake_server, workflow

pytestmark = pytest.mark.anyio

IMAGE = workflow(n=("Number", {"value": 7}), img=("Image", {"value": {"node": "n", "output": "value"}, "steps": 2}))


async def submit(client, wf, priority=0):
    response = await client.post("/api/jobs", json={"workflow": wf, "priority": priority})
    assert response.status_code == 201, response.text
    return response.json()["job"]


async def test_job_runs_and_its_events_come_in_order(tmp_path):
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe()
        job = await submit(client, IMAGE)
        seen = await events_until(events, job, "job.finished")
        kinds = [e["type"] for e in seen if e["job"] == job and e["type"] not in ("node.progress", "node.preview")]
        assert kinds == ["job.queued", "job.started", "node.started", "node.finished", "node.started",
                         "node.finished", "job.finished"]
        seqs = [e["seq"] for e in seen]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # a step the reader had not taken yet is superseded by the next: the steps rise and the last one comes
        img = [i for i, e in enumerate(seen) if e["node"] == "img" and e["type"] in ("node.started", "node.finished")]
        for kind in ("node.progress", "node.preview"):
            steps = [e["step"] for e in seen if e["type"] == kind]
            assert steps == sorted(set(steps)) and steps[-1] == 2, (kind, steps)
            assert all(img[0] < i < img[1] for i, e in enumerate(seen) if e["type"] == kind)
        preview = next(e for e in seen if e["type"] == "node.preview")
        assert preview["image"].startswith("data:image/png;base64,")
        assert "outputs" not in next(e for e in seen if e["type"] == "node.finished")

        info = (await client.get(f"/api/jobs/{job}")).json()
        assert info["status"] == "done" and info["error"] is None
        assert info["executed"] == ["n", "img"] and info["cached"] == []
        assert info["outputs"]["n"] == {"value": 7}
        sha = info["outputs"]["img"]["image"]["artifact"]
        assert info["outputs"]["img"]["images"] == [{"artifact": sha}, {"artifact": sha}]
        assert info["outputs"]["img"]["latents"] == {"socket": "tensor", "dtype": "float32", "shape": [1, 4, 3, 2]}
        assert info["timings"]["started"] >= info["timings"]["created"] and set(info["timings"]["nodes"]) == {"n", "img"}

        png = await client.get(f"/api/artifacts/{sha}")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).getpixel((0, 0)) == (7, 100, 200)


@pytest.mark.parametrize("metadata", [True, False])
async def test_output_pngs_carry_the_workflow_that_made_them_unless_told_not_to(tmp_path, metadata):
    """As ComfyUI's do: a ``workflow`` tEXt chunk with the job's workflow as submitted (a page's layout under "ui"
    included), so that the image loaded into an editor brings back its graph; ``--no-metadata`` leaves it out."""
    submitted = {**IMAGE, "ui": {"positions": {"n": {"x": 10, "y": 20}, "img": {"x": 300, "y": 20}}}}
    async with fake_server(tmp_path, metadata=metadata) as client:
        events = client.state.bus.subscribe()
        job = await submit(client, submitted)
        await events_until(events, job, "job.finished")
        sha = (await client.get(f"/api/jobs/{job}")).json()["outputs"]["img"]["image"]["artifact"]
        png = Image.open(io.BytesIO((await client.get(f"/api/artifacts/{sha}")).content))
    assert png.getpixel((0, 0)) == (7, 100, 200)
    if metadata:
        assert json.loads(png.text["workflow"]) == submitted
    else:
        assert "workflow" not in png.text


async def test_the_last_nodes_finished_event_comes_once_its_outputs_are_stored(tmp_path, monkeypatch):
    """The last node's node.finished goes out with the job's end, once the images are stored and the record
    written, so the worker does not store them while the event loop sends it (a GIL tug of war); an earlier node's
    goes out at once, as another job computing the next node could keep it waiting."""
    from diffblocks.server import workers

    log, on_event = [], workers.JobRun.on_event

    def logged(run, event):
        log.append(("engine", event["type"], event["node"]))
        on_event(run, event)

    monkeypatch.setattr(workers.JobRun, "on_event", logged)
    async with fake_server(tmp_path) as client:
        state, seen_at_publish = client.state, {}
        publish = state.bus.publish

        def publish_and_look(event):
            log.append(("bus", event["type"], event["node"]))
            if event["type"] == "node.finished":
                record = state.queue.get(event["job"])
                seen_at_publish[event["node"]] = (record.status, record.result.get("outputs", {}).get("img"))
            return publish(event)

        state.bus.publish = publish_and_look
        events = state.bus.subscribe()
        job = await submit(client, IMAGE)
        seen = await events_until(events, job, "job.finished")
        assert seen_at_publish["n"] == ("running", None)
        at = log.index(("engine", "node.finished", "n"))
        assert log[at + 1] == ("bus", "node.finished", "n")
        status, img = seen_at_publish["img"]
        assert status == "done" and state.artifacts.has(img["image"]["artifact"])
        kinds = [(e["type"], e["node"]) for e in seen if e["type"] in ("node.started", "node.finished", "job.finished")]
        assert kinds == [("node.started", "n"), ("node.finished", "n"), ("node.started", "img"),
                         ("node.finished", "img"), ("job.finished", None)]


async def test_queued_comes_before_started_even_when_a_worker_claims_at_once(tmp_path):
    """A worker may claim a job the moment it is stored, before the request that queued it goes on: here the
    queue waits for the job to finish before ``submit`` returns, the widest such gap."""
    async with fake_server(tmp_path) as client:
        queue, events = client.state.queue, client.state.bus.subscribe()
        submit_now = queue.submit

        def submit_and_let_it_run(*args, **kwargs):
            job = submit_now(*args, **kwargs)
            deadline = time.monotonic() + 30
            while queue.get(job.id).status != "done" and time.monotonic() < deadline:
                time.sleep(0.005)
            return job

        queue.submit = submit_and_let_it_run
        job = await submit(client, IMAGE)
        seen = [e["type"] for e in await events_until(events, job, "job.finished") if e["job"] == job]
        assert seen[:2] == ["job.queued", "job.started"] and seen.count("job.queued") == 1


async def test_a_queue_that_cannot_store_the_job_fails_it_on_the_stream(tmp_path):
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe()

        def broken(*args, **kwargs):
            raise OSError("disk full")

        client.state.queue.submit = broken
        with pytest.raises(OSError):
            await client.post("/api/jobs", json={"workflow": IMAGE})
        queued = json.loads(await asyncio.wait_for(events.get(), 10))
        failed = json.loads(await asyncio.wait_for(events.get(), 10))
        assert queued["type"] == "job.queued" and failed["type"] == "job.failed" and failed["job"] == queued["job"]
        assert failed["message"] == "could not be queued: OSError: disk full"
        assert (await client.get(f"/api/jobs/{queued['job']}")).status_code == 404


async def test_identical_job_comes_from_the_cache_and_a_change_reruns_downstream(tmp_path):
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe()
        first = await submit(client, IMAGE)
        await events_until(events, first, "job.finished")
        again = await submit(client, IMAGE)
        last = (await events_until(events, again, "job.finished"))[-1]
        assert last["executed"] == [] and last["cached"] == ["n", "img"]
        info = (await client.get(f"/api/jobs/{again}")).json()
        assert info["cached"] == ["n", "img"] and info["outputs"]["n"] == {"value": 7}
        changed = workflow(n=("Number", {"value": 7}), m=("Number", {"value": 1}),
                           add=("Add", {"a": {"node": "n", "output": "value"}, "b": {"node": "m", "output": "value"}}))
        job = await submit(client, changed)
        await events_until(events, job, "job.finished")
        info = (await client.get(f"/api/jobs/{job}")).json()
        assert info["cached"] == ["n"] and info["executed"] == ["m", "add"] and info["outputs"]["add"] == {"value": 8}


async def test_failing_node_fails_the_job_and_the_server_keeps_serving(tmp_path):
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe()
        job = await submit(client, workflow(bad=("Fail", {"value": 1})))
        failed = (await events_until(events, job, "job.failed"))[-1]
        assert failed["node"] == "bad" and failed["input"] == "value" and "on purpose" in failed["message"]
        info = (await client.get(f"/api/jobs/{job}")).json()
        assert info["status"] == "failed"
        assert info["error"]["node"] == "bad" and info["error"]["message"] == "Fail failed: on purpose"
        ok = await submit(client, IMAGE)
        await events_until(events, ok, "job.finished")
        assert (await client.get(f"/api/jobs/{ok}")).json()["status"] == "done"


async def test_cancelling_a_running_job_reads_nothing_from_the_queue_first(tmp_path):
    """The running job's worker is told at once: a query of a busy queue would let it run on meanwhile."""
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe()
        running = await submit(client, workflow(w=("Wait", {})))
        await events_until(events, running, "node.started")
        queue, asked = client.state.queue, []
        for name in ("cancel_queued", "get"):
            method = getattr(queue, name)
            setattr(queue, name, lambda *args, method=method, name=name: asked.append(name) or method(*args))
        answer = await client.delete(f"/api/jobs/{running}")
        assert answer.json() == {"job": running, "status": "cancelling"} and asked == []
        await events_until(events, running, "job.cancelled")


async def test_cancel_running_and_queued_jobs(tmp_path):
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe()
        running = await submit(client, workflow(w=("Wait", {})))
        await events_until(events, running, "node.started")
        queued = await submit(client, IMAGE)
        answer = await client.delete(f"/api/jobs/{queued}")
        assert answer.json() == {"job": queued, "status": "cancelled"}
        answer = await client.delete(f"/api/jobs/{running}")
        assert answer.json() == {"job": running, "status": "cancelling"}
        cancelled = (await events_until(events, running, "job.cancelled"))[-1]
        assert cancelled["node"] == "w"
        assert (await client.get(f"/api/jobs/{running}")).json()["status"] == "cancelled"
        assert (await client.get(f"/api/jobs/{queued}")).json()["status"] == "cancelled"
        again = await client.delete(f"/api/jobs/{running}")
        assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
        unknown = await client.delete("/api/jobs/nope")
        assert unknown.status_code == 404 and "no job 'nope'" in unknown.json()["detail"]
        assert client.engine.executors[0].runs == 1  # the queued job never ran


async def test_higher_priority_runs_first(tmp_path):
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe()
        blocker = await submit(client, workflow(w=("Wait", {})))
        await events_until(events, blocker, "node.started")
        low = await submit(client, workflow(n=("Number", {"value": 1})))
        high = await submit(client, workflow(n=("Number", {"value": 2})), priority=5)
        await client.delete(f"/api/jobs/{blocker}")
        seen = await events_until(events, low, "job.finished")
        started = [e["job"] for e in seen if e["type"] == "job.started"]
        assert started == [high, low]
        listed = (await client.get("/api/jobs")).json()["jobs"]
        assert [j["job"] for j in listed] == [high, low, blocker]  # newest first


async def test_queued_jobs_run_after_a_restart(tmp_path):
    async with fake_server(tmp_path, devices=[]) as client:  # no worker: jobs stay queued
        jobs = [await submit(client, workflow(n=("Number", {"value": i}))) for i in range(3)]
        assert (await client.get("/api/system")).json()["queue"] == {"queued": 3, "running": 0}
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe(since=0)
        for job in jobs:
            if (await client.get(f"/api/jobs/{job}")).json()["status"] != "done":
                await events_until(events, job, "job.finished")
        outputs = [(await client.get(f"/api/jobs/{j}")).json()["outputs"]["n"]["value"] for j in jobs]
        assert outputs == [0, 1, 2]


async def test_a_job_running_at_shutdown_runs_again_after_the_restart(tmp_path):
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe()
        job = await submit(client, workflow(w=("Wait", {})))
        await events_until(events, job, "node.started")
    async with fake_server(tmp_path) as client:
        events = client.state.bus.subscribe(since=0)
        await events_until(events, job, "node.started")  # started again
        assert (await client.get(f"/api/jobs/{job}")).json()["status"] == "running"
        await client.delete(f"/api/jobs/{job}")
        await events_until(events, job, "job.cancelled")


async def test_a_workflow_the_engine_refuses_at_run_time_fails_with_every_problem(tmp_path):
    async with fake_server(tmp_path) as client:
        client.engine.validate = lambda workflow: []  # accepted when queued (say, an artifact deleted since)
        events = client.state.bus.subscribe()
        job = await submit(client, workflow(x=("Nope", {})))
        failed = (await events_until(events, job, "job.failed"))[-1]
        assert failed["node"] == "x" and failed["message"] == "unknown node type 'Nope'"
        error = (await client.get(f"/api/jobs/{job}")).json()["error"]
        assert error["errors"] == [{"node": "x", "input": None, "message": "unknown node type 'Nope'"}]


async def test_an_engine_crash_fails_the_job_not_the_worker(tmp_path):
    async with fake_server(tmp_path) as client:
        executor = client.engine.executors[0]
        real_run = executor.run

        def crash_once(workflow, **kwargs):
            executor.run = real_run
            raise RuntimeError("engine bug")

        executor.run = crash_once
        events = client.state.bus.subscribe()
        job = await submit(client, IMAGE)
        failed = (await events_until(events, job, "job.failed"))[-1]
        assert failed["message"] == "RuntimeError: engine bug" and failed["node"] is None
        ok = await submit(client, IMAGE)
        await events_until(events, ok, "job.finished")


async def test_the_preview_interval_setting_reaches_every_executor(tmp_path):
    async with fake_server(tmp_path, preview_interval=0.3, devices=["cpu", "cpu:1"]) as client:
        assert [e.preview_interval for e in client.engine.executors] == [0.3, 0.3]


def test_system_answers_while_a_worker_is_still_importing_torch(monkeypatch):
    """A worker imports torch when its first job runs; until that import ends, ``sys.modules`` holds torch half
    made (no ``torch.cuda`` yet). GET /api/system then reported a 500 (AttributeError), and the connection closed;
    now the memory it reads is empty until torch is whole, and emptying the CUDA cache skips it."""
    import importlib.machinery
    import sys
    import types

    from diffblocks.server.memory import cuda_memory, release_memory

    half_made = types.ModuleType("torch")
    half_made.__spec__ = importlib.machinery.ModuleSpec("torch", None)
    half_made.__spec__._initializing = True  # as importlib marks a module whose import is under way
    monkeypatch.setitem(sys.modules, "torch", half_made)
    assert cuda_memory() == {}
    release_memory()
