"""Block trees as JSON, and custom block code shipped in a repo's ``block.py``.

``modular_config.json`` records the block tree: each node's class as ``"module:Class"`` (diffblocks'
own classes) or ``"block:Class"`` (a class from the repo's ``block.py``), with sub-blocks and Auto
triggers. Code from ``block.py`` runs only with ``trust_remote_code=True``, and only for the pipeline's
own repo: components that point at other repos are loaded as weights and configs, never as code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .auto import AutoPipelineBlocks
from .block import ModularPipelineBlocks
from .composite import CompositeBlocks
from .errors import ConfigError, RemoteCodeError

BLOCK_FILE = "block.py"
CUSTOM_PREFIX = "block:"


def _is_ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "diffblocks"


def custom_modules(block: ModularPipelineBlocks) -> set[str]:
    """The modules outside diffblocks that define classes in this tree."""
    found = {type(block).__module__} if not _is_ours(type(block)) else set()
    if isinstance(block, CompositeBlocks):
        for _, sub in block.walk():
            if not _is_ours(type(sub)):
                found.add(type(sub).__module__)
    return found


def custom_source(block: ModularPipelineBlocks) -> str | None:
    """The source to save as ``block.py``, or None when every class is diffblocks' own."""
    modules = custom_modules(block)
    if not modules:
        return None
    if len(modules) > 1:
        raise ConfigError(
            f"custom blocks come from several modules ({', '.join(sorted(modules))}); define them in one module to save them"
        )
    return inspect.getsource(sys.modules[modules.pop()])


def _ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}" if _is_ours(cls) else f"{CUSTOM_PREFIX}{cls.__qualname__}"


def tree_of(block: ModularPipelineBlocks) -> dict[str, Any]:
    """The JSON description of a block tree."""
    node: dict[str, Any] = {"class": _ref(type(block))}
    if isinstance(block, CompositeBlocks):
        node["sub_blocks"] = {name: tree_of(sub) for name, sub in block.sub_blocks.items()}
        if isinstance(block, AutoPipelineBlocks):
            node["triggers"] = list(block.triggers)
        description = block.__dict__.get("_description")
        if description is not None:
            node["description"] = description
    return node


def uses_custom_code(tree: dict[str, Any]) -> bool:
    return tree["class"].startswith(CUSTOM_PREFIX) or any(uses_custom_code(t) for t in tree.get("sub_blocks", {}).values())


def _resolve(ref: str, custom: ModuleType | None) -> type:
    if ref.startswith(CUSTOM_PREFIX):
        return getattr(custom, ref[len(CUSTOM_PREFIX):])
    module, _, qualname = ref.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def build_tree(tree: dict[str, Any], custom: ModuleType | None = None) -> ModularPipelineBlocks:
    """Rebuild the blocks a :func:`tree_of` description names."""
    cls = _resolve(tree["class"], custom)
    if "sub_blocks" not in tree:
        return cls()
    subs = {name: build_tree(sub, custom) for name, sub in tree["sub_blocks"].items()}
    if issubclass(cls, AutoPipelineBlocks):
        return cls.from_blocks_dict(subs, trigger_inputs=tree.get("triggers"), description=tree.get("description"))
    return cls.from_blocks_dict(subs, description=tree.get("description"))


def load_custom_module(path: Path, repo: str, trust_remote_code: bool) -> ModuleType:
    """Import ``block.py`` from a repo, only when trusted."""
    if not trust_remote_code:
        raise RemoteCodeError.not_trusted(str(repo), BLOCK_FILE)
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = f"diffblocks_remote_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
