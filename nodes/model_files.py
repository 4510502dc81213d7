"""Model folders laid out as ComfyUI's ``models/``: the files a loader can name, by kind.

A server started with ``--models-dir DIR`` (as often as there are folders; an existing ComfyUI's or AUTOMATIC1111's
``models/`` works as it is) lists ``checkpoints/``, ``vae/``, ``loras/``, ``diffusion_models/`` (and the older
``unet/``), ``controlnet/``, ``diffusers/`` and ``embeddings/`` under each (or A1111's ``Stable-diffusion/``,
``VAE/``, ``Lora/``, ``ControlNet/``), and the loaders' inputs that name a model (their schema says which kind, ``"x-model-folder"``)
take a name from those lists: ``sd15/dreamshaper_8.safetensors`` is the file under the first folder that has it.
Any other value (a full path, a Hub id, ``embedded``) means what it meant before.

Names are looked up, never joined blindly: an absolute name, or one with ``..``, names nothing here. Links inside
a folder are followed (linking a shared drive's models in is how many installs are laid out); the folders and
what they link to are the server's operator's choice, the names are the client's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..components.files import WEIGHTS_SUFFIXES

SCHEMA_KEY = "x-model-folder"  # the JSON-schema annotation on a loader input: which kind of model it names
MODEL_MARKERS = ("model_index.json", "modular_model_index.json", "config.json")  # a model folder has one of these
MAX_DEPTH = 8  # subfolders followed below a kind's folder (links can make cycles)
MAX_ENTRIES = 10_000  # names listed per kind


@dataclass(frozen=True)
class Kind:
    """One kind of model: the subfolders that hold it and whether its entries are files, model folders or both."""

    folders: tuple[str, ...]
    files: bool = True
    model_folders: bool = False


# ComfyUI's folder names first, then AUTOMATIC1111's (its models/ works as well)
KINDS = {
    "checkpoints": Kind(("checkpoints", "Stable-diffusion")),
    "vae": Kind(("vae", "VAE")),
    "loras": Kind(("loras", "Lora")),
    "diffusion_models": Kind(("diffusion_models", "unet")),
    "controlnet": Kind(("controlnet", "ControlNet"), model_folders=True),
    "diffusers": Kind(("diffusers",), files=False, model_folders=True),
    "embeddings": Kind(("embeddings",)),
    "ipadapter": Kind(("ipadapter",)),
    "clip_vision": Kind(("clip_vision",), model_folders=True),
}


def model_input(schema: dict, kind: str) -> dict:
    """``schema`` (a loader input's) marked as naming a model of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    return {**schema, SCHEMA_KEY: kind}


class ModelFolders:
    """The model folders a server was given, in order: a name found in two is the first one's."""

    def __init__(self, roots: Iterable[str | os.PathLike]):
        self.roots = [Path(root).expanduser() for root in roots]

    def __bool__(self) -> bool:
        return bool(self.roots)

    def folders(self, kind: str) -> list[Path]:
        """The folders that hold ``kind`` under every root, those that exist."""
        return [root / sub for root in self.roots for sub in KINDS[kind].folders if (root / sub).is_dir()]

    def names(self, kind: str) -> list[str]:
        """Every name of ``kind`` (``/``-separated, relative to its folder), sorted; read from disk on each call."""
        found: dict[str, None] = {}
        for name in (name for folder in self.folders(kind) for name in _walk(folder, KINDS[kind])):
            found.setdefault(name)
            if len(found) >= MAX_ENTRIES:
                break
        return sorted(found, key=lambda name: (name.lower(), name))

    def listing(self) -> dict[str, list[str]]:
        """``{kind: names}`` for every kind."""
        return {kind: self.names(kind) for kind in KINDS}

    def resolve(self, kind: str, name: str) -> Path | None:
        """The file or model folder ``name`` is in the first folder of ``kind`` that has it; None when none does,
        or when ``name`` could reach outside the folders (absolute, ``..``, a drive)."""
        parts = _safe_parts(name)
        if parts is None:
            return None
        spec = KINDS[kind]
        for folder in self.folders(kind):
            candidate = folder.joinpath(*parts)
            if _is_entry(candidate, spec):
                return candidate
        return None

    def describe(self, kind: str, name: str) -> dict | None:
        """What a client needs to know of the entry ``name`` of ``kind`` (None when there is none): its size, and
        for a checkpoint, ControlNet, LoRA or embedding file the family it is of (``sd15``, ``sd2``, ``sdxl``, read
        off its tensor names and shapes: a safetensors file's header, a pickle memory-mapped; see
        ``components.families``), or ``problem``, why it has none (a LoRA in checkpoints/, a damaged file); for a
        diffusers model folder, the family of the pipeline it names (``flux`` too), or None."""
        path = self.resolve(kind, name)
        if path is None:
            return None
        info = {"kind": kind, "name": name.replace("\\", "/"), "bytes": path.stat().st_size if path.is_file() else None,
                "family": None, "problem": None}
        if kind == "diffusers":
            from ..components.families import folder_family

            info["family"] = folder_family(path)
        elif kind in ("checkpoints", "controlnet", "embeddings", "loras") and path.is_file():
            from ..components.checkpoints import file_family
            from ..components.errors.base import DiffblocksError
            from ..components.families import controlnet_family, embedding_family, lora_family

            read = {"checkpoints": file_family, "controlnet": controlnet_family, "embeddings": embedding_family,
                    "loras": lora_family}[kind]
            try:
                info["family"] = read(path)
            except DiffblocksError as err:
                info["problem"] = str(err)
        return info


def _safe_parts(name: str) -> tuple[str, ...] | None:
    """The parts of ``name`` (``/`` or, as ComfyUI on Windows writes them, ``\\``), or None when it is absolute,
    has a drive, an empty, ``.`` or ``..`` part."""
    if not isinstance(name, str) or not name or "\x00" in name or ":" in name:
        return None
    name = name.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", ".", "") for part in name.split("/")):
        return None
    return path.parts


def _is_entry(path: Path, spec: Kind) -> bool:
    if spec.files and path.suffix.lower() in WEIGHTS_SUFFIXES and path.is_file():
        return True
    return spec.model_folders and path.is_dir() and any((path / marker).is_file() for marker in MODEL_MARKERS)


def _walk(folder: Path, spec: Kind, prefix: str = "", depth: int = 0) -> Iterable[str]:
    """The entries under ``folder``: weights files and model folders (not what is inside a model folder)."""
    try:
        children = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:  # unreadable, or gone meanwhile
        return
    for child in children:
        if child.name.startswith("."):
            continue
        path, name = Path(child.path), prefix + child.name
        if _is_entry(path, spec):
            yield name
        elif depth < MAX_DEPTH and child.is_dir():
            yield from _walk(path, spec, name + "/", depth + 1)


def model_problems(workflow: dict, folders: ModelFolders) -> list[dict]:
    """A problem for each model input whose value is surely meant as a name in ``folders`` and names nothing there
    (nor a path on this machine): a name with no folder part (a Hub id has one), or whose first part is a subfolder
    of that kind's folders. Other values are paths or Hub ids, for the loader to find. ``[]`` without folders."""
    from ..components.errors.base import _did_you_mean
    from ..components.errors.nodes import problem
    from .catalog import node_types

    if not folders:
        return []
    types, found = node_types(), []
    for node_id, spec in (workflow.get("nodes") or {}).items():
        node = types.get(spec.get("type")) if isinstance(spec, dict) else None
        for name, value in ((spec.get("inputs") or {}).items() if node is not None else ()):
            kind = node.inputs[name].schema.get(SCHEMA_KEY) if name in node.inputs else None
            if kind is None or not _meant_as_name(folders, kind, value) or folders.resolve(kind, value) is not None:
                continue
            held = folders.folders(kind)
            if held:
                where = f"in the {kind} folder{'s' if len(held) > 1 else ''} ({', '.join(map(str, held))})"
            else:
                where = (f"there: no {'/ or '.join(KINDS[kind].folders)}/ in the model folder"
                         f"{'s' if len(folders.roots) > 1 else ''} ({', '.join(map(str, folders.roots))})")
            found.append(problem(node_id, name, f"'{value}' is not {where}{_did_you_mean(value, folders.names(kind))}; "
                                 f"expected one of its files, a path or a Hub id"))
    return found


def _meant_as_name(folders: ModelFolders, kind: str, value) -> bool:
    parts = _safe_parts(value) if isinstance(value, str) and value != "embedded" else None
    if parts is None or Path(value).expanduser().exists():
        return False
    return len(parts) == 1 or any((folder / parts[0]).is_dir() for folder in folders.folders(kind))
