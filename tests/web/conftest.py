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
