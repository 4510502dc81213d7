"""Reading and writing pipeline repos: modular (``modular_model_index.json``) and diffusers-format
(``model_index.json``), local folders or Hub repos alike (through huggingface_hub).

A modular index maps each component to ``[library|null, class|null, {repo, subfolder, variant,
revision, type_hint}]``; other keys are pipeline config values. A repo of ``"."`` is the index's own repo
(parts saved with the pipeline). A ``from_config`` part the user changed is saved as its config file,
``{repo: ".", subfolder, type_hint, default_creation_method: "from_config", config_file}``, and is
created from it at init. A diffusers-format index maps each component to ``[library, class]`` with the
files in the subfolder of the same name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ..components.config import ConfigMixin, jsonable, staged_files
from ..components.files import is_local, resolve_file, try_resolve_file
from ..components.registry import library_of
from ..components.spec import ComponentSpec, load_id_of
from ..components.errors import ConfigError, MissingFileError, UnsupportedComponentError

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


def portable_repo(repo: str | os.PathLike | None) -> str | None:
    """A repo as it resolves from anywhere: local folders as absolute paths, Hub ids as they are."""
    if repo is None or not is_local(repo):
        return None if repo is None else str(repo)
    return os.path.abspath(os.path.expanduser(str(repo)))


def _located(loading: dict[str, Any], repo, revision: str | None) -> tuple[str | None, str, str | None]:
    """``(repo, subfolder, revision)`` of an index entry; a repo of ``"."`` (or ``"./x"``) is the index's own
    repo: a folder saved with the pipeline, or a subfolder of the same Hub repo."""
    where, subfolder = loading.get("repo"), loading.get("subfolder") or ""
    if where is None or (where != "." and not where.startswith("./")):
        return portable_repo(where), subfolder, loading.get("revision")
    inner = PurePosixPath(where, subfolder).as_posix()
    inner = "" if inner == "." else inner
    if is_local(repo):
        return portable_repo(repo), inner, None
    return str(repo), inner, loading.get("revision") or revision


def _config_class(library: str | None, class_name: str | None, fallback: Any) -> type:
    """The class of a ``from_config`` entry: a class the registry knows, or the declared one of that name."""
    from ..components.registry import resolve_class, supported_names

    try:
        return resolve_class(library, class_name)
    except UnsupportedComponentError:
        if isinstance(fallback, type) and fallback.__name__ == class_name:
            return fallback
        raise UnsupportedComponentError.unknown_class(library, class_name, supported_names()) from None


def _config_spec(spec: ComponentSpec, value: list, loading: dict[str, Any], repo, revision) -> ComponentSpec:
    """A ``from_config`` spec from an entry whose config file was saved with the pipeline."""
    cls = _config_class(value[0], value[1], spec.type_hint)
    filename = loading.get("config_file") or getattr(cls, "config_name", "config.json")
    if not isinstance(filename, str) or PurePosixPath(filename).name != filename:
        raise ConfigError.bad_value(f"{repo}/{MODULAR_INDEX} entry '{spec.name}'", "config_file", "a file name", filename)
    where, subfolder, rev = _located(loading, repo, revision)
    path = resolve_file(where, filename, subfolder=subfolder or None, revision=rev, what=f"config of component '{spec.name}'")
    spec.type_hint = cls
    spec.config = {k: v for k, v in read_json(path).items() if not k.startswith("_")}
    spec.repo, spec.subfolder, spec.variant, spec.revision = None, "", None, None
    spec.default_creation_method = "from_config"
    return spec


def _modular_spec(spec: ComponentSpec, value: list, repo, revision) -> ComponentSpec:
    loading = value[2] or {}
    if loading.get("default_creation_method") == "from_config":
        return _config_spec(spec, value, loading, repo, revision)
    hint = loading.get("type_hint")
    if isinstance(hint, list) and len(hint) == 2:
        spec.type_hint = _type_from(*hint, fallback=spec.type_hint)
    spec.repo, spec.subfolder, spec.revision = _located(loading, repo, revision)
    spec.variant = loading.get("variant")
    spec.default_creation_method = "from_pretrained"
    return spec


def read_pipeline_specs(repo: str | os.PathLike, declared: dict[str, ComponentSpec], revision: str | None = None):
    """Component specs and config values a repo declares: ``({name: ComponentSpec}, {key: value})``.

    Local repos are recorded as absolute paths, so a pipeline loaded from a relative path still finds its
    parts after a change of directory, and saves paths that resolve from anywhere.
    """
    kind, index = find_index(repo, revision)
    specs: dict[str, ComponentSpec] = {}
    config: dict[str, Any] = {}
    for key, value in index.items():
        if key.startswith("_"):
            continue
        if not _is_component_entry(value):
            config[key] = value
            continue
        spec = declared.get(key, ComponentSpec(name=key)).copy()
        spec.name = key
        if kind == "modular" and len(value) == 3:
            specs[key] = _modular_spec(spec, value, repo, revision)
            continue
        if value[1] is None:
            continue
        spec.type_hint = _type_from(value[0], value[1], fallback=spec.type_hint)
        spec.repo, spec.subfolder, spec.revision = portable_repo(repo), key, revision
        spec.default_creation_method = "from_pretrained"
        specs[key] = spec
    return specs, config


def _version() -> str:
    from .. import __version__

    return __version__


# --- whole pipelines ----------------------------------------------------------------------------

# an index's ``_class_name`` -> the preset whose AUTO_BLOCKS serve it: the standard diffusers pipelines, and
# the modular pipeline names a diffusers modular repo without ``modular_config.json`` is saved with
STANDARD_PIPELINES = {
    **{name: "diffblocks.presets.stable_diffusion" for name in (
        "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
        "StableDiffusionModularPipeline")},
    **{name: "diffblocks.presets.stable_diffusion_xl" for name in (
        "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline",
        "StableDiffusionXLModularPipeline")},
    "DDPMPipeline": "diffblocks.presets.ddpm",
    **{name: "diffblocks.presets.flux" for name in ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline")},
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
    """The blocks a repo describes: its ``modular_config.json`` tree, or the family preset for a standard
    diffusers-format repo.

    Without ``trust_remote_code`` only diffblocks' own block classes are resolved; any other name in the
    tree, or custom code in ``block.py``, is refused before anything of the repo is imported.

    Raises:
        RemoteCodeError: custom code without ``trust_remote_code=True``, or a name that is not a block class.
    """
    from .remote import build_tree, custom_block_class, uses_custom_code

    config_path = try_resolve_file(repo, MODULAR_CONFIG, revision=revision)
    if config_path is None:
        _, index = find_index(repo, revision)
        return _preset_blocks(index.get("_class_name"), repo)
    config = read_json(config_path)
    where = f"{repo}/{MODULAR_CONFIG}"
    tree = config.get("blocks")
    auto_map = (config.get("auto_map") or {}).get("ModularPipelineBlocks")
    if tree is not None:
        trusted = trust_remote_code is True
        custom = _custom_module(repo, revision) if trusted and uses_custom_code(tree) else None
        return build_tree(tree, custom, where, trust_remote_code=trusted)
    if isinstance(auto_map, str):
        custom = _custom_module(repo, revision, trust_remote_code)
        return custom_block_class(custom, auto_map.split(".", 1)[-1], where)()
    raise ConfigError(f"{where} names no blocks (neither 'blocks' nor an auto_map class)")


def _custom_module(repo, revision: str | None, trust_remote_code: bool = True):
    from .remote import BLOCK_FILE, load_custom_module

    block_path = try_resolve_file(repo, BLOCK_FILE, revision=revision)
    if block_path is None:
        raise MissingFileError.not_found([f"{repo}/{BLOCK_FILE}"], what="custom block code")
    return load_custom_module(block_path, repo, trust_remote_code)


# --- saving ---------------------------------------------------------------------------------------


def _location(spec: ComponentSpec, directory: Path) -> dict[str, Any]:
    """Where an index entry points: a part inside the saved folder as ``"."`` + its subfolder there, other
    local folders as absolute paths, Hub repos as their ids."""
    repo, subfolder = portable_repo(spec.repo), spec.subfolder or None
    if repo is not None and is_local(repo):
        inside = Path(os.path.normpath(Path(repo, subfolder or "")))
        if inside == directory or directory in inside.parents:
            relative = inside.relative_to(directory).as_posix()
            repo, subfolder = ".", None if relative == "." else relative
    return {"repo": repo, "subfolder": subfolder, "variant": spec.variant, "revision": spec.revision}


def _config_of(component: Any, spec: ComponentSpec) -> Any:
    config = getattr(component, "config", None)
    return jsonable(dict(config) if isinstance(config, Mapping) else dict(spec.config or {}))


def _is_blocks_default(name: str, component: Any, spec: ComponentSpec, declared: dict[str, ComponentSpec]) -> bool:
    """A from_config component exactly as the blocks create it: not written, so the blocks' default stays."""
    base = declared.get(name)
    if base is None or base.default_creation_method != "from_config" or type(component) is not base.type_hint:
        return False
    default = base.create()
    return _config_of(default, ComponentSpec.from_component(name, default)) == _config_of(component, spec)


