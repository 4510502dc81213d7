"""The engine seam: the catalog stored for the next start, keyed by the sources; executors get the flags."""

import json
import os
import threading

import pytest

from diffblocks.server.engine import NodeEngine, build_catalog


def test_catalog_is_stored_for_the_next_start_of_the_same_sources(tmp_path, monkeypatch):
    # the real fingerprint changes whenever someone edits the package, as others may while tests run
    monkeypatch.setattr("diffblocks.server.engine.source_fingerprint", lambda: "f" * 24)
    monkeypatch.setattr("diffblocks.server.engine.BUILT_CATALOG", tmp_path / "none.json")
    first = NodeEngine(tmp_path)
    assert first.stored_catalog() is None
    catalog = first.catalog()
    assert NodeEngine(tmp_path).stored_catalog() == json.loads(json.dumps(catalog))
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.json"]
    assert NodeEngine(None).stored_catalog() is None
    monkeypatch.setattr("diffblocks.server.engine.source_fingerprint", lambda: "e" * 24)  # a source changed
    assert NodeEngine(tmp_path).stored_catalog() is None


def test_a_first_start_answers_from_the_catalog_built_at_setup_while_it_is_of_these_sources(tmp_path, monkeypatch):
    """``make setup`` builds the catalog next to the server's code (``build_catalog``); a server starting with an
    empty data folder serves it, unless the sources changed since."""
    from diffblocks.nodes import catalog

    built = tmp_path / "built.json"
    monkeypatch.setattr("diffblocks.server.engine.BUILT_CATALOG", built)
    assert "node types" in build_catalog(built) and build_catalog(built).endswith(": up to date")
    data = tmp_path / "data"
    data.mkdir()
    assert NodeEngine(data).stored_catalog() == json.loads(json.dumps(catalog()))
    monkeypatch.setattr("diffblocks.server.engine.source_fingerprint", lambda: "e" * 24)
    assert NodeEngine(data).stored_catalog() is None
    assert "node types" in build_catalog(built)  # built again for the changed sources


def test_the_fingerprint_follows_the_contents_of_the_sources(tmp_path, monkeypatch):
    """Copies and checkouts of the same sources (new modification times) share it; one changed byte does not."""
    import shutil

    from diffblocks.server import engine

    for folder in engine._SOURCES:
        (tmp_path / folder).mkdir()
    shutil.copy(engine._ROOT / "nodes" / "catalog.py", tmp_path / "nodes" / "catalog.py")
    monkeypatch.setattr(engine, "_ROOT", tmp_path)
    before = engine.source_fingerprint()
    os.utime(tmp_path / "nodes" / "catalog.py", (0, 0))
    assert engine.source_fingerprint() == before
    path = tmp_path / "nodes" / "catalog.py"
    path.write_text(path.read_text() + "#")
    assert engine.source_fingerprint() != before


def test_executors_get_remote_code_and_preview_flags():
    engine = NodeEngine()
    manager = engine.components_manager()
    strict = engine.executor("cpu", manager, None, 1000, allow_remote_code=False, previews=False)
    trusting = engine.executor("cpu", manager, None, 1000, allow_remote_code=True, preview_interval=0.25)
    assert strict.allow_remote_code is False and strict.preview_every == 0
    assert trusting.preview_every == 1 and trusting.preview_interval == 0.25
    assert trusting.allow_remote_code is True and trusting.components_manager is manager
    assert strict.cache_info()["budget"] == 1000


def test_the_workers_components_are_made_once_the_node_types_are_built():
    """The workers' starter importing torch and accelerate while the catalog thread imported them for the blocks
    failed half-way in CI ("partially initialized module"): making the components waits for the node types."""
    engine = NodeEngine()
    building, release, made = threading.Event(), threading.Event(), []

    class Building:  # the catalog's node types, being built in another thread
        def node_types(self):
            building.set()
            assert release.wait(30)
            return {}

    engine._nodes = Building()
    starter = threading.Thread(target=lambda: made.append(engine.components_manager()))
    starter.start()
    assert building.wait(30)
    starter.join(0.3)
    assert starter.is_alive() and made == []  # still waiting for the node types
    release.set()
    starter.join(30)
    assert len(made) == 1 and type(made[0]).__name__ == "ComponentsManager"


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
