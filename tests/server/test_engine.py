"""The engine seam: the catalog stored for the next start, keyed by the sources; executors get the flags."""

import json
import threading

import pytest

from diffblocks.server.engine import NodeEngine


def test_catalog_is_stored_for_the_next_start_of_the_same_sources(tmp_path, monkeypatch):
    # the real fingerprint changes whenever someone edits the package, as others may while tests run
    monkeypatch.setattr("diffblocks.server.engine.source_fingerprint", lambda: "f" * 24)
    first = NodeEngine(tmp_path)
    assert first.stored_catalog() is None
    catalog = first.catalog()
    assert NodeEngine(tmp_path).stored_catalog() == json.loads(json.dumps(catalog))
    assert [p.name for p in tmp_path.iterdir()] == ["catalog-" + "f" * 24 + ".json"]
    assert NodeEngine(None).stored_catalog() is None


def test_executors_get_remote_code_and_preview_flags():
    engine = NodeEngine()
    manager = engine.components_manager()
    strict = engine.executor("cpu", manager, None, 1000, allow_remote_code=False, previews=False)
    trusting = engine.executor("cpu", manager, None, 1000, allow_remote_code=True, preview_interval=0.25)
    assert strict.allow_remote_code is False and strict.preview_every == 0
    assert trusting.preview_every == 1 and trusting.preview_interval == 0.25
    assert trusting.allow_remote_code is True and trusting.components_manager is manager
    assert strict.cache_info()["budget"] == 1000


@pytest.mark.anyio
async def test_a_restarted_server_answers_from_the_stored_catalog_until_it_has_built_its_own(tmp_path):
    from fake_node_engine import CATALOG, FakeEngine
    from server_helpers import fake_server

    release = threading.Event()
    stored = {"Old": {"inputs": {}, "outputs": {}, "category": "x", "description": "stored"}}

    class Restarted(FakeEngine):
        def stored_catalog(self):
            return stored

        def catalog(self):
            release.wait(30)  # building takes until the test has seen the stored catalog
            return CATALOG

    async with fake_server(tmp_path, engine=Restarted()) as client:
        assert (await client.get("/api/nodes")).json() == stored
        release.set()
        client.state.catalog_thread.join(30)
        assert (await client.get("/api/nodes")).json() == CATALOG
