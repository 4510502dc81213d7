"""ComponentSpec and ConfigSpec: what a block needs, and where a component comes from."""

from __future__ import annotations

LOAD_ID_ATTR = "_diffblocks_load_id"


def load_id_of(component: object) -> str | None:
    """The ``"repo|subfolder|variant|revision"`` id a component was loaded with, or None if unknown."""
    return getattr(component, LOAD_ID_ATTR, None)
