"""Every bad request is a 4xx JSON answer naming the problem; catalog, validation, uploads, system, page, CORS."""

import io

import pytest
from fake_node_engine import CATALOG
from PIL import Image
from server_helpers import fake_server, workflow

from diffblocks.nodes.model_files import KINDS

pytestmark = pytest.mark.anyio

GOOD = workflow(n=("Number", {"value": 1}))


def png(size=(6, 4), color=(1, 2, 3), fmt="PNG"):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


async def test_catalog_and_validation(tmp_path):
    async with fake_server(tmp_path) as client:
        assert (await client.get("/api/nodes")).json() == CATALOG
        good = await client.post("/api/validate", json={"workflow": GOOD})
        assert good.json() == {"ok": True, "errors": []}
        bad = await client.post("/api/validate", json={"workflow": workflow(x=("Nope", {}))})
        assert bad.status_code == 200
        assert bad.json() == {"ok": False, "errors": [{"node": "x", "input": None, "message": "unknown node type 'Nope'"}]}


async def test_models_lists_the_model_folders_as_they_are_now(tmp_path):
    models = tmp_path / "models"
    (models / "checkpoints" / "sd15").mkdir(parents=True)
    (models / "checkpoints" / "sd15" / "dreamshaper.safetensors").write_bytes(b"x")
    async with fake_server(tmp_path, model_dirs=[models]) as client:
        listing = (await client.get("/api/models")).json()
        assert listing["checkpoints"] == ["sd15/dreamshaper.safetensors"] and listing["loras"] == []
        (models / "loras").mkdir()
        (models / "loras" / "style.safetensors").write_bytes(b"x")  # copied in while it runs: no restart
        assert (await client.get("/api/models/loras")).json() == ["style.safetensors"]
        unknown = await client.get("/api/models/checkpoint")
        assert unknown.status_code == 404
        assert "no kind of model 'checkpoint'; the kinds are checkpoints, vae, loras" in unknown.json()["detail"]
    async with fake_server(tmp_path / "other") as client:  # no folders: every kind, none listed
        assert (await client.get("/api/models")).json() == {kind: [] for kind in KINDS}


async def test_a_model_file_says_its_size_and_a_checkpoint_its_family(tmp_path):
    """GET /api/models/{kind}/{name}: a checkpoint's family is read off its tensor names (the header alone), so a
    client can pick the preset that runs it; a file in checkpoints/ that is no checkpoint says what it is instead."""
    import torch
    from safetensors.torch import save_file

    models = tmp_path / "models"
    (models / "checkpoints" / "xl").mkdir(parents=True)
    (models / "loras").mkdir()
    one, sd15 = torch.zeros(1), "cond_stage_model.transformer.text_model.final_layer_norm.weight"
    save_file({sd15: one}, models / "checkpoints" / "a.safetensors")
    save_file({"conditioner.embedders.1.model.ln_final.weight": one}, models / "checkpoints" / "xl" / "b.safetensors")
    save_file({"cond_stage_model.model.ln_final.weight": one}, models / "checkpoints" / "v2.safetensors")
    save_file({"lora_unet_down_blocks_0.lora_down.weight": one}, models / "checkpoints" / "style.safetensors")
    save_file({"lora_unet_down_blocks_0.lora_down.weight": one}, models / "loras" / "ink.safetensors")
    (models / "checkpoints" / "broken.safetensors").write_bytes(b"not a safetensors file")
    async with fake_server(tmp_path, model_dirs=[models]) as client:
        sd15 = (await client.get("/api/models/checkpoints/a.safetensors")).json()
        assert sd15 == {"kind": "checkpoints", "name": "a.safetensors", "family": "sd15", "problem": None,
                        "bytes": (models / "checkpoints" / "a.safetensors").stat().st_size}
        assert (await client.get("/api/models/checkpoints/xl/b.safetensors")).json()["family"] == "sdxl"
        assert (await client.get("/api/models/checkpoints/xl%5Cb.safetensors")).json()["name"] == "xl/b.safetensors"
        assert (await client.get("/api/models/checkpoints/v2.safetensors")).json()["family"] == "sd2"
        lora = (await client.get("/api/models/checkpoints/style.safetensors")).json()
        assert lora["family"] is None and lora["problem"].startswith("this file is a LoRA")
        broken = (await client.get("/api/models/checkpoints/broken.safetensors")).json()
        assert broken["family"] is None and "broken.safetensors" in broken["problem"]
        other = (await client.get("/api/models/loras/ink.safetensors")).json()
        assert other["family"] is None and other["problem"] is None  # a LoRA without cross-attention keys
        missing = await client.get("/api/models/checkpoints/xl/c.safetensors")
        assert missing.status_code == 404
        assert missing.json()["detail"] == ("no checkpoints model 'xl/c.safetensors' in the model folders (did you "
                                            "mean xl/b.safetensors?); GET /api/models/checkpoints lists them")
        for outside in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "xl/..%2F..%2Fa.safetensors"):
            assert (await client.get(f"/api/models/checkpoints/{outside}")).status_code == 404, outside
        assert (await client.get("/api/models/checkpoint/a.safetensors")).status_code == 404


