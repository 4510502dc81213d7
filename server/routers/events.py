"""``WS /api/events[?since=SEQ]``: the event stream, JSON messages numbered by ``seq``."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ...components.errors.server import RequestError
from ..bus import Overflow
from ..state import socket_state

router = APIRouter(tags=["events"])


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """Browsers send no CORS preflight for WebSockets, so the origin is checked here: the page's own, a
    configured one, or none (a program that is not a browser)."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in allowed or "*" in allowed:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


@router.websocket("/events")
async def events(websocket: WebSocket, since: int | None = None) -> None:
    state = socket_state(websocket)
    if not origin_allowed(websocket, state.settings.cors_origins):
        reason = str(RequestError.origin(websocket.headers["origin"]))
        await websocket.close(code=1008, reason=reason[:120])  # a close reason holds at most 123 bytes
        return
    await websocket.accept()
    subscription = state.bus.subscribe(since)
    reader = asyncio.create_task(_until_closed(websocket, subscription))
    try:
        while (text := await subscription.get()) is not None:
            await websocket.send_text(text)
    except Overflow:
        await websocket.close(code=1013, reason=f"too slow; reconnect with ?since={subscription.last_seq}")
    except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away while we were sending
        pass
    finally:
        state.bus.unsubscribe(subscription)
        reader.cancel()


async def _until_closed(websocket: WebSocket, subscription) -> None:
    """Read (and ignore) what the client sends; when it disconnects, end its subscription."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    except (WebSocketDisconnect, RuntimeError):
        pass
    subscription.close()
