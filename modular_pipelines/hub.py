"""Reading and writing pipeline repos: modular (``modular_model_index.json``) and diffusers-format
(``model_index.json``), local folders or Hub repos alike (through huggingface_hub).

A modular index maps each component to ``[library|null, class|null, {repo, subfolder, variant,
revision, type_hint}]``; other keys are pipeline config values. A diffusers-format index maps each
component to ``[library, class]`` with the files in the subfolder of the same name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..components.files import try_resolve_file
from ..components.spec import ComponentSpec
from .errors import ConfigError, MissingFileError

MODULAR_INDEX = "modular_model_index.json"
STANDARD_INDEX = "model_index.json"
MODULAR_CONFIG = "modular_config.json"


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError.unreadable(str(path), err) from err


def find_index(repo: str | os.PathLike, revision: str | None = None) -> tuple[str, dict[str, Any]]:
    """``("modular" | "standard", index)`` for a repo; raises naming both files looked for."""
    for kind, filename in (("modular", MODULAR_INDEX), ("standard", STANDARD_INDEX)):
        path = try_resolve_file(repo, filename, revision=revision)
        if path is not None:
            return kind, read_json(path)
    raise MissingFileError.not_found([f"{repo}/{MODULAR_INDEX}", f"{repo}/{STANDARD_INDEX}"], what="pipeline index")


def _is_component_entry(value: Any) -> bool:
    return isinstance(value, list) and len(value) in (2, 3) and all(v is None or isinstance(v, str) for v in value[:2])


def _type_from(library: str | None, class_name: str | None, fallback: Any) -> Any:
    if class_name is None:
        return fallback
    from ..components.registry import resolve_class

    try:
        return resolve_class(library, class_name)
    except Exception:
        return fallback


def read_pipeline_specs(repo: str | os.PathLike, declared: dict[str, ComponentSpec], revision: str | None = None):
    """Component specs and config values a repo declares: ``({name: ComponentSpec}, {key: value})``."""
    kind, index = find_index(repo, revision)
    specs: dict[str, ComponentSpec] = {}
    config: dict[str, Any] = {}
    for key, value in index.items():
        if key.startswith("_"):
            continue
        if not _is_component_entry(value):
            config[key] = value
            continue
        base = declared.get(key, ComponentSpec(name=key))
        spec = base.copy()
        spec.name = key
        if kind == "modular" and len(value) == 3:
            loading = value[2] or {}
            hint = loading.get("type_hint")
            spec.type_hint = _type_from(*(hint or [None, None]), fallback=spec.type_hint) if hint else spec.type_hint
            spec.repo = loading.get("repo")
            spec.subfolder = loading.get("subfolder") or ""
            spec.variant = loading.get("variant")
            spec.revision = loading.get("revision")
        else:
            if value[1] is None:
                continue
            spec.type_hint = _type_from(value[0], value[1], fallback=spec.type_hint)
            spec.repo, spec.subfolder, spec.revision = str(repo), key, revision
        spec.default_creation_method = "from_pretrained"
        specs[key] = spec
    return specs, config


def _library_of(type_hint: Any) -> tuple[str | None, str | None]:
    if not isinstance(type_hint, type):
        return None, None
    module = type_hint.__module__.split(".")[0]
    return ("diffusers" if module == "diffblocks" else module), type_hint.__name__


def modular_index(pipe) -> dict[str, Any]:
    """The ``modular_model_index.json`` content for a pipeline: its specs and config values."""
    index: dict[str, Any] = {"_class_name": type(pipe.blocks).__name__, "_diffblocks_version": _version()}
    for name, spec in pipe._specs.items():
        if spec.default_creation_method != "from_pretrained":
            continue
        loaded = pipe._components.get(name)
        library, cls = _library_of(type(loaded)) if loaded is not None else (None, None)
        index[name] = [library, cls, {
            "repo": spec.repo, "subfolder": spec.subfolder or None, "variant": spec.variant,
            "revision": spec.revision, "type_hint": list(_library_of(spec.type_hint)) if spec.type_hint else None,
        }]
    index.update(pipe._config_values)
    return index


def _version() -> str:
    from .. import __version__

    return __version__