def _has_weights(component: Any) -> bool:
    import torch

    return isinstance(component, torch.nn.Module) and next(iter(component.state_dict()), None) is not None


def _config_text(name: str, component: Any, spec: ComponentSpec) -> tuple[str, str]:
    """``(file name, JSON text)`` of a from_config component's config, as its class writes it."""
    try:
        if isinstance(component, ConfigMixin):
            return type(component).config_name, component.config_json()
        data = {"_class_name": type(component).__name__, **jsonable(dict(spec.config or {}))}
        return "config.json", json.dumps(data, indent=2, sort_keys=True) + "\n"
    except (TypeError, ValueError) as err:
        raise ConfigError.unsaveable_component(name, type(component).__name__, f"its config is not JSON ({err})") from err


def _plan_component(pipe, name: str, directory: Path, declared: dict[str, ComponentSpec]):
    """``(index entry or None, writer or None)`` for one component. A component loaded from a repo is
    referenced; one the user made is written into ``directory/<name>``: a config for from_config parts
    (unless it is the blocks' default), weights through its own ``save_pretrained`` for objects in memory."""
    spec, component = pipe._specs[name], pipe._components.get(name)
    library, cls = library_of(type(component)) if component is not None else (None, None)
    if component is None or (spec.repo is not None and load_id_of(component) == spec.load_id):
        if spec.default_creation_method != "from_pretrained":
            return None, None
        hint = list(library_of(spec.type_hint)) if spec.type_hint else None
        return [library, cls, {**_location(spec, directory), "type_hint": hint}], None
    own = [library, cls]
    if spec.default_creation_method == "from_config" and not _has_weights(component):
        if _is_blocks_default(name, component, spec, declared):
            return None, None
        filename, text = _config_text(name, component, spec)
        entry = {"repo": ".", "subfolder": name, "type_hint": own, "default_creation_method": "from_config",
                 "config_file": filename}
        return [library, cls, entry], lambda staged: staged.write_text(f"{name}/{filename}", text)
    if not hasattr(component, "save_pretrained"):
        raise ConfigError.unsaveable_component(
            name, type(component).__name__, "it has no repo to point to and no save_pretrained to write it with")
    entry = {"repo": ".", "subfolder": name, "variant": None, "revision": None, "type_hint": own}
    return [library, cls, entry], lambda staged: component.save_pretrained(staged.directory / name)


