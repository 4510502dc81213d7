"""A real uvicorn serving the app on 127.0.0.1 (a free port) in a thread, for tests and the benchmark."""

import json
import socket
import threading

import uvicorn

from diffblocks.cli.serve import KEEP_ALIVE_S
from diffblocks.server import ServerSettings, create_app


class ThreadServer(uvicorn.Server):
    """uvicorn with an event set once it listens (no polling for readiness)."""

    def __init__(self, config):
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        self.ready.set()


class LiveServer:
    """``with LiveServer(settings) as server:`` ... ``server.url``, ``server.ws_url``."""

    def __init__(self, settings: ServerSettings, engine=None):
        self.app = create_app(settings, engine=engine)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url, self.ws_url = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}/api/events"
        self.server = ThreadServer(uvicorn.Config(self.app, log_level="warning", ws="websockets-sansio",
                                                  timeout_keep_alive=KEEP_ALIVE_S))  # as diffblocks serve
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        if not self.server.ready.wait(120):
            raise RuntimeError("the server did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()


def events_until(ws, job, kinds=("job.finished", "job.failed", "job.cancelled")):
    """Events from the WebSocket ``ws`` up to ``job``'s end (or its first event of ``kinds``)."""
    seen = []
    while True:
        event = json.loads(ws.recv(timeout=300))
        seen.append(event)
        if event["job"] == job and event["type"] in kinds:
            return seen