async def test_a_model_folder_says_the_family_of_the_pipeline_it_names(tmp_path):
    """A diffusers folder's family is its model_index.json's pipeline's (FLUX.1's, SDXL's, SD 1.x's; 2.x's by its
    text encoder's width), so a client can find a FLUX.1 folder for a FLUX.1 graph; another pipeline, or a folder
    whose index cannot be read, has none."""
    import json

    folders = {"flux-dev": "FluxPipeline", "xl": "StableDiffusionXLPipeline", "v15": "StableDiffusionPipeline",
               "v21": "StableDiffusionPipeline", "kandinsky": "KandinskyV22Pipeline", "broken": None}
    for name, pipeline in folders.items():
        folder = tmp_path / "models" / "diffusers" / name
        folder.mkdir(parents=True)
        index = "{not json" if pipeline is None else json.dumps({"_class_name": pipeline})
        (folder / "model_index.json").write_text(index)
    (tmp_path / "models" / "diffusers" / "v21" / "text_encoder").mkdir()
    (tmp_path / "models" / "diffusers" / "v21" / "text_encoder" / "config.json").write_text('{"hidden_size": 1024}')
    async with fake_server(tmp_path, model_dirs=[tmp_path / "models"]) as client:
        families = {name: (await client.get(f"/api/models/diffusers/{name}")).json()["family"] for name in folders}
    assert families == {"flux-dev": "flux", "xl": "sdxl", "v15": "sd15", "v21": "sd2", "kandinsky": None,
                        "broken": None}


async def test_a_controlnet_file_says_the_family_its_cross_attention_width_tells(tmp_path):
    """SD 1.x ControlNets attend to 768-wide text embeddings, 2.x's to 1024, SDXL's to 2048 (as the shipped UNet
    configs say); FLUX.1's have a trunk of transformer blocks; a file with no cross-attention says so."""
    import torch
    from safetensors.torch import save_file

    models = tmp_path / "models"
    (models / "controlnet").mkdir(parents=True)
    key = "control_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    for name, width in (("canny15", 768), ("depth21", 1024), ("cannyxl", 2048)):
        save_file({key: torch.zeros(8, width, dtype=torch.float16)}, models / "controlnet" / f"{name}.safetensors")
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(1)}, models / "controlnet" / "odd.safetensors")
    for name, trunk in (("xlabs-canny", "double_blocks.0.img_attn.qkv.weight"),
                        ("instantx-union", "transformer_blocks.0.attn.to_q.weight")):  # FLUX.1's: XLabs', diffusers'
        save_file({trunk: torch.zeros(1), "controlnet_blocks.0.weight": torch.zeros(1)},
                  models / "controlnet" / f"{name}.safetensors")
    async with fake_server(tmp_path, model_dirs=[models]) as client:
        families = {name: (await client.get(f"/api/models/controlnet/{name}.safetensors")).json()["family"]
                    for name in ("canny15", "depth21", "cannyxl", "xlabs-canny", "instantx-union")}
        assert families == {"canny15": "sd15", "depth21": "sd2", "cannyxl": "sdxl", "xlabs-canny": "flux",
                            "instantx-union": "flux"}
        odd = (await client.get("/api/models/controlnet/odd.safetensors")).json()
        assert odd["family"] is None and "it has no cross-attention" in odd["problem"]


