"""A preset wired to a checkpoint file of another model family (an SDXL file into ``preset:sd15-text2image``), found
when the workflow is checked, before anything runs: the file's family is read off its tensor names (a safetensors
header), so a node UI can say which preset to use as soon as the file is picked. What only a run can tell (a
folder's or Hub repo's models, components made in a node) the preset checks when it runs (``block_nodes``)."""

from __future__ import annotations

import functools
from typing import Any

from .keys import file_stamp
from .model_files import ModelFolders

CHECKPOINT_FAMILIES = {"sd15": "sd15", "sd2": "sd15", "sdxl": "sdxl"}  # a checkpoint's family -> its presets'


def family_problems(workflow: dict, folders: ModelFolders | None = None) -> list[dict]:
    """A problem on the ``components`` input of each preset node whose models come, through nodes that pass a
    bundle on (LoadLoRA, LoadTextualInversion, ...), from a ``LoadCheckpoint`` file of another family."""
    from ..components.errors import ComponentTypeError
    from ..components.errors.nodes import problem
    from .block_nodes import FAMILIES
    from .catalog import node_types

    nodes = workflow.get("nodes") or {}
    types, found = node_types(), []
    for node_id, spec in nodes.items():
        preset = spec.get("type", "") if isinstance(spec, dict) else ""
        takes, _, task = preset.removeprefix("preset:").partition("-")
        if not preset.startswith("preset:") or takes not in FAMILIES:
            continue
        source = _checkpoint_file(nodes, (spec.get("inputs") or {}).get("components"), folders)
        given = CHECKPOINT_FAMILIES.get(_file_family(*source)) if source else None
        if given is None or given == takes:
            continue
        instead = f"{given}-{task}" if f"preset:{given}-{task}" in types else None
        error = ComponentTypeError.other_family(preset.removeprefix("preset:"), source[0], FAMILIES[given],
                                                FAMILIES[takes], instead)
        found.append(problem(node_id, "components", str(error)))
    return found


def _checkpoint_file(nodes: dict, link: Any, folders: ModelFolders | None) -> tuple[str, str] | None:
    """``(path, stamp)`` of the checkpoint file a ``components`` wire comes from, followed up through nodes that
    take a bundle and give it on; None when it comes from anything else, or names no file here."""
    from .catalog import node_types

    types = node_types()
    for _ in range(len(nodes) + 1):  # a cycle (refused elsewhere) ends here too
        if not (isinstance(link, dict) and isinstance(nodes.get(link.get("node")), dict)):
            return None
        source = nodes[link["node"]]
        inputs = source.get("inputs") or {}
        if source.get("type") == "LoadCheckpoint":
            file = inputs.get("file")
            if folders and isinstance(file, str) and (named := folders.resolve("checkpoints", file)) is not None:
                file = str(named)
            stamp = file_stamp(file)
            return (file, stamp) if stamp is not None else None
        node = types.get(source.get("type"))
        if node is None or link.get("output") != "components" or "components" not in node.inputs:
            return None
        link = inputs.get("components")
    return None


@functools.lru_cache(maxsize=64)
def _file_family(path: str, stamp: str) -> str | None:
    """The family of the checkpoint at ``path`` as it is at ``stamp``; None for a file that is no checkpoint (the
    loader says what it is when it runs)."""
    from ..components.checkpoints import file_family
    from ..components.errors import DiffblocksError

    try:
        return file_family(path)
    except DiffblocksError:
        return None
