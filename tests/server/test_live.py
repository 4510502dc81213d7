"""The real engine behind a real uvicorn on 127.0.0.1, watched over a real WebSocket: text-to-image on the
embedded model, per-node caching, cancellation, uploads and image-to-image, reconnection, bad requests."""

import io
import json

import httpx
import numpy as np
import pytest
from live_server import LiveServer
from live_server import events_until as until
from PIL import Image
from websockets.sync.client import connect

from diffblocks.presets import embedded_model_path
from diffblocks.server import ServerSettings

pytestmark = pytest.mark.slow

T2I = {"nodes": {
    "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
    "t2i": {"type": "preset:sd15-text2image", "inputs": {"components": {"node": "load", "output": "components"},
            "prompt": "a handwritten digit seven", "num_inference_steps": 4, "seed": 0}}}}


def leaf_workflow(seed):
    comps = {"node": "load", "output": "components"}
    return {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
        "text": {"type": "StableDiffusionTextEncoderStep", "inputs": {"components": comps, "prompt": "a handwritten digit seven"}},
        "input": {"type": "StableDiffusionInputStep", "inputs": {"prompt_embeds": {"node": "text", "output": "prompt_embeds"}, "negative_prompt_embeds": {"node": "text", "output": "negative_prompt_embeds"}}},
        "steps": {"type": "StableDiffusionSetTimestepsStep", "inputs": {"components": comps, "num_inference_steps": 3}},
        "latents": {"type": "StableDiffusionPrepareLatentsStep", "inputs": {"components": comps, "batch_size": {"node": "input", "output": "batch_size"}, "dtype": {"node": "input", "output": "dtype"}, "seed": seed}},
        "denoise": {"type": "StableDiffusionDenoiseStep", "inputs": {"components": comps, "timesteps": {"node": "steps", "output": "timesteps"}, "num_inference_steps": {"node": "steps", "output": "num_inference_steps"}, "latents": {"node": "latents", "output": "latents"}, "scheduler": {"node": "steps", "output": "scheduler"}, "prompt_embeds": {"node": "input", "output": "prompt_embeds"}, "negative_prompt_embeds": {"node": "input", "output": "negative_prompt_embeds"}}},
        "decode": {"type": "StableDiffusionDecodeStep", "inputs": {"components": comps, "latents": {"node": "denoise", "output": "latents"}}}}}


@pytest.fixture(scope="module", params=[False, True], ids=["in-process", "engine-process"])
def server(tmp_path_factory, request):
    """Every test here runs against both: the workers as threads of the server, and in a process of their own."""
    models = tmp_path_factory.mktemp("models")
    (models / "diffusers").mkdir()
    (models / "diffusers" / "digits").symlink_to(embedded_model_path())
    settings = ServerSettings(data_dir=tmp_path_factory.mktemp("serve"), max_upload_bytes=256 * 1024,
                              preview_interval=0,  # a preview every step, to count them
                              engine_process=request.param, model_dirs=[models])
    with LiveServer(settings) as live:
        with httpx.Client(base_url=live.url, timeout=120) as client:
            live.client = client
            yield live


def submit(server, workflow):
    response = server.client.post("/api/jobs", json={"workflow": workflow})
    assert response.status_code == 201, response.text
    return response.json()["job"]


def pixels(server, ref):
    data = server.client.get(f"/api/artifacts/{ref['artifact']}").content
    return np.asarray(Image.open(io.BytesIO(data)))


def test_catalog_and_validation(server):
    nodes = server.client.get("/api/nodes").json()
    assert {"LoadComponents", "LoadImage", "preset:sd15-text2image", "StableDiffusionDecodeStep"} <= set(nodes)
    assert nodes["LoadComponents"]["inputs"]["repo"]["required"] is True
    assert server.client.post("/api/validate", json={"workflow": T2I}).json() == {"ok": True, "errors": []}
    bad = {"nodes": {**T2I["nodes"], "x": {"type": "StableDiffusionDecodeStepp", "inputs": {}}}}
    answer = server.client.post("/api/validate", json={"workflow": bad}).json()
    assert answer["ok"] is False and answer["errors"][0]["node"] == "x"
    assert "did you mean StableDiffusionDecodeStep" in answer["errors"][0]["message"]


def test_text_to_image_events_in_order_and_png_equal_to_the_engine(server):
    from diffblocks.nodes import Executor

    with connect(server.ws_url) as ws:
        job = submit(server, T2I)
        events = [e for e in until(ws, job) if e["job"] == job]
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["job.queued", "job.started"] and kinds[-1] == "job.finished"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    for kind in ("node.progress", "node.preview"):  # the latest of each batch, the last step among them
        steps = [e["step"] for e in events if e["type"] == kind]
        assert steps and steps[-1] == 4 and steps == sorted(set(steps)), (kind, steps)
    assert events[-2] == {**events[-2], "type": "node.finished", "node": "t2i"}
    info = server.client.get(f"/api/jobs/{job}").json()
    assert info["status"] == "done" and info["executed"] == ["load", "t2i"]
    served = pixels(server, info["outputs"]["t2i"]["images"][0])
    expected = np.asarray(Executor().run(T2I)["t2i"]["images"][0])
    assert served.shape == expected.shape and np.array_equal(served, expected)


