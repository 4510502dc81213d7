"""Block trees as JSON, and custom block code shipped in a repo's ``block.py``.

``modular_config.json`` records the block tree: each node's class as ``"module:Class"`` (diffblocks'
own classes) or ``"block:Class"`` (a class from the repo's ``block.py``), with sub-blocks and Auto
triggers.

Without ``trust_remote_code=True`` no code from a repo runs by any path: a tree may name only the block
classes diffblocks defines (:func:`our_block_classes`), looked up after importing nothing outside
diffblocks' block packages; any other reference is refused before anything is imported. With the flag,
``block.py`` is imported and other modules may be named, but every reference must still be a
:class:`ModularPipelineBlocks` subclass: nothing else is ever called. Components that point at other
repos are loaded as weights and configs, never as code.

Saving writes as ``block.py`` only the custom classes of the tree and what they use (imports, and the
top-level functions, classes and constants they name), never the rest of the user's script.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import re
import symtable
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .auto import AutoPipelineBlocks
from .block import ModularPipelineBlocks
from .composite import CompositeBlocks
from ..components.errors import ConfigError, RemoteCodeError

BLOCK_FILE = "block.py"
CUSTOM_PREFIX = "block:"
# the packages whose modules define diffblocks' block classes; only these are imported for an untrusted tree
BLOCK_PACKAGES = ("diffblocks.modular_pipelines", "diffblocks.blocks", "diffblocks.presets")
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _is_ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "diffblocks"


def moved_classes(module: str, moved: dict[str, str]):
    """A module ``__getattr__`` for the block classes ``module`` declared before they moved (``{class name: the
    module declaring it now}``): saved trees and imports that name the old module still find them."""

    def __getattr__(name: str):
        if name in moved:
            return getattr(importlib.import_module(moved[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def _in_block_packages(module: str) -> bool:
    return any(module == pkg or module.startswith(pkg + ".") for pkg in BLOCK_PACKAGES)


def our_block_classes() -> dict[str, type]:
    """Every ModularPipelineBlocks subclass defined in a diffblocks module imported so far, by
    ``"module:qualname"``: the registry an untrusted tree is resolved against."""
    found: dict[str, type] = {}
    todo = [ModularPipelineBlocks]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if _is_ours(cls):
            found[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return found


# --- reading a tree ------------------------------------------------------------------------------


def tree_refs(tree: dict[str, Any], where: str) -> list[str]:
    """Every class reference of a tree, depth first (raises naming ``where`` when a node is malformed)."""
    if not isinstance(tree, dict) or not isinstance(tree.get("class"), str):
        raise ConfigError(f"{where}: every block node needs a 'class' string, got {str(tree)[:80]}")
    subs = tree.get("sub_blocks") or {}
    if not isinstance(subs, dict):
        raise ConfigError(f"{where}: 'sub_blocks' of {tree['class']} must map names to block nodes")
    return [tree["class"]] + [ref for sub in subs.values() for ref in tree_refs(sub, where)]


def uses_custom_code(tree: dict[str, Any]) -> bool:
    return any(ref.startswith(CUSTOM_PREFIX) for ref in tree_refs(tree, "block tree"))


def untrusted_refs(tree: dict[str, Any], where: str) -> list[str]:
    """The references of a tree that are not diffblocks' own block classes (``block:`` ones included)."""
    return [ref for ref in dict.fromkeys(tree_refs(tree, where)) if not _names_our_package(ref)]


def _names_our_package(ref: str) -> bool:
    module, sep, qualname = ref.partition(":")
    return bool(sep and qualname) and _MODULE_NAME.fullmatch(module) is not None and _in_block_packages(module)


def _lookup(root: Any, qualname: str) -> Any:
    found = root
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:  # a name of another diffblocks version: refused below as naming no block class
        return False
    return True