def save_pipeline(pipe, directory: str | os.PathLike) -> Path:
    """Write a modular repo: ``modular_model_index.json``, ``modular_config.json``, custom ``block.py``, and
    the components the user made (configs, in-memory weights) in one subfolder each.

    Everything is checked and serialised before the first write; files are written beside the old ones
    and swapped in at the end (the index last), so a failed save leaves the old pipeline loadable.

    Raises:
        ConfigError: custom blocks without a source file, or a component that cannot be saved.
    """
    from .remote import BLOCK_FILE, custom_source, tree_of

    directory = Path(os.path.abspath(directory))
    source = custom_source(pipe.blocks)
    config: dict[str, Any] = {"_class_name": type(pipe.blocks).__name__, "blocks": tree_of(pipe.blocks)}
    if source is not None and not type(pipe.blocks).__module__.startswith("diffblocks"):
        config["auto_map"] = {"ModularPipelineBlocks": f"block.{type(pipe.blocks).__qualname__}"}
    declared = {s.name: s for s in pipe.blocks.expected_components}
    planned = {name: _plan_component(pipe, name, directory, declared) for name in pipe._specs}
    index: dict[str, Any] = {"_class_name": type(pipe.blocks).__name__, "_diffblocks_version": _version()}
    index.update({name: entry for name, (entry, _) in planned.items() if entry is not None})
    index.update(pipe._config_values)
    texts = {MODULAR_CONFIG: json.dumps(config, indent=2) + "\n",
             MODULAR_INDEX: json.dumps(index, indent=2, default=str) + "\n"}
    directory.mkdir(parents=True, exist_ok=True)
    with staged_files(directory) as staged:
        for _, write in planned.values():
            if write is not None:
                write(staged)
        if source is not None:
            staged.write_text(BLOCK_FILE, source)
        for filename, text in texts.items():  # the index last
            staged.write_text(filename, text)
    return directory


def push_folder(directory: str | os.PathLike, repo_id: str, private: bool | None = None,
                token: str | None = None, commit_message: str = "Upload with diffblocks", subfolder: str | None = None):
    """Upload a folder to a Hub repo (created if needed) through huggingface_hub."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=str(directory), path_in_repo=subfolder,
                             commit_message=commit_message)
