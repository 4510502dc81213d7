"""Helpers of the server tests: the app over the fake engine with an httpx client, and waiting on events."""

import asyncio
import json
from contextlib import asynccontextmanager

import httpx
from fake_node_engine import FakeEngine

from diffblocks.server import ServerSettings, create_app


@asynccontextmanager
async def fake_server(data_dir, engine=None, static_dir=None, **settings):
    """The app over the fake engine, its lifespan running, with an httpx client over ASGI
    (``client.state`` is the server's state, ``client.engine`` the fake engine)."""
    engine = engine or FakeEngine()
    app = create_app(ServerSettings(data_dir=data_dir, **settings), engine=engine,
                     static_dir=static_dir or data_dir / "no-page")
    async with app.router.lifespan_context(app):
        app.state.server.pool.ready.wait(60)  # the workers run: the tests that follow see them
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.state, client.engine = app.state.server, engine
            yield client


async def events_until(subscription, job, kind, timeout=30.0):
    """Events from ``subscription`` up to and including ``kind`` for ``job`` (the engine's own signal)."""
    seen = []
    while True:
        text = await asyncio.wait_for(subscription.get(), timeout)
        assert text is not None, "the bus closed"
        event = json.loads(text)
        seen.append(event)
        if event["job"] == job and event["type"] == kind:
            return seen


def workflow(**nodes):
    """``{"nodes": {id: {"type": t, "inputs": {...}}}}`` from ``id=(type, inputs)``."""
    return {"nodes": {node_id: {"type": kind, "inputs": inputs} for node_id, (kind, inputs) in nodes.items()}}