async def test_a_lora_says_the_family_its_cross_attention_width_tells(tmp_path):
    """kohya's names and PEFT's alike: the down projection of a cross-attention key reads the text embeddings (768
    wide for SD 1.x, 2048 for SDXL); a LoRA of the text encoder alone has no family, and no problem either."""
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "models" / "loras"
    folder.mkdir(parents=True)
    kohya = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    peft = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"
    save_file({kohya: torch.zeros(4, 2048)}, folder / "xl-style.safetensors")
    save_file({peft: torch.zeros(4, 768)}, folder / "sd-style.safetensors")
    save_file({"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 768)},
              folder / "words.safetensors")
    async with fake_server(tmp_path, model_dirs=[tmp_path / "models"]) as client:
        described = {name: (await client.get(f"/api/models/loras/{name}.safetensors")).json()
                     for name in ("xl-style", "sd-style", "words")}
        assert {name: info["family"] for name, info in described.items()} == {
            "xl-style": "sdxl", "sd-style": "sd15", "words": None}
        assert described["words"]["problem"] is None


async def test_an_embedding_says_the_family_its_vectors_fit(tmp_path):
    """SD 1.x's text encoder is 768 wide, 2.x's 1024 (as the shipped configs say); SDXL's embeddings hold clip_l and
    clip_g. A1111's .pt layout reads as its .safetensors one; a width no encoder has says so."""
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "models" / "embeddings"
    folder.mkdir(parents=True)
    save_file({"emb_params": torch.zeros(2, 768)}, folder / "easyneg.safetensors")
    torch.save({"string_to_param": {"*": torch.zeros(1, 1024)}, "name": "v2"}, folder / "v2style.pt")
    save_file({"clip_l": torch.zeros(1, 768), "clip_g": torch.zeros(1, 1280)}, folder / "xlneg.safetensors")
    save_file({"emb_params": torch.zeros(1, 512)}, folder / "odd.safetensors")
    async with fake_server(tmp_path, model_dirs=[tmp_path / "models"]) as client:
        families = {name: (await client.get(f"/api/models/embeddings/{name}")).json()["family"]
                    for name in ("easyneg.safetensors", "v2style.pt", "xlneg.safetensors")}
        assert families == {"easyneg.safetensors": "sd15", "v2style.pt": "sd2", "xlneg.safetensors": "sdxl"}
        odd = (await client.get("/api/models/embeddings/odd.safetensors")).json()
        assert odd["family"] is None and "vectors of size 512, and the text encoders' are 768 (sd15)" in odd["problem"]


async def test_a_preset_wired_to_another_familys_checkpoint_is_refused_before_the_job_is_queued(tmp_path):
    """The family is read off the file's tensor names when the workflow is validated: the editor shows it (with the
    preset to use) as soon as the file is picked, and POST /api/jobs queues nothing."""
    import torch
    from safetensors.torch import save_file

    from diffblocks.server.engine import NodeEngine

    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    xl = {"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1)}
    save_file(xl, models / "checkpoints" / "xl.safetensors")
    workflow = {"nodes": {
        "load": {"type": "LoadCheckpoint", "inputs": {"file": "xl.safetensors"}},
        "run": {"type": "preset:sd15-text2image", "inputs": {"components": {"node": "load", "output": "components"},
                                                              "prompt": "a cat"}}}}
    async with fake_server(tmp_path, engine=NodeEngine(None), model_dirs=[models]) as client:
        answer = (await client.post("/api/validate", json={"workflow": workflow})).json()
        assert answer == {"ok": False, "errors": [{"node": "run", "input": "components", "message": (
            f"the components from {models / 'checkpoints' / 'xl.safetensors'} are an SDXL model's; preset "
            "'sd15-text2image' takes a Stable Diffusion 1.x / 2.x model's: use preset:sdxl-text2image")}]}
        assert (await client.post("/api/jobs", json={"workflow": workflow})).status_code == 422
        assert (await client.get("/api/jobs")).json()["jobs"] == []
        workflow["nodes"]["run"]["type"] = "preset:sdxl-text2image"
        assert (await client.post("/api/validate", json={"workflow": workflow})).json() == {"ok": True, "errors": []}


async def test_a_model_name_the_folders_lack_is_refused_before_the_job_is_queued(tmp_path):
    from diffblocks.server.engine import NodeEngine

    models = tmp_path / "models"
    (models / "checkpoints" / "sd15").mkdir(parents=True)
    (models / "checkpoints" / "sd15" / "dreamshaper.safetensors").write_bytes(b"x")
    typo = {"nodes": {"c": {"type": "LoadCheckpoint", "inputs": {"file": "sd15/dreamshapr.safetensors"}}}}
    async with fake_server(tmp_path, engine=NodeEngine(None), model_dirs=[models]) as client:
        answer = (await client.post("/api/validate", json={"workflow": typo})).json()
        assert answer["ok"] is False and [(e["node"], e["input"]) for e in answer["errors"]] == [("c", "file")]
        assert "'sd15/dreamshapr.safetensors' is not in the checkpoints folder" in answer["errors"][0]["message"]
        assert "(did you mean sd15/dreamshaper.safetensors?)" in answer["errors"][0]["message"]
        refused = await client.post("/api/jobs", json={"workflow": typo})
        assert refused.status_code == 422 and "did you mean sd15/dreamshaper.safetensors?" in refused.text
        assert (await client.get("/api/jobs")).json()["jobs"] == []  # nothing queued
        typo["nodes"]["c"]["inputs"]["file"] = "sd15/dreamshaper.safetensors"
        assert (await client.post("/api/validate", json={"workflow": typo})).json() == {"ok": True, "errors": []}


async def test_openapi_document_lists_every_endpoint_and_model(tmp_path):
    async with fake_server(tmp_path) as client:
        document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths) >= {"/api/nodes", "/api/validate", "/api/jobs", "/api/jobs/{job_id}", "/api/uploads",
                          "/api/artifacts/{artifact_id}", "/api/system", "/api/free", "/api/models",
                          "/api/models/{kind}", "/api/models/{kind}/{name}"}
    assert set(paths["/api/jobs/{job_id}"]) == {"get", "delete"}
    schemas = document["components"]["schemas"]
    assert {"JobInfo", "JobRequest", "Workflow", "NodeSpec", "SystemInfo", "UploadResponse", "ValidateResponse"} <= set(schemas)
    assert "schema" in schemas["NodeInputSpec"]["properties"]
    assert paths["/api/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobInfo"}


@pytest.mark.parametrize("body, status, words", [
    (b'{"workflow": {"nodes": ', 400, "not valid JSON"),
    (b'{"priority": 1}', 422, "workflow: Field required"),
    (b'{"workflow": {"nodes": {"a": {"inputs": {}}}}}', 422, "workflow.nodes.a.type: Field required"),
    (b'{"workflow": {"nodes": {"a": {"type": "Nope"}}}}', 422, "node 'a': unknown node type 'Nope'"),
    (b'{"workflow": {"nodes": {}}, "priority": 99999}', 422, "priority: Input should be less than or equal to 1000"),
])
async def test_bad_job_requests_are_4xx_naming_the_problem(tmp_path, body, status, words):
    async with fake_server(tmp_path) as client:
        response = await client.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert words in response.json()["detail"]


async def test_workflow_errors_come_as_a_list(tmp_path):
    async with fake_server(tmp_path) as client:
        response = await client.post("/api/jobs", json={"workflow": workflow(
            a=("Nope", {}), b=("Add", {"a": {"node": "ghost", "output": "value"}}))})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"node": "a", "input": None, "message": "unknown node type 'Nope'"},
                                         {"node": "b", "input": "a", "message": "no node 'ghost'"}]


