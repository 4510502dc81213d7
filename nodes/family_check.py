"""A preset wired to another model family's models (an SDXL checkpoint into ``preset:sd15-text2image``, an SD 1.x
ControlNet file into ``preset:sdxl-controlnet``), found when the workflow is checked, before anything runs, so a node
UI can say which preset to use as soon as the model is picked: a checkpoint file's family is read off its tensor
names (a safetensors header), a ControlNet file's off its cross-attention width, a local model folder's off its
``model_index.json``. What only a run can tell (a Hub repo's models, components made in a node) the preset checks
when it runs (``block_nodes``)."""

from __future__ import annotations

import functools
import os
from typing import Any

from .keys import file_stamp
from .model_files import ModelFolders

# a file's or model folder's family -> its presets'
CHECKPOINT_FAMILIES = {"sd15": "sd15", "sd2": "sd15", "sdxl": "sdxl", "flux": "flux"}
LOADERS = {"LoadCheckpoint": ("file", "checkpoints"), "LoadComponents": ("repo", "diffusers")}  # input, folder kind
# the nodes loading a file made for one family: input, folder kind, what the file is
FILE_LOADERS = {"LoadControlNet": ("repo", "controlnet", "ControlNet"), "LoadLoRA": ("repo", "loras", "LoRA"),
                "LoadTextualInversion": ("file", "embeddings", "embedding")}


def family_problems(workflow: dict, folders: ModelFolders | None = None) -> list[dict]:
    """A problem on the ``components`` input of each preset node whose models come, through nodes that pass a
    bundle on (LoadLoRA, LoadTextualInversion, ...), from a ``LoadCheckpoint`` file or a ``LoadComponents`` model
    folder of another family; on its ``controlnet`` input when a ``LoadControlNet`` file for another family feeds it;
    and on the file input of a ``LoadLoRA`` or ``LoadTextualInversion`` node whose file is for another family than
    the bundle it goes on."""
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
        link = inputs.get("controlnet")
        source = nodes.get(link.get("node")) if isinstance(link, dict) else None
        file = _file(source, folders) if isinstance(source, dict) and source.get("type") == "LoadControlNet" else None
        given = _family("LoadControlNet", *file) if file else None
        if given is not None and given != takes:
            error = ComponentTypeError.other_family_file("ControlNet", file[0], FAMILIES[given], FAMILIES[takes],
                                                         f"preset '{preset.removeprefix('preset:')}' takes", "controlnet")
            found.append(problem(node_id, "controlnet", str(error)))
    for node_id, spec in nodes.items():  # a LoRA or embedding file on a bundle of another family
        loader = spec.get("type") if isinstance(spec, dict) else None
        file = _file(spec, folders) if loader in ("LoadLoRA", "LoadTextualInversion") else None
        given = _family(loader, *file) if file else None
        source = _source(nodes, types, (spec.get("inputs") or {}).get("components"), folders) if given else None
        takes = _family(*source) if source else None
        if takes is not None and given != takes:
            name, _, what = FILE_LOADERS[loader]
            error = ComponentTypeError.other_family_file(what, file[0], FAMILIES[given], FAMILIES[takes],
                                                         "the components it goes on are", name)
            found.append(problem(node_id, name, str(error)))
    return found


def _file(spec: dict, folders: ModelFolders | None) -> tuple[str, str] | None:
    """``(path, stamp)`` of the file a node of ``FILE_LOADERS`` (``spec``) loads; None for anything else (a folder,
    a Hub id)."""
    name, kind, _ = FILE_LOADERS[spec.get("type")]
    path = (spec.get("inputs") or {}).get(name)
    if not isinstance(path, str):
        return None
    if folders and (named := folders.resolve(kind, path)) is not None:
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
    """The presets' family of the file (a checkpoint, ControlNet, LoRA or embedding: ``loader`` says which) or model
    folder at ``path`` as it is at ``stamp``; None when it cannot be told here (a file that is no checkpoint, a
    pipeline of no preset: its loader says what it is)."""
    from ..components.checkpoints import file_family
    from ..components.errors import DiffblocksError
    from ..components.families import controlnet_family, embedding_family, folder_family, lora_family

    read = {"LoadCheckpoint": file_family, "LoadControlNet": controlnet_family, "LoadLoRA": lora_family,
            "LoadTextualInversion": embedding_family}.get(loader)
    if read is not None:
        try:
            return CHECKPOINT_FAMILIES.get(read(path))
        except DiffblocksError:
            return None
    return CHECKPOINT_FAMILIES.get(folder_family(path))
