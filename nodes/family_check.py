"""A preset wired to another model family's models (an SDXL checkpoint into ``preset:sd15-text2image``, an SD 1.x
ControlNet file into ``preset:sdxl-controlnet``), found when the workflow is checked, before anything runs, so a node
UI can say which preset to use as soon as the model is picked: a checkpoint file's family is read off its tensor
names (a safetensors header), a ControlNet file's off its cross-attention width, a local model folder's off its
``model_index.json``. What only a run can tell (a Hub repo's models, components made in a node) the preset checks
when it runs (``block_nodes``)."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from .keys import file_stamp
from .model_files import ModelFolders

CHECKPOINT_FAMILIES = {"sd15": "sd15", "sd2": "sd15", "sdxl": "sdxl"}  # a checkpoint's family -> its presets'
# a model folder's pipeline class (model_index.json's _class_name), by its start -> its presets' family, longest first
PIPELINE_FAMILIES = (("StableDiffusionXL", "sdxl"), ("StableDiffusion", "sd15"), ("Flux", "flux"))
LOADERS = {"LoadCheckpoint": ("file", "checkpoints"), "LoadComponents": ("repo", "diffusers")}  # input, folder kind


def family_problems(workflow: dict, folders: ModelFolders | None = None) -> list[dict]:
    """A problem on the ``components`` input of each preset node whose models come, through nodes that pass a
    bundle on (LoadLoRA, LoadTextualInversion, ...), from a ``LoadCheckpoint`` file or a ``LoadComponents`` model
    folder of another family; and on its ``controlnet`` input when a ``LoadControlNet`` file for another family
    feeds it."""
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
        inputs = spec.get("inputs") or {}
        source = _source(nodes, types, inputs.get("components"), folders)
        given = _family(*source) if source else None
        if given is not None and given != takes:
            instead = f"{given}-{task}" if f"preset:{given}-{task}" in types else None
            error = ComponentTypeError.other_family(preset.removeprefix("preset:"), source[1], FAMILIES[given],
                                                    FAMILIES[takes], instead)
            found.append(problem(node_id, "components", str(error)))
        file = _controlnet_file(nodes, inputs.get("controlnet"), folders)
        given = _family("LoadControlNet", *file) if file else None
        if given is not None and given != takes:
            error = ComponentTypeError.other_family_controlnet(preset.removeprefix("preset:"), file[0],
                                                               FAMILIES[given], FAMILIES[takes])
            found.append(problem(node_id, "controlnet", str(error)))
    return found


def _controlnet_file(nodes: dict, link: Any, folders: ModelFolders | None) -> tuple[str, str] | None:
    """``(path, stamp)`` of the file a LoadControlNet node wired to ``link`` loads; None for anything else (a
    folder, a Hub id, another node)."""
    source = nodes.get(link.get("node")) if isinstance(link, dict) else None
    if not isinstance(source, dict) or source.get("type") != "LoadControlNet":
        return None
    path = (source.get("inputs") or {}).get("repo")
    if not isinstance(path, str):
        return None
    if folders and (named := folders.resolve("controlnet", path)) is not None:
        path = str(named)
    stamp = file_stamp(path) if os.path.isfile(path) else None
    return (path, stamp) if stamp is not None else None


def _source(nodes: dict, types: dict, link: Any, folders: ModelFolders | None) -> tuple[str, str, str] | None:
    """``(loader type, path, stamp)`` of the checkpoint file or model folder a ``components`` wire comes from,
    followed up through nodes that take a bundle and give it on; None when it comes from anything else (a Hub id),
    or names nothing here. A folder's stamp is its model_index.json's. ``types``: the catalog's node types."""
    for _ in range(len(nodes) + 1):  # a cycle (refused elsewhere) ends here too
        if not (isinstance(link, dict) and isinstance(nodes.get(link.get("node")), dict)):
            return None
        source = nodes[link["node"]]
        inputs, loader = source.get("inputs") or {}, source.get("type")
        if loader in LOADERS:
            name, kind = LOADERS[loader]
            path = inputs.get(name, "embedded" if loader == "LoadComponents" else None)
            if not isinstance(path, str):
                return None
            if path == "embedded":
                path = _embedded()
            elif folders and (named := folders.resolve(kind, path)) is not None:
                path = str(named)
            stamp = file_stamp(path if loader == "LoadCheckpoint" else os.path.join(path, "model_index.json"))
            return (loader, path, stamp) if stamp is not None else None
        node = types.get(loader)
        if node is None or link.get("output") != "components" or "components" not in node.inputs:
            return None
        link = inputs.get("components")
    return None


@functools.cache
def _embedded() -> str:
    from ..presets import embedded_model_path

    return str(embedded_model_path())


@functools.lru_cache(maxsize=64)
def _family(loader: str, path: str, stamp: str) -> str | None:
    """The presets' family of the checkpoint or ControlNet file or model folder at ``path`` as it is at ``stamp``;
    None when it cannot be told here (a file that is no checkpoint, a pipeline of no preset: its loader says what it
    is)."""
    from ..components.checkpoints import file_family
    from ..components.families import controlnet_family
    from ..components.errors import DiffblocksError

    if loader in ("LoadCheckpoint", "LoadControlNet"):
        try:
            return CHECKPOINT_FAMILIES.get((file_family if loader == "LoadCheckpoint" else controlnet_family)(path))
        except DiffblocksError:
            return None
    try:
        with open(os.path.join(path, "model_index.json"), encoding="utf-8") as handle:
            class_name = json.load(handle).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None
    return next((family for start, family in PIPELINE_FAMILIES if str(class_name).startswith(start)), None)
