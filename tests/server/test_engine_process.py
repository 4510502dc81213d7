"""``engine_process=True`` (``diffblocks serve --engine-process``): the workers in a child process. The live tests
(test_live.py) run every feature against it too; these are what only it does: a crash there, the client count it
is told, its end with the server's."""

import os
import signal
import time

import httpx
import pytest
from live_server import LiveServer, events_until
from node_workflows import preset_text2image
from websockets.sync.client import connect

from diffblocks.components.errors.server import EngineError
from diffblocks.server import ServerSettings, create_app
from diffblocks.server.memory import rss_bytes

pytestmark = pytest.mark.slow


def submit(client, workflow):
    response = client.post("/api/jobs", json={"workflow": workflow})
    assert response.status_code == 201, response.text
    return response.json()["job"]


@pytest.fixture
def live(tmp_path):
    with LiveServer(ServerSettings(data_dir=tmp_path, engine_process=True, preview_interval=0)) as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            server.client, server.pool = client, server.app.state.server.pool
            yield server


def test_a_crashed_engine_fails_its_job_and_a_new_process_takes_the_next(live):
    with connect(live.ws_url) as ws:
        job = submit(live.client, preset_text2image("embedded", steps=500))
        events_until(ws, job, kinds=("node.progress",))
        first = live.pool.process
        first.send_signal(signal.SIGKILL)  # as the kernel's out-of-memory killer would
        failed = events_until(ws, job)[-1]
        assert failed["type"] == "job.failed" and "killed by SIGKILL" in failed["message"], failed
        info = live.client.get(f"/api/jobs/{job}").json()
        assert info["status"] == "failed" and "the engine's process stopped (killed by SIGKILL)" in info["error"]["message"]
        after = submit(live.client, preset_text2image("embedded", steps=2))
        assert events_until(ws, after)[-1]["type"] == "job.finished"
    assert live.pool.restarts == 1 and live.pool.process is not first and first.poll() == -signal.SIGKILL
    system = live.client.get("/api/system").json()
    assert system["workers_error"] is None and [d["device"] for d in system["devices"]] == ["cpu"]


def test_previews_are_made_only_while_a_client_listens(live):
    """The engine's process is told how many clients listen: a job nobody watches makes no preview."""
    workflow = preset_text2image("embedded", steps=3)
    unwatched = submit(live.client, workflow)
    while live.client.get(f"/api/jobs/{unwatched}").json()["status"] != "done":
        time.sleep(0.05)
    with connect(live.ws_url + "?since=0") as ws:
        replayed = events_until(ws, unwatched)
        watched = submit(live.client, preset_text2image("embedded", steps=3, seed=1))
        seen = events_until(ws, watched)
    assert replayed[-1]["type"] == "job.finished" and not [e for e in replayed if e["type"] == "node.preview"]
    previews = [e["step"] for e in seen if e["type"] == "node.preview" and e["job"] == watched]
    assert previews and previews[-1] == 3  # the latest of each batch (bus.py)


def test_the_engine_process_answers_system_and_free_and_ends_with_the_server(tmp_path):
    with LiveServer(ServerSettings(data_dir=tmp_path, engine_process=True)) as server:
        with httpx.Client(base_url=server.url, timeout=120) as client, connect(server.ws_url) as ws:
            events_until(ws, submit(client, preset_text2image("embedded", steps=2)))
            system = client.get("/api/system").json()
            here = rss_bytes()
            freed = client.post("/api/free").json()
            after = client.get("/api/system").json()
        engine = server.app.state.server.pool.process
        assert engine.pid != os.getpid() and engine.poll() is None
    assert {row["class"] for row in system["components"]} >= {"UNet2DConditionModel", "AutoencoderKL"}
    assert system["cache"]["entries"] == 2 and after["cache"]["entries"] == 0 and after["components"] == []
    assert len(freed["removed_components"]) == len(system["components"])
    # the size counts both processes: this one (the server's) and the child's, which imported torch
    assert system["memory"]["rss_bytes"] > here + 100 * 2**20 and freed["rss_after"] > here + 100 * 2**20
    assert engine.poll() is not None


def test_an_engine_given_to_create_app_cannot_go_to_the_child(tmp_path):
    from fake_node_engine import FakeEngine

    with pytest.raises(EngineError, match="cannot send another one there"):
        create_app(ServerSettings(data_dir=tmp_path, engine_process=True), engine=FakeEngine())


def test_free_from_an_engine_process_that_could_not_start_is_a_503_naming_why(tmp_path):
    with LiveServer(ServerSettings(data_dir=tmp_path, engine_process=True, devices=["tpu:0"])) as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            assert server.app.state.server.pool.ready.wait(120)
            freed = client.post("/api/free")
            system = client.get("/api/system").json()
    assert freed.status_code == 503 and "the engine's process is not running (--device tpu:0:" in freed.json()["detail"]
    assert system["workers_error"].startswith("--device tpu:0: Expected one of") and system["devices"] == []


def test_interrupt_reaches_a_running_job_without_asking_the_queue(live):
    """The server knows from the child's events which jobs run there, so DELETE interrupts one at once."""
    with connect(live.ws_url) as ws:
        job = submit(live.client, preset_text2image("embedded", steps=500))
        events_until(ws, job, kinds=("node.progress",))
        assert live.pool.interrupt(job) is True
        ended = events_until(ws, job)[-1]
    assert ended["type"] == "job.cancelled" and live.pool.interrupt(job) is False
    assert live.client.get(f"/api/jobs/{job}").json()["status"] == "cancelled"