async def test_oversize_bodies_are_413(tmp_path):
    async with fake_server(tmp_path, max_json_bytes=1000, max_upload_bytes=2000) as client:
        big = {"workflow": workflow(n=("Number", {"value": 1, "pad": "x" * 2000}))}
        response = await client.post("/api/jobs", json=big)
        assert response.status_code == 413 and "the request body is too large" in response.json()["detail"]

        async def chunks():  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b" " * 300
        response = await client.post("/api/validate", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413 and "limit is 1000 bytes" in response.json()["detail"]
        response = await client.post("/api/uploads", files={"file": ("big.png", b"\0" * 5000, "image/png")})
        assert response.status_code == 413 and "the upload is too large" in response.json()["detail"]


async def test_upload_roundtrip_and_refusals(tmp_path):
    async with fake_server(tmp_path, max_pixels=100) as client:
        response = await client.post("/api/uploads", files={"file": ("a.jpg", png(fmt="BMP"), "image/bmp")})
        assert response.status_code == 201
        body = response.json()
        assert body["width"] == 6 and body["height"] == 4
        stored = await client.get(f"/api/artifacts/{body['artifact']}")
        assert stored.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(stored.content)).getpixel((5, 3)) == (1, 2, 3)

        script = await client.post("/api/uploads", files={"file": ("evil.png", b"#!/bin/sh\nrm -rf ~\n", "image/png")})
        assert script.status_code == 415 and "'evil.png' is not a PNG, JPEG" in script.json()["detail"]
        huge = await client.post("/api/uploads", files={"file": ("big.png", png(size=(11, 10)), "image/png")})
        assert huge.status_code == 413 and "11x10 pixels is over the limit of 100" in huge.json()["detail"]
        missing = await client.post("/api/uploads", data={"other": "x"})
        assert missing.status_code == 422 and "file: Field required" in missing.json()["detail"]
        assert len(list((tmp_path / "artifacts").rglob("*"))) == 2  # one folder, one file: nothing refused was kept


