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


def source_fingerprint() -> str:
    """A hash of the names, sizes and modification times of the package's sources (a few ms to compute)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for folder in _SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


class NodeEngine:
    """``diffblocks.nodes`` as the server uses it: the catalog, validation, and executors sharing one manager.

    Args:
        cache_dir: where the catalog is kept between starts (keyed by the sources' fingerprint), so a restarted
            server answers ``GET /api/nodes`` before it has built its node types again; None to always build.
    """

    def __init__(self, cache_dir: Path | None = None):
        from .. import nodes

        self._nodes = nodes
        self._cache = None if cache_dir is None else Path(cache_dir) / f"catalog-{source_fingerprint()}.json"

    def stored_catalog(self) -> dict[str, Any] | None:
        """The catalog a previous start of the same sources stored, or None."""
        try:
            return json.loads(self._cache.read_text()) if self._cache is not None else None
        except (OSError, ValueError):
            return None

    def catalog(self) -> dict[str, Any]:
        """The wire format of ``GET /api/nodes``, built (once per process) from the node types; stored for the
        next start."""
        catalog = self._nodes.catalog()
        if self._cache is not None and not self._cache.is_file():
            tmp = self._cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(catalog, separators=(",", ":")))
            tmp.replace(self._cache)
        return catalog

    def validate(self, workflow: dict[str, Any]) -> list[dict[str, Any]]:
        """Every problem of ``workflow`` as ``{"node", "input", "message"}``; ``[]`` when it can run."""
        return self._nodes.validate(workflow)

    def components_manager(self):
        """The one ``ComponentsManager`` every device's executor shares."""
        from ..components import ComponentsManager

        return ComponentsManager()

    def executor(self, device: str, manager, artifacts, cache_bytes: int, allow_remote_code: bool,
                 previews: bool = True, preview_interval: float = 0.0):
        """An ``Executor`` for ``device`` sharing ``manager`` and ``artifacts``."""
        return self._nodes.Executor(components_manager=manager, device=device, artifacts=artifacts,
                                    cache_bytes=cache_bytes, allow_remote_code=allow_remote_code,
                                    preview_every=1 if previews else 0, preview_interval=preview_interval)