def _resolve(ref: str, custom: ModuleType | None, where: str, trusted: bool) -> type:
    """The block class a reference names; never anything but a ModularPipelineBlocks subclass."""
    if ref.startswith(CUSTOM_PREFIX):
        found = _lookup(custom, ref[len(CUSTOM_PREFIX):]) if custom is not None else None
    elif _names_our_package(ref):
        module, _, qualname = ref.partition(":")
        found = our_block_classes().get(ref) if _imports(module) else None
        if found is None and module in sys.modules:  # a class declared elsewhere since, that its old module names
            moved = _lookup(sys.modules[module], qualname)
            found = moved if isinstance(moved, type) and _is_ours(moved) else None
    elif not trusted:
        raise RemoteCodeError.untrusted_refs(where, [ref])
    else:
        module, _, qualname = ref.partition(":")
        found = _lookup(importlib.import_module(module), qualname) if qualname else None
    if not (isinstance(found, type) and issubclass(found, ModularPipelineBlocks)):
        raise RemoteCodeError.not_a_block(where, ref)
    return found


def build_tree(tree: dict[str, Any], custom: ModuleType | None = None, where: str = "modular_config.json",
               trust_remote_code: bool = False) -> ModularPipelineBlocks:
    """Rebuild the blocks a :func:`tree_of` description names.

    Raises:
        RemoteCodeError: without ``trust_remote_code``, the tree names a class that is not diffblocks' own
            (checked for the whole tree before anything is imported); with it, a name that is not a block class.
    """
    if not trust_remote_code:
        refused = untrusted_refs(tree, where)
        if refused:
            raise RemoteCodeError.untrusted_refs(where, refused)
    return _build(tree, custom, where, trust_remote_code)


def _build(tree: dict[str, Any], custom: ModuleType | None, where: str, trusted: bool) -> ModularPipelineBlocks:
    cls = _resolve(tree["class"], custom, where, trusted)
    if "sub_blocks" not in tree:
        return cls()
    if not issubclass(cls, CompositeBlocks):
        raise ConfigError(f"{where}: {tree['class']} is not a composite block, so it cannot have sub_blocks")
    subs = {name: _build(sub, custom, where, trusted) for name, sub in tree["sub_blocks"].items()}
    if issubclass(cls, AutoPipelineBlocks):
        return cls.from_blocks_dict(subs, trigger_inputs=tree.get("triggers"), description=tree.get("description"))
    return cls.from_blocks_dict(subs, description=tree.get("description"))


def custom_block_class(custom: ModuleType, name: str, where: str) -> type:
    """The block class ``block.py`` defines as ``name`` (an ``auto_map`` entry)."""
    return _resolve(CUSTOM_PREFIX + name, custom, where, trusted=True)


def load_custom_module(path: Path, repo: str, trust_remote_code: bool) -> ModuleType:
    """Import ``block.py`` from a repo, only when trusted."""
    if trust_remote_code is not True:
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


# --- writing a tree ------------------------------------------------------------------------------


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


def custom_classes(block: ModularPipelineBlocks) -> list[type]:
    """The block classes of a tree that are not diffblocks' own."""
    blocks = [block] + ([sub for _, sub in block.walk()] if isinstance(block, CompositeBlocks) else [])
    return [cls for cls in dict.fromkeys(type(b) for b in blocks) if not _is_ours(cls)]


def custom_source(block: ModularPipelineBlocks) -> str | None:
    """The source to save as ``block.py``, or None when every class is diffblocks' own.

    Only the custom classes and what they use are written (see :func:`extract_source`).

    Raises:
        ConfigError: the classes come from several modules, or have no source file to read them from.
    """
    classes = custom_classes(block)
    if not classes:
        return None
    modules = {cls.__module__ for cls in classes}
    if len(modules) > 1:
        raise ConfigError(
            f"custom blocks come from several modules ({', '.join(sorted(modules))}); define them in one module to save them"
        )
    return extract_source(sys.modules.get(modules.pop()), [cls.__qualname__ for cls in classes])


def _module_text(module: ModuleType | None, names: list[str]) -> tuple[str, str]:
    path = getattr(module, "__file__", None)
    if not path or not str(path).endswith(".py") or not Path(path).is_file():
        raise ConfigError.unsaveable_blocks(names, "their module has no source file (REPL, notebook, stdin or exec)")
    return Path(path).name, Path(path).read_text()


