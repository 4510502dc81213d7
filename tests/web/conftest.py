"""Browser tests of the node editor: Debian's chromium driven by Playwright against a real `diffblocks serve`.

Skipped with the reason when chromium, Playwright, the server's extra or the built page is missing
(`make setup` installs all four).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "server" / "static" / "index.html"
SHOTS = Path(os.environ.get("DIFFBLOCKS_WEB_SHOTS", "/tmp/web-shots"))
SERVER_START_S = 240  # the first GET /api/nodes imports every block module
EMBEDDED = ROOT / "presets" / "tiny_digits"


def _missing() -> str | None:
    if shutil.which("chromium") is None:
        return "chromium is not installed (`apt-get install chromium`; `make setup` does it when apt is available)"
    if find_spec("playwright") is None:
        return "playwright is not installed (`pip install playwright`; `make setup` does it)"
    if find_spec("fastapi") is None or find_spec("uvicorn") is None:
        return "the server extra is not installed (`pip install -e .[server]`)"
    if not PAGE.is_file():
        return f"the web page is not built ({PAGE.relative_to(ROOT)} is missing: `cd web && npm ci && npm run build`)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`diffblocks serve` on 127.0.0.1 in a subprocess, with the embedded model; `start()` returns once
    GET /api/nodes answers."""

    def __init__(self, data_dir: Path, port: int | None = None, flags: tuple[str, ...] = ()):
        self.data_dir, self.flags = data_dir, flags
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        command = [sys.executable, "-m", "diffblocks.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--device", "cpu", "--model", "embedded", "--data-dir", str(self.data_dir / "data"), *self.flags]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir)
        log.close()
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"diffblocks serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/nodes", timeout=60) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)  # polling the port while the server starts, not waiting for a result
        raise RuntimeError(f"diffblocks serve did not answer within {SERVER_START_S} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    # the API, for running the same workflow without the page
    def request(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            raw = response.read()
            kind = response.headers.get("Content-Type", "")
        return json.loads(raw) if "json" in kind else raw

    def run_job(self, workflow: dict, timeout_s: float = 300) -> dict:
        """POST /api/jobs, then follow GET /api/jobs/{id} until the job ends."""
        job = self.request("POST", "/api/jobs", {"workflow": workflow, "priority": 0})["job"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = self.request("GET", f"/api/jobs/{job}")
            if info["status"] in ("done", "failed", "cancelled"):
                return info
            time.sleep(0.05)  # polling the job's status
        raise AssertionError(f"job {job} did not end within {timeout_s} s")


@pytest.fixture(scope="session")
def make_server():
    """The Server class, for a test that needs a server of its own."""
    return Server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = Server(tmp_path_factory.mktemp("serve")).start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Playwright's sync API runs an event loop while it is open, so it is closed after
    each module: tests that start their own (tests/server's anyio tests) may run after these in one session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: chromium refuses to start sandboxed as root (CI containers)
        launched = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh page that records console errors and uncaught exceptions in `page.problems`."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    opened = context.new_page()
    opened.problems = []
    opened.on("console", lambda message: message.type == "error" and opened.problems.append(message.text))
    opened.on("pageerror", lambda error: opened.problems.append(str(error)))
    opened.set_default_timeout(60_000)
    yield opened
    context.close()


@pytest.fixture(scope="session")
def shots():
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


# the model folders the import tests (test_import*.py) serve, and their server
@pytest.fixture(scope="session")
def models(tmp_path_factory, sdxl_repo):
    """checkpoints/sd15/digits.safetensors: the embedded model as an original checkpoint; checkpoints/xl.safetensors:
    a file named as an SDXL checkpoint's tensors are (its family is all that is read of it here); diffusers/digits:
    the embedded model's folder, the configs the checkpoint is read with; loras/ink.safetensors: a LoRA for it;
    vae/mse.safetensors: its VAE, moved a little, alone in the original layout; controlnet/edges.safetensors: a
    ControlNet for it in the original layout; embeddings/inkstyle.safetensors: an embedding for it;
    ipadapter/ip-adapter_digits.safetensors and clip_vision/digits-vit/: an IP-Adapter for it and its image encoder;
    checkpoints/tinyxl.safetensors and diffusers/tinyxl: a tiny SDXL model, as a checkpoint and its configs."""
    import diffusers
    import torch
    from safetensors.torch import save_file

    from tiny_checkpoints import fine_tune, to_original, write_checkpoint, write_vae
    from tiny_lora import make_lora

    from diffblocks.components.checkpoint_names import controlnet_table, vae_table

    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints" / "sd15").mkdir(parents=True)
    (root / "diffusers").mkdir()
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(EMBEDDED), safety_checker=None)
    write_checkpoint(pipe, root / "checkpoints" / "sd15" / "digits.safetensors")
    xl = {"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1)}
    save_file(xl, root / "checkpoints" / "xl.safetensors")
    (root / "diffusers" / "digits").symlink_to(str(EMBEDDED), target_is_directory=True)
    (root / "loras").mkdir()
    save_file(make_lora(pipe, "kohya", seed=1, alpha=2.0), root / "loras" / "ink.safetensors")
    (root / "vae").mkdir()
    vae = fine_tune(diffusers.StableDiffusionPipeline.from_pretrained(str(EMBEDDED), safety_checker=None),
                    3).vae
    write_vae(root / "vae" / "mse.safetensors", to_original(vae.state_dict(), vae_table(vae.config)))
    from tiny_ip_adapter import ip_adapter_state_dict, save_ip_adapter, tiny_image_encoder

    save_ip_adapter(ip_adapter_state_dict(pipe.unet, "plus", seed=2), root / "ipadapter" / "ip-adapter_digits.safetensors")
    tiny_image_encoder().save_pretrained(root / "clip_vision" / "digits-vit")
    (root / "embeddings").mkdir()
    width = pipe.text_encoder.config.hidden_size
    save_file({"emb_params": torch.randn(2, width, generator=torch.Generator().manual_seed(8))},
              root / "embeddings" / "inkstyle.safetensors")
    save_file({"emb_params": torch.zeros(2, 768)}, root / "embeddings" / "easyneg.safetensors")  # SD 1.x's width
    kohya = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    save_file({kohya: torch.zeros(4, 2048)}, root / "loras" / "xl-detail.safetensors")  # SDXL's cross-attention width
    (root / "controlnet").mkdir()
    torch.manual_seed(6)
    net = diffusers.ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(8, 16, 32))
    with torch.no_grad():
        for param in net.parameters():  # from_unet zero-initialises the output convolutions: make them matter
            param.add_(0.05 * torch.randn_like(param))
    write_vae(root / "controlnet" / "edges.safetensors",
              {f"control_model.{k}": v for k, v in to_original(net.state_dict(), controlnet_table(net.config)).items()})
    xl_pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(sdxl_repo)
    write_checkpoint(xl_pipe, root / "checkpoints" / "tinyxl.safetensors")
    (root / "diffusers" / "tinyxl").symlink_to(sdxl_repo, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def import_server(tmp_path_factory, make_server, models):
    served = make_server(tmp_path_factory.mktemp("serve-import"), flags=("--models-dir", str(models))).start()
    yield served
    served.stop()
