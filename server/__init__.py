"""The node server: HTTP and WebSocket routes over the node engine (``diffblocks serve``).

A thin layer: ``queue`` (jobs persisted in SQLite), ``bus`` (numbered events, replay, bounded client buffers),
``workers`` (one thread per device running the engine's ``Executor``), ``outputs`` (python values as JSON and
artifacts), ``limits`` (request sizes, error bodies) and one router per resource under ``routers``;
``app.create_app`` wires them in one lifespan. Needs the ``server`` extra (FastAPI, uvicorn, python-multipart).
"""

from .app import create_app  # noqa: F401
from .settings import ServerSettings  # noqa: F401

__all__ = ["ServerSettings", "create_app"]