def extract_source(module: ModuleType | None, qualnames: list[str]) -> str:
    """The classes ``qualnames`` of ``module`` with what they use, as a standalone module's text.

    Kept, in file order: top-level ``import`` statements (narrowed to the names used), and the top-level
    classes, functions and assignments the classes name, transitively (base classes defined in the module
    among them). Everything else (other code, ``if __name__ == "__main__":``, unused constants such as
    tokens) is left out, so loading the saved file runs nothing but these definitions.

    Raises:
        ConfigError: no source file, a class not defined at the top level of it, or a name the classes
            use that comes from a relative import.
    """
    filename, text = _module_text(module, qualnames)
    lines = text.splitlines()
    body = ast.parse(text).body
    segments = {id(node): _segment(node, lines) for node in body}
    defined = _top_level_bindings(body)
    roots = [name.split(".")[0] for name in qualnames]
    missing = [q for q, root in zip(qualnames, roots) if "<locals>" in q or not _is_class_def(defined.get(root))]
    if missing:
        raise ConfigError.unsaveable_blocks(missing, f"they are not defined at the top level of {filename}")
    needed = _needed_names(roots, defined, segments)
    imports, definitions = [], []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            kept = _narrow_import(node, needed)
            if kept is not None and getattr(kept, "level", 0):
                reason = f"they use {', '.join(a.asname or a.name for a in kept.names)} from a relative import " \
                         f"in {filename}, which a saved block.py cannot do; import it by its absolute name"
                raise ConfigError.unsaveable_blocks(qualnames, reason)
            if kept is not None:
                imports.append(ast.unparse(kept))
        elif any(node in defined.get(name, ()) for name in needed):
            definitions.append(segments[id(node)])
    header = f"# Custom blocks saved by diffblocks from {filename}: these classes and what they use.\n"
    return header + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(definitions) + "\n"


def _segment(node: ast.stmt, lines: list[str]) -> str:
    """A top-level statement's own lines (decorators included), as written."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
    return "\n".join(lines[start - 1: node.end_lineno])


def _is_class_def(nodes) -> bool:
    return bool(nodes) and any(isinstance(n, ast.ClassDef) for n in nodes)


def _top_level_bindings(body: list[ast.stmt]) -> dict[str, list[ast.stmt]]:
    """Name -> the top-level definitions (class, def, plain assignment) that bind it."""
    defined: dict[str, list[ast.stmt]] = {}
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        else:
            continue
        for name in names:
            defined.setdefault(name, []).append(node)
    return defined


def _global_names(code: str) -> set[str]:
    """The module-level names a statement reads: referenced at its top, or global in its functions and
    class bodies (a method's own locals and parameters are not)."""
    names: set[str] = set()
    todo = [symtable.symtable(code, "<block>", "exec")]
    while todo:
        table = todo.pop()
        top = table.get_type() == "module"
        names.update(s.get_name() for s in table.get_symbols()
                     if s.is_referenced() and (top or s.is_global()))
        todo.extend(table.get_children())
    return names


def _needed_names(roots: list[str], defined: dict[str, list[ast.stmt]], segments: dict[int, str]) -> set[str]:
    """The roots and every module-level name their definitions read, followed through other definitions."""
    needed: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for node in defined.get(name, ()):
            todo.extend(_global_names(segments[id(node)]))
    return needed


def _narrow_import(node: ast.Import | ast.ImportFrom, needed: set[str]) -> ast.stmt | None:
    """The import with only the names the kept code uses (``__future__`` and ``*`` imports kept whole)."""
    if isinstance(node, ast.ImportFrom) and (node.module == "__future__" or any(a.name == "*" for a in node.names)):
        return node
    kept = [a for a in node.names if (a.asname or a.name.split(".")[0]) in needed]
    if not kept:
        return None
    if isinstance(node, ast.ImportFrom):
        return ast.ImportFrom(module=node.module, names=kept, level=node.level)
    return ast.Import(names=kept)
