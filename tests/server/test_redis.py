"""The Redis queue, events and images against a real ``redis-server`` on 127.0.0.1: atomic claims in priority
order, leases that run out and re-queue a job, stale results refused; then one front and two ``diffblocks worker``
processes on the embedded model, one of them killed while it runs a job."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

redis = pytest.importorskip("redis", reason="the queue extra (redis) is not installed: pip install '.[queue]'")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not on PATH (apt-get install redis-server; `make setup` does it)",
                allow_module_level=True)

from diffblocks.cli import main  # noqa: E402
from diffblocks.components.errors.nodes import ArtifactError  # noqa: E402
from diffblocks.server.redis_bus import RedisArtifactStore, RedisEventBus, RedisEventPublisher  # noqa: E402
from diffblocks.server.redis_queue import RedisJobQueue  # noqa: E402


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url():
    """A real redis-server on a free port, without persistence, stopped after the module."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 30
    while True:  # readiness: the server answers a ping
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
    yield url
    client.close()
    proc.terminate()
    proc.wait(30)


@pytest.fixture
def url(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


def test_claims_follow_priority_then_order_and_each_job_is_claimed_once(url):
    front, a, b = RedisJobQueue(url), RedisJobQueue(url, name="a"), RedisJobQueue(url, name="b")
    low, first, second = (front.submit({"n": n}, priority) for n, priority in ((0, -1), (1, 5), (2, 5)))
    claims = [a.claim("cpu", timeout=1), b.claim("cpu", timeout=1), a.claim("cpu", timeout=1)]
    assert [job.id for job in claims] == [first.id, second.id, low.id]
    assert [job.device for job in claims] == ["cpu@a", "cpu@b", "cpu@a"]
    assert a.claim("cpu", timeout=0.2) is None
    assert [job.id for job in front.active()] == [first.id, second.id, low.id]
    assert a.finish(first.id, "done", {"outputs": {"x": 1}}) is True
    assert front.get(first.id).status == "done" and front.get(first.id).result == {"outputs": {"x": 1}}
    assert front.list()[-1].id == low.id and [job.id for job in front.list("done")] == [first.id]
    for queue in (front, a, b):
        queue.close()


def test_a_lost_lease_requeues_the_job_and_the_late_result_is_refused(url):
    front, dead, alive = RedisJobQueue(url), RedisJobQueue(url, 0.3, "dead"), RedisJobQueue(url, 0.3, "alive")
    job = front.submit({"n": 1})
    assert dead.claim("cpu", timeout=1).id == job.id
    dead._closed.set()  # its lease renewals stop, as if the process had died
    again = alive.claim("cpu", timeout=10)
    assert again.id == job.id and again.device == "cpu@alive"
    assert alive.finish(job.id, "done", {"outputs": {"by": "alive"}}) is True
    assert dead.finish(job.id, "failed", error={"message": "late"}) is False
    final = front.get(job.id)
    assert final.status == "done" and final.result["outputs"] == {"by": "alive"} and final.error is None
    for queue in (front, dead, alive):
        queue.close()


def test_cancel_a_queued_job_and_a_stopping_worker_hands_its_job_back(url):
    front, worker = RedisJobQueue(url), RedisJobQueue(url, 60, "w")
    cancelled, kept = front.submit({"n": 1}), front.submit({"n": 2})
    assert front.cancel_queued(cancelled.id) is True and front.cancel_queued(cancelled.id) is False
    assert front.get(cancelled.id).status == "cancelled"
    assert worker.claim("cpu", timeout=1).id == kept.id
    asked, heard = [], threading.Event()
    worker.on_cancel = lambda job_id: (asked.append(job_id), heard.set())
    front.request_cancel(kept.id)
    assert heard.wait(10)  # the request reaches the worker at its next lease renewal
    assert asked == [kept.id]
    other = RedisJobQueue(url, 60, "other")
    worker.close()
    assert front.get(kept.id).status == "queued"
    assert other.claim("cpu", timeout=1).id == kept.id
    other.close()
    front.close()


def test_artifacts_reach_every_process_and_ids_are_checked(url, tmp_path):
    here, there = RedisArtifactStore(url, tmp_path / "here"), RedisArtifactStore(url, tmp_path / "there")
    sha = here.put_bytes(b"\x89PNG some bytes")
    assert there.read_bytes(sha) == b"\x89PNG some bytes" and there.has(sha)
    with pytest.raises(ArtifactError, match="64 lowercase hex"):
        there.path("../" + "0" * 61)
    forged = "0" * 64
    there.redis.hset(f"diffblocks:artifact:{forged}", mapping={"data": b"not these bytes", "type": "image/png"})
    with pytest.raises(ArtifactError, match=forged):
        there.read_bytes(forged)


def test_images_expire_from_redis_unless_stored_fetched_or_shared_again(url, tmp_path):
    """Redis carries images, it does not archive them: each copy has a time to live, renewed when it is stored or
    fetched; ``share`` renews it, or puts back from the local folder one that expired."""
    front = RedisArtifactStore(url, tmp_path / "front", ttl_seconds=60)
    worker = RedisArtifactStore(url, tmp_path / "worker", ttl_seconds=60)
    sha = front.put_bytes(b"\x89PNG an upload")
    key = f"diffblocks:artifact:{sha}"
    assert 0 < front.redis.pttl(key) <= 60_000
    front.redis.pexpire(key, 5_000)
    assert worker.read_bytes(sha) == b"\x89PNG an upload" and front.redis.pttl(key) > 5_000  # fetched: renewed
    front.redis.pexpire(key, 5_000)
    front.share([sha])
    assert front.redis.pttl(key) > 5_000
    front.redis.delete(key)  # expired
    front.share([sha])
    assert front.redis.hget(key, "data") == b"\x89PNG an upload" and 0 < front.redis.pttl(key) <= 60_000
    front.redis.delete(key)
    front.share(["f" * 64])  # nothing here under that id: nothing put
    assert not front.redis.exists(key) and not front.redis.exists(f"diffblocks:artifact:{'f' * 64}")


def test_the_front_keeps_finished_jobs_images_and_the_newest_history(url, tmp_path):
    from diffblocks.server.redis_bus import OutputKeeper

    queue = RedisJobQueue(url, lease_seconds=30, name="w")
    front, worker = RedisArtifactStore(url, tmp_path / "front"), RedisArtifactStore(url, tmp_path / "worker")
    keeper = OutputKeeper(queue, front, keep_jobs=3)
    try:
        old = queue.submit({"n": 0}, priority=-5)  # the oldest, and still queued when the history is cut
        done = []
        for i in range(4):
            job = queue.submit({"n": i + 1})
            assert queue.claim("cpu", timeout=0).id == job.id
            images = [worker.put_bytes(f"\x89PNG image {i} {j}".encode()) for j in range(2)]
            queue.finish(job.id, "done", {"outputs": {"save": {"images": [{"artifact": sha} for sha in images],
                                                               "note": "text"}}})
            keeper.ended(job.id)
            done.append((job.id, images))
        keeper.wait()
    finally:
        keeper.close()
        queue.close()
    for _, images in done:  # in the front's own folder: Redis may forget them now
        assert all((tmp_path / "front" / sha[:2] / sha).is_file() for sha in images)
    kept = [job.id for job in RedisJobQueue(url).list(limit=100)]
    assert kept == [job_id for job_id, _ in reversed(done[1:])] + [old.id]  # the queued job stays, however old
    assert not redis.Redis.from_url(url).exists(f"diffblocks:job:{done[0][0]}")


def test_events_from_any_process_are_numbered_by_the_front(url):
    bus = RedisEventBus(url, snapshot=lambda: [])

    async def read(count):
        subscription = bus.subscribe()
        RedisEventPublisher(url).publish({"type": "node.started", "job": "j1", "node": "a"})
        bus.publish({"type": "job.queued", "job": "j2"})
        return [json.loads(await asyncio.wait_for(subscription.get(), 10)) for _ in range(count)]

    events = asyncio.run(read(2))
    bus.close()
    assert [(e["seq"], e["type"], e["job"]) for e in events] == [(1, "node.started", "j1"), (2, "job.queued", "j2")]


@pytest.mark.parametrize("argv, words", [
    (["serve", "--queue", "postgres://db"], "--queue must be sqlite (the queue in --data-dir) or a Redis URL"),
    (["serve", "--queue", "redis://127.0.0.1:1/0"], "--queue redis://127.0.0.1:1/0: no Redis server answers there"),
    (["worker", "--queue", "sqlite"], "--queue must be a Redis URL"),
    (["worker", "--queue", "redis://127.0.0.1:1/0"], "no Redis server answers there"),
    (["serve", "--keep-jobs", "100"], "--keep-jobs needs a Redis --queue: the SQLite queue keeps every job"),
    (["serve", "--artifact-ttl", "2"], "--artifact-ttl needs a Redis --queue"),
    (["serve", "--queue", "redis://127.0.0.1:1/0", "--keep-jobs", "0"], "--keep-jobs must be a number of jobs"),
    (["worker", "--queue", "redis://127.0.0.1:1/0", "--artifact-ttl", "-1"], "--artifact-ttl must be a number of hours"),
])
def test_bad_queue_flags_are_one_line_errors(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffblocks: error: ") and words in err and len(err.strip().splitlines()) == 1


def test_a_worker_on_a_device_the_machine_lacks_stops_with_one_error(capsys, url, tmp_path):
    assert main(["worker", "--queue", url, "--device", "tpu:0", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffblocks: error: --device tpu:0: Expected one of") and len(err.strip().splitlines()) == 1


def test_serve_and_worker_flags_take_a_redis_url(url, tmp_path):
    from diffblocks.cli import build_parser, serve, worker

    front = serve.settings_from(build_parser().parse_args(["serve", "--queue", url, "--device", "cpu"]))
    assert front.queue == url and (front.keep_jobs, front.artifact_ttl) == (10_000, 24 * 3600)
    kept = serve.settings_from(build_parser().parse_args(["serve", "--queue", url, "--keep-jobs", "50",
                                                          "--artifact-ttl", "0.5"]))
    assert (kept.keep_jobs, kept.artifact_ttl) == (50, 1800)
    args = build_parser().parse_args(["worker", "--queue", url, "--device", "cpu", "--lease", "2.5",
                                      "--data-dir", str(tmp_path), "--no-previews", "--preview-interval", "0.5",
                                      "--artifact-ttl", "2", "--models-dir", str(tmp_path)])
    settings = worker.settings_from(args)
    assert settings.model_dirs == [tmp_path]  # a worker looks names up in its own host's folders
    assert (settings.queue, settings.lease_seconds, settings.data_dir, settings.previews) == (url, 2.5, tmp_path, False)
    assert settings.preview_interval == 0.5 and settings.artifact_ttl == 7200
    embedded = serve.settings_from(build_parser().parse_args(["serve", "--queue", "sqlite", "--device", "cpu"]))
    assert embedded.queue is None


def t2i(seed, steps):
    return {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
        "t2i": {"type": "preset:sd15-text2image", "inputs": {"components": {"node": "load", "output": "components"},
                "prompt": "a handwritten digit seven", "num_inference_steps": steps, "seed": seed}}}}


def start_worker(url, tmp_path, name):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "diffblocks.cli", "worker", "--queue", url, "--device", "cpu",
                             "--model", "embedded", "--lease", "2.5", "--data-dir", str(tmp_path / name)],
                            stdout=subprocess.PIPE, stderr=(tmp_path / f"{name}.log").open("w"), text=True, env=env)
    line = proc.stdout.readline()  # printed once it takes jobs
    assert "taking jobs from" in line, (tmp_path / f"{name}.log").read_text()
    return proc, line.split()[2].split("@", 1)[1]  # "cpu@host:pid" -> "host:pid"


@pytest.mark.slow
def test_two_workers_run_every_job_once_and_a_killed_workers_job_runs_elsewhere(url, tmp_path):
    import io

    import httpx
    from PIL import Image
    from live_server import LiveServer
    from websockets.sync.client import connect

    from diffblocks.server import ServerSettings

    workers = [start_worker(url, tmp_path, name) for name in ("w1", "w2")]
    try:
        with LiveServer(ServerSettings(data_dir=tmp_path / "front", queue=url)) as live, \
                httpx.Client(base_url=live.url, timeout=60) as client, connect(live.ws_url) as ws:
            def submit(workflow):
                response = client.post("/api/jobs", json={"workflow": workflow})
                assert response.status_code == 201, response.text
                return response.json()["job"]

            events = []

            def until(done):
                while not done():
                    events.append(json.loads(ws.recv(timeout=60)))

            def finished(job):
                return [e for e in events if e["job"] == job and e["type"] in ("job.finished", "job.failed")]

            small = [submit(t2i(seed, 2 + seed % 3)) for seed in range(20)]
            until(lambda: all(finished(job) for job in small))
            long = submit(t2i(100, 400))
            until(lambda: any(e["job"] == long and e["type"] == "node.started" and e["node"] == "t2i" for e in events))
            victim = client.get(f"/api/jobs/{long}").json()["device"]
            doomed = next(proc for proc, name in workers if name == victim.split("@", 1)[1])
            doomed.kill()  # SIGKILL: no goodbye, the job stays claimed until its lease runs out
            doomed.wait(30)
            after = [submit(t2i(seed, 2)) for seed in range(200, 203)]
            until(lambda: all(finished(job) for job in [long, *after]))
            jobs = {job: client.get(f"/api/jobs/{job}").json() for job in [*small, long, *after]}
            stopped = submit(t2i(300, 400))
            until(lambda: any(e["job"] == stopped and e["type"] == "node.progress" for e in events))
            assert client.delete(f"/api/jobs/{stopped}").json() == {"job": stopped, "status": "cancelling"}
            until(lambda: any(e["job"] == stopped and e["type"] == "job.cancelled" for e in events))
            assert client.get(f"/api/jobs/{stopped}").json()["status"] == "cancelled"
            png = client.get(f"/api/artifacts/{jobs[long]['outputs']['t2i']['images'][0]['artifact']}")
            # Redis forgets images (a time to live): the front kept its own copy of each output, and puts an
            # upload back into Redis when a job refers to it, so the worker that takes the job finds it
            live.app.state.server.keeper.wait()
            output = jobs[after[0]]["outputs"]["t2i"]["images"][0]["artifact"]
            store = redis.Redis.from_url(url)
            store.delete(f"diffblocks:artifact:{output}")
            kept = client.get(f"/api/artifacts/{output}")
            fresh = io.BytesIO()  # bytes no worker has seen, so none has them in its own folder
            Image.effect_noise((32, 32), 64).convert("RGB").save(fresh, format="PNG")
            upload = client.post("/api/uploads", files={"file": ("u.png", fresh.getvalue(), "image/png")}).json()["artifact"]
            store.delete(f"diffblocks:artifact:{upload}")
            i2i = submit({"nodes": {"load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
                                    "image": {"type": "LoadImage", "inputs": {"image": {"artifact": upload}}},
                                    "i2i": {"type": "preset:sd15-image2image", "inputs": {
                                        "components": {"node": "load", "output": "components"},
                                        "image": {"node": "image", "output": "image"}, "prompt": "a digit",
                                        "num_inference_steps": 2, "strength": 0.5, "seed": 0}}}})
            until(lambda: finished(i2i))
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.communicate(timeout=60)

    assert sorted(proc.returncode for proc, _ in workers) == [-signal.SIGKILL, 0]  # the survivor stops cleanly
    assert all(len(finished(job)) == 1 and finished(job)[0]["type"] == "job.finished" for job in jobs), \
        {job: [e["type"] for e in finished(job)] for job in jobs}
    assert {info["status"] for info in jobs.values()} == {"done"}
    survivor = jobs[long]["device"]
    assert survivor != victim and all(jobs[job]["device"] == survivor for job in after)
    assert [e["type"] for e in events if e["job"] == long].count("job.started") == 2  # claimed, lost, claimed again
    ran_on = {info["device"] for info in jobs.values()} | {victim}
    assert len(ran_on) == 2  # events came from both workers: the victim's node.started, the survivor's the rest
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert kept.status_code == 200 and kept.content.startswith(b"\x89PNG")
    assert finished(i2i)[0]["type"] == "job.finished", finished(i2i)
    print(f"\n{len(jobs)} jobs done once each; devices: "
          f"{ {d: sum(i['device'] == d for i in jobs.values()) for d in ran_on} }; killed {victim}")