def test_changing_the_seed_runs_only_downstream_nodes(server):
    with connect(server.ws_url) as ws:
        first = submit(server, leaf_workflow(seed=1))
        until(ws, first)
        second = submit(server, leaf_workflow(seed=2))
        finished = until(ws, second)[-1]
    assert finished["type"] == "job.finished", finished
    assert finished["executed"] == ["latents", "denoise", "decode"]
    assert sorted(finished["cached"]) == ["input", "load", "steps", "text"]
    info = server.client.get(f"/api/jobs/{second}").json()
    assert info["executed"] == finished["executed"] and info["cached"] == finished["cached"]
    images = [pixels(server, server.client.get(f"/api/jobs/{j}").json()["outputs"]["decode"]["images"][0])
              for j in (first, second)]
    assert not np.array_equal(*images)


def test_cancel_a_running_job(server):
    long = {"nodes": {**T2I["nodes"], "t2i": {**T2I["nodes"]["t2i"],
                                              "inputs": {**T2I["nodes"]["t2i"]["inputs"], "num_inference_steps": 500}}}}
    with connect(server.ws_url) as ws:
        job = submit(server, long)
        until(ws, job, kinds=("node.progress",))
        assert server.client.delete(f"/api/jobs/{job}").json() == {"job": job, "status": "cancelling"}
        after = until(ws, job)
    assert after[-1]["type"] == "job.cancelled" and after[-1]["node"] == "t2i"
    assert sum(e["type"] == "node.progress" for e in after) < 10
    assert server.client.get(f"/api/jobs/{job}").json()["status"] == "cancelled"


def test_upload_an_image_and_run_image_to_image(server):
    source = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    source.save(buffer, format="JPEG")
    upload = server.client.post("/api/uploads", files={"file": ("digit.jpg", buffer.getvalue(), "image/jpeg")})
    assert upload.status_code == 201
    artifact = upload.json()["artifact"]
    workflow = {"nodes": {
        "load": T2I["nodes"]["load"],
        "image": {"type": "LoadImage", "inputs": {"image": {"artifact": artifact}}},
        "i2i": {"type": "preset:sd15-image2image", "inputs": {
            "components": {"node": "load", "output": "components"}, "image": {"node": "image", "output": "image"},
            "prompt": "a handwritten digit seven", "num_inference_steps": 4, "strength": 0.5, "seed": 0}}}}
    with connect(server.ws_url) as ws:
        job = submit(server, workflow)
        assert until(ws, job)[-1]["type"] == "job.finished"
    info = server.client.get(f"/api/jobs/{job}").json()
    assert info["outputs"]["image"]["image"] == {"artifact": artifact}
    assert pixels(server, info["outputs"]["i2i"]["images"][0]).shape == (64, 64, 3)


def test_reconnecting_with_since_replays_what_was_missed(server):
    with connect(server.ws_url) as ws:
        until(ws, submit(server, T2I))  # (run here too: with pytest-xdist this module's tests may be split)
        job = submit(server, T2I)  # identical: every node from the cache
        events = until(ws, job)
    assert events[-1]["cached"] == ["load", "t2i"]
    with connect(f"{server.ws_url}?since={events[0]['seq'] - 1}") as ws:
        replayed = [json.loads(ws.recv(timeout=30)) for _ in events]
    assert replayed == events


def test_websocket_refuses_other_origins_and_bad_since(server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url, origin="http://evil.example").recv(timeout=10)
    assert refused.value.response.status_code == 403
    with connect(server.ws_url, origin=server.url) as ws:  # the page the server serves itself
        ws.ping().wait(10)
    with pytest.raises(InvalidStatus):
        connect(server.ws_url + "?since=abc").recv(timeout=10)


@pytest.mark.parametrize("method, path, kwargs, status, words", [
    ("post", "/api/jobs", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ("post", "/api/jobs", {"json": {"workflow": {"nodes": {"a": {"type": "Nope"}}}}}, 422, "unknown node type 'Nope'"),
    ("post", "/api/uploads", {"files": {"file": ("x.png", b"\x89PNG" + b"\0" * 300_000, "image/png")}}, 413, "too large"),
    ("post", "/api/uploads", {"files": {"file": ("run.png", b"#!/bin/sh\necho owned\n", "image/png")}}, 415, "not a PNG, JPEG"),
    ("get", "/api/artifacts/..%2F..%2Fjobs.sqlite", {}, 404, "Not Found"),
    ("get", "/api/artifacts/" + "0" * 63 + "G", {}, 400, "64 lowercase hex"),
    ("get", "/api/artifacts/" + "0" * 64, {}, 404, "no artifact"),
])
def test_bad_requests_are_4xx_naming_the_problem(server, method, path, kwargs, status, words):
    response = getattr(server.client, method)(path, **kwargs)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_a_model_named_from_the_model_folders_makes_the_same_image(server):
    """Last in the module: the tests above count on the embedded model's LoadComponents not being cached yet."""
    assert server.client.get("/api/models/diffusers").json() == ["digits"]
    plain = json.loads(json.dumps(T2I))
    plain["nodes"]["t2i"]["inputs"]["seed"] = 11  # a seed of its own
    named = json.loads(json.dumps(plain))
    named["nodes"]["load"]["inputs"]["repo"] = "digits"
    images = []
    with connect(server.ws_url) as ws:
        for workflow in (named, plain):
            job = submit(server, workflow)
            assert until(ws, job)[-1]["type"] == "job.finished"
            images.append(pixels(server, server.client.get(f"/api/jobs/{job}").json()["outputs"]["t2i"]["images"][0]))
    assert np.array_equal(images[0], images[1])
