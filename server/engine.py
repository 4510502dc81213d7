"""The seam between the server and the node engine: what the server calls, in one small class.

The server never imports ``diffblocks.nodes`` elsewhere, so tests can hand ``create_app`` a fake engine and run
the routes, queue and workers without a model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


# the packages whose sources the catalog is read from: a change to any file there makes a new catalog
_SOURCES = ("blocks", "components", "guiders", "modular_pipelines", "nodes", "presets")
_ROOT = Path(__file__).resolve().parent.parent
# the catalog built at set-up (``make setup`` calls ``build_catalog``), like the web page: a
# server's first start answers from it instead of importing torch and building the node types first
BUILT_CATALOG = Path(__file__).resolve().parent / "catalog.json"


def source_fingerprint() -> str:
    """A hash of the names and contents of the package's sources (15 ms for 1 MB), so the same sources give the
    same fingerprint wherever they were copied or checked out."""
    digest = hashlib.sha256()
    for folder in _SOURCES:
        for path in sorted((_ROOT / folder).rglob("*.py")):
            digest.update(f"{path.relative_to(_ROOT)}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def read_catalog(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The catalog stored at ``path`` for sources with ``fingerprint``; None if there is none, or it was built
    from other sources."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stored.get("catalog") if isinstance(stored, dict) and stored.get("fingerprint") == fingerprint else None


def write_catalog(path: Path, fingerprint: str, catalog: dict[str, Any]) -> None:
    """Store ``catalog`` at ``path`` for sources with ``fingerprint`` (written then renamed: never half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "catalog": catalog}, separators=(",", ":")))
    tmp.replace(path)


class NodeEngine:
    """``diffblocks.nodes`` as the server uses it: the catalog, validation, and executors sharing one manager.

    Args:
        cache_dir: where the catalog is kept between starts (keyed by the sources' fingerprint), so a restarted
            server answers ``GET /api/nodes`` before it has built its node types again; None to always build.
    """

    def __init__(self, cache_dir: Path | None = None):
        from .. import nodes

        self._nodes = nodes
        self._fingerprint = source_fingerprint()
        self._cache = None if cache_dir is None else Path(cache_dir) / "catalog.json"

    def stored_catalog(self) -> dict[str, Any] | None:
        """The catalog of these sources that a previous start stored in the data folder, else the one built at
        set-up; None if neither is of these sources."""
        for path in (self._cache, BUILT_CATALOG):
            catalog = read_catalog(path, self._fingerprint) if path is not None else None
            if catalog is not None:
                return catalog
        return None

    def catalog(self) -> dict[str, Any]:
        """The wire format of ``GET /api/nodes``, built (once per process) from the node types; stored for the
        next start."""
        catalog = self._nodes.catalog()
        if self._cache is not None and read_catalog(self._cache, self._fingerprint) is None:
            write_catalog(self._cache, self._fingerprint, catalog)
        return catalog

    def validate(self, workflow: dict[str, Any]) -> list[dict[str, Any]]:
        """Every problem of ``workflow`` as ``{"node", "input", "message"}``; ``[]`` when it can run."""
        return self._nodes.validate(workflow)

    def components_manager(self):
        """The one ``ComponentsManager`` every device's executor shares. The node types are built first (under the
        catalog's lock): the workers' starter importing torch and accelerate while the catalog thread imports them
        for the blocks can fail half-way ("partially initialized module 'accelerate.state'"), and did in CI."""
        self._nodes.node_types()
        from ..components import ComponentsManager

        return ComponentsManager()

    def executor(self, device: str, manager, artifacts, cache_bytes: int, allow_remote_code: bool,
                 previews: bool = True, preview_interval: float = 0.0, model_dirs=()):
        """An ``Executor`` for ``device`` sharing ``manager`` and ``artifacts``."""
        return self._nodes.Executor(components_manager=manager, device=device, artifacts=artifacts,
                                    cache_bytes=cache_bytes, allow_remote_code=allow_remote_code,
                                    preview_every=1 if previews else 0, preview_interval=preview_interval,
                                    model_folders=list(model_dirs))


def build_catalog(path: Path = BUILT_CATALOG) -> str:
    """Write the catalog of these sources to ``path`` unless it is there already; says which it did."""
    fingerprint = source_fingerprint()
    if read_catalog(path, fingerprint) is not None:
        return f"{path}: up to date"
    from .. import nodes

    catalog = nodes.catalog()
    write_catalog(path, fingerprint, catalog)
    return f"{path}: {len(catalog)} node types"
