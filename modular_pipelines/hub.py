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
from ..components.registry import library_of
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


def modular_index(pipe) -> dict[str, Any]:
    """The ``modular_model_index.json`` content for a pipeline: its specs and config values."""
    index: dict[str, Any] = {"_class_name": type(pipe.blocks).__name__, "_diffblocks_version": _version()}
    for name, spec in pipe._specs.items():
        if spec.default_creation_method != "from_pretrained":
            continue
        loaded = pipe._components.get(name)
        library, cls = library_of(type(loaded)) if loaded is not None else (None, None)
        index[name] = [library, cls, {
            "repo": spec.repo, "subfolder": spec.subfolder or None, "variant": spec.variant,
            "revision": spec.revision, "type_hint": list(library_of(spec.type_hint)) if spec.type_hint else None,
        }]
    index.update(pipe._config_values)
    return index


def _version() -> str:
    from .. import __version__

    return __version__


# --- whole pipelines ----------------------------------------------------------------------------

# standard diffusers pipelines -> the preset whose AUTO_BLOCKS serve them
STANDARD_PIPELINES = {
    **{name: "diffblocks.presets.stable_diffusion" for name in (
        "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")},
    **{name: "diffblocks.presets.stable_diffusion_xl" for name in (
        "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline")},
    "DDPMPipeline": "diffblocks.presets.ddpm",
}


def _preset_blocks(class_name: str | None, repo):
    import importlib

    from .sequential import SequentialPipelineBlocks

    if class_name not in STANDARD_PIPELINES:
        raise ConfigError(
            f"{repo} is a {class_name or 'pipeline'} repo, which has no diffblocks preset; "
            f"supported: {', '.join(sorted(STANDARD_PIPELINES))}. Build blocks yourself and call blocks.init_pipeline(repo)"
        )
    module = importlib.import_module(STANDARD_PIPELINES[class_name])
    preset = getattr(module, "UNCONDITIONAL_BLOCKS" if class_name == "DDPMPipeline" else "AUTO_BLOCKS")
    return SequentialPipelineBlocks.from_blocks_dict(preset)


def load_blocks(repo, trust_remote_code: bool = False, revision: str | None = None):
    """The blocks a repo describes: its ``modular_config.json`` tree (custom code only when trusted), or
    the family preset for a standard diffusers-format repo."""
    from .remote import BLOCK_FILE, build_tree, load_custom_module, uses_custom_code

    config_path = try_resolve_file(repo, MODULAR_CONFIG, revision=revision)
    if config_path is None:
        _, index = find_index(repo, revision)
        return _preset_blocks(index.get("_class_name"), repo)
    config = read_json(config_path)
    tree = config.get("blocks")
    auto_map = (config.get("auto_map") or {}).get("ModularPipelineBlocks")
    custom = None
    if auto_map or (tree is not None and uses_custom_code(tree)):
        block_path = try_resolve_file(repo, BLOCK_FILE, revision=revision)
        if block_path is None:
            raise MissingFileError.not_found([f"{repo}/{BLOCK_FILE}"], what="custom block code")
        custom = load_custom_module(block_path, repo, trust_remote_code)
    if tree is not None:
        from .remote import build_tree

        return build_tree(tree, custom)
    if auto_map:
        return getattr(custom, auto_map.split(".", 1)[1])()
    raise ConfigError(f"{repo}/{MODULAR_CONFIG} names no blocks (neither 'blocks' nor auto_map)")


def save_pipeline(pipe, directory: str | os.PathLike) -> Path:
    """Write a modular repo: ``modular_model_index.json``, ``modular_config.json`` and custom ``block.py``."""
    from .remote import BLOCK_FILE, custom_source, tree_of

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    source = custom_source(pipe.blocks)
    config: dict[str, Any] = {"_class_name": type(pipe.blocks).__name__, "blocks": tree_of(pipe.blocks)}
    if source is not None:
        (directory / BLOCK_FILE).write_text(source)
        if not type(pipe.blocks).__module__.startswith("diffblocks"):
            config["auto_map"] = {"ModularPipelineBlocks": f"block.{type(pipe.blocks).__qualname__}"}
    (directory / MODULAR_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (directory / MODULAR_INDEX).write_text(json.dumps(modular_index(pipe), indent=2, default=str) + "\n")
    return directory


def push_folder(directory: str | os.PathLike, repo_id: str, private: bool | None = None,
                token: str | None = None, commit_message: str = "Upload with diffblocks", subfolder: str | None = None):
    """Upload a folder to a Hub repo (created if needed) through huggingface_hub."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=str(directory), path_in_repo=subfolder,
                             commit_message=commit_message)