@pytest.mark.parametrize("artifact_id, status", [
    ("A" * 64, 400), ("a" * 63, 400), ("..%2F..%2Fetc%2Fpasswd", 404), ("%2E%2E", 400), ("b" * 64, 404)])
async def test_artifact_ids_are_validated(tmp_path, artifact_id, status):
    async with fake_server(tmp_path) as client:
        response = await client.get(f"/api/artifacts/{artifact_id}")
    assert response.status_code == status
    detail = response.json()["detail"]
    assert ("64 lowercase hex" in detail) if status == 400 else ("Not Found" in detail or "no artifact" in detail)


async def test_unknown_job_and_route(tmp_path):
    async with fake_server(tmp_path) as client:
        assert (await client.get("/api/jobs/abc")).json() == {"detail": "no job 'abc' (GET /api/jobs lists them)"}
        assert (await client.get("/api/nothing")).status_code == 404
        assert (await client.get("/api/jobs?status=weird")).status_code == 422


async def test_auto_devices_are_decided_when_the_workers_start(tmp_path):
    from diffblocks.server.settings import resolve_devices

    async with fake_server(tmp_path, devices=["auto"]) as client:
        info = (await client.get("/api/system")).json()
        assert [row["device"] for row in info["devices"]] == resolve_devices(["auto"])


async def test_a_device_the_machine_lacks_is_reported_and_jobs_wait(tmp_path):
    async with fake_server(tmp_path, devices=["cpu", "tpu:0"]) as client:
        info = (await client.get("/api/system")).json()
        assert info["devices"] == [] and info["workers_error"].startswith("--device tpu:0: Expected one of")
        job = (await client.post("/api/jobs", json={"workflow": GOOD})).json()["job"]
        assert (await client.get(f"/api/jobs/{job}")).json()["status"] == "queued"  # for a restart that can run it


async def test_workers_that_fail_to_start_are_reported_with_the_error_type(tmp_path):
    from fake_node_engine import FakeEngine

    class Broken(FakeEngine):
        def executor(self, *args, **kwargs):
            raise RuntimeError("out of memory while loading")

    async with fake_server(tmp_path, engine=Broken()) as client:
        info = (await client.get("/api/system")).json()
        assert info["devices"] == [] and info["workers_error"] == "RuntimeError: out of memory while loading"


async def test_system_and_free(tmp_path):
    async with fake_server(tmp_path) as client:
        manager = client.state.manager
        kept = object.__new__(type("Kept", (), {}))
        manager.add("kept", kept)
        manager.add("unused", type("Unused", (), {})())
        info = (await client.get("/api/system")).json()
        assert info["devices"] == [{"device": "cpu", "job": None}]
        assert info["memory"]["rss_bytes"] > 0 and info["allow_remote_code"] is False and info["workers_error"] is None
        assert sorted(c["class"] for c in info["components"]) == ["Kept", "Unused"]
        assert info["cache"] == {"entries": 0, "bytes": 0, "budget": 10_000}
        client.engine.executors[0].cache["x"] = {}
        assert (await client.get("/api/system")).json()["cache"]["entries"] == 1
        freed = (await client.post("/api/free")).json()
        assert [cid.split("_")[0] for cid in freed["removed_components"]] == ["unused"]
        assert freed["cache"]["entries"] == 0
        assert [c["class"] for c in (await client.get("/api/system")).json()["components"]] == ["Kept"]


async def test_page_is_served_when_built(tmp_path):
    async with fake_server(tmp_path) as client:
        response = await client.get("/")
        assert response.status_code == 200 and "the web page is not built" in response.text
    page = tmp_path / "static"
    page.mkdir()
    (page / "index.html").write_text("<html>editor</html>")
    async with fake_server(tmp_path, static_dir=page) as client:
        assert (await client.get("/")).text == "<html>editor</html>"
        assert (await client.get("/api/nodes")).status_code == 200


async def test_cors_is_closed_unless_an_origin_is_allowed(tmp_path):
    headers = {"origin": "http://elsewhere.example", "access-control-request-method": "POST"}
    async with fake_server(tmp_path) as client:
        response = await client.options("/api/jobs", headers=headers)
        assert "access-control-allow-origin" not in response.headers
    async with fake_server(tmp_path, cors_origins=["http://elsewhere.example"]) as client:
        response = await client.options("/api/jobs", headers=headers)
        assert response.headers["access-control-allow-origin"] == "http://elsewhere.example"
