"""The catalog: every node type by name, made from declarations.

- each block class in ``diffblocks.blocks`` (leaf, sequential, loop wrapper and auto blocks) by its class name;
  loop sub-blocks (``__call__(components, block_state, i, t)``) run only inside their loop and are left out;
- each preset as ``preset:<name>`` (the CLI's names: ``sd15-text2image``, ...), SD's and SDXL's reading prompts in
  A1111's syntax as the CLI does (``presets.names.with_a1111_prompts``);
- ``LoadComponents``, ``LoadImage``; the image utilities (``ScaleImage``, ``CropImage``, ``PadImage``,
  ``InvertMask``, ``ImageToMask``); each guider class and each scheduler class;
- blocks a user registers (:func:`register`) or loads from a trusted modular repo (:func:`register_repo`).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import threading
from typing import Any, Iterable

from ..components.errors import BlockDeclarationError
from ..modular_pipelines.block import ModularPipelineBlocks
from .adapter_nodes import LoadControlNet, LoadFluxControlNet, LoadFluxIPAdapter, LoadIPAdapter, LoadRedux
from .embedding_nodes import LoadTextualInversion
from .patch_nodes import FreeUNode, TiledVAENode
from .lora_nodes import LoadLoRA
from .block_nodes import BlockNode
from .bundle import component_socket
from .config_nodes import GuiderNode, SchedulerNode
from .image_nodes import IMAGE_NODES
from .latent_nodes import ScaleLatents
from .loader_nodes import LoadCheckpoint, LoadComponents, LoadFluxTransformer, LoadImage, LoadVAE
from .node_type import NodeType

_lock = threading.RLock()
_types: dict[str, NodeType] | None = None
_custom: dict[str, NodeType] = {}
_wire: dict[str, Any] | None = None


def _block_classes() -> Iterable[tuple[str, type]]:
    """Every runnable block class defined under ``diffblocks.blocks``, with its module."""
    import diffblocks.blocks as package

    seen = set()
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (cls in seen or not issubclass(cls, ModularPipelineBlocks)
                    or not cls.__module__.startswith(package.__name__) or not _runs_alone(cls)):
                continue
            seen.add(cls)
            yield cls.__module__, cls


def _runs_alone(cls: type) -> bool:
    """False for loop sub-blocks, whose ``__call__`` works on the loop's block state."""
    params = inspect.signature(cls.__call__).parameters
    return "block_state" not in params


def _category(module: str) -> str:
    parts = module.split(".")[2:]  # diffblocks.blocks.<family>[.<kind>]
    return "/".join(parts) if parts else "blocks"


def _preset_nodes() -> list[NodeType]:
    from ..modular_pipelines.sequential import SequentialPipelineBlocks
    from ..presets.names import PRESETS, with_a1111_prompts

    nodes = []
    for name, (module, attr) in PRESETS.items():
        try:
            blocks = with_a1111_prompts(name, getattr(importlib.import_module(f"diffblocks.presets.{module}"), attr))
        except (ImportError, AttributeError):
            continue
        nodes.append(BlockNode(f"preset:{name}", lambda b=blocks: SequentialPipelineBlocks.from_blocks_dict(b),
                               f"presets/{module}", f"The {name} preset: {', '.join(blocks)}."))
    return nodes


def _build() -> dict[str, NodeType]:
    from ..components.schedulers import SCHEDULERS
    from ..guiders import GUIDERS

    types: dict[str, NodeType] = {}
    for module, cls in _block_classes():
        try:
            types[cls.__name__] = BlockNode(cls.__name__, cls, _category(module))
        except BlockDeclarationError:  # a base class for wrappers to fill (no sub-blocks of its own)
            continue
    for node in _preset_nodes():
        types[node.name] = node
    for cls in GUIDERS.values():
        types[cls.__name__] = GuiderNode(cls, "guiders")
    for cls in SCHEDULERS.values():
        types[cls.__name__] = SchedulerNode(cls, "schedulers")
    types["LoadImage"] = LoadImage()
    for cls in IMAGE_NODES:
        types[cls.name] = cls()
    types["ScaleLatents"] = ScaleLatents()
    types["LoadFluxTransformer"] = LoadFluxTransformer()
    types["LoadVAE"] = LoadVAE()
    types["LoadControlNet"] = LoadControlNet()
    types["LoadFluxControlNet"] = LoadFluxControlNet()
    types["LoadIPAdapter"] = LoadIPAdapter()
    types["LoadFluxIPAdapter"] = LoadFluxIPAdapter()
    types["LoadRedux"] = LoadRedux()
    types["LoadLoRA"] = LoadLoRA()
    types["LoadTextualInversion"] = LoadTextualInversion()
    types["FreeU"] = FreeUNode()
    types["TiledVAE"] = TiledVAENode()
    types["LoadComponents"] = LoadComponents(_component_outputs(types.values()))
    types["LoadCheckpoint"] = LoadCheckpoint(_component_outputs(types.values()))
    return types


def _component_outputs(types: Iterable[NodeType]) -> list[tuple[str, str]]:
    """``(name, socket)`` of every component some block expects: what a loader can output."""
    found: dict[str, set[str]] = {}
    for node in types:
        if isinstance(node, BlockNode):
            for spec in node.block.expected_components:
                found.setdefault(spec.name, set()).add(component_socket(spec))
    # a name whose class differs between families ('unet': UNet2DConditionModel or UNet2DModel) carries any
    return sorted((name, sockets.pop() if len(sockets) == 1 else "any") for name, sockets in found.items())


def node_types() -> dict[str, NodeType]:
    """Every node type by name (built on first use)."""
    global _types
    with _lock:
        if _types is None:
            _types = _build()
        return {**_types, **_custom}


def node_type(name: str) -> NodeType | None:
    return node_types().get(name)


def catalog() -> dict[str, Any]:
    """The catalog as the wire carries it (``GET /api/nodes``): ``{type: {inputs, outputs, category, description}}``."""
    global _wire
    with _lock:
        if _wire is None:
            _wire = {name: node.to_json() for name, node in sorted(node_types().items())}
        return _wire


def register(block: type[ModularPipelineBlocks] | ModularPipelineBlocks, name: str | None = None,
             category: str = "custom") -> str:
    """Add a block class (or a composed block instance) to the catalog; returns its node type name."""
    global _wire
    cls = block if isinstance(block, type) else type(block)
    make = block if isinstance(block, type) else (lambda: block)
    name = name or cls.__name__
    with _lock:
        _custom[name] = BlockNode(name, make, category)
        _wire = None
    return name


def register_repo(repo: str, trust_remote_code: bool = False) -> list[str]:
    """Add the blocks of a modular repo: its whole tree as ``repo:<repo>``, and each block class it ships (custom
    code runs only with ``trust_remote_code=True``, as for pipelines). Returns the names added.

    Raises:
        RemoteCodeError: the repo ships code and ``trust_remote_code`` is False.
    """
    from ..modular_pipelines.hub import load_blocks

    blocks = load_blocks(repo, trust_remote_code=trust_remote_code)
    names = [register(blocks, name=f"repo:{repo}", category="custom")]
    walk = blocks.walk() if hasattr(blocks, "walk") else []
    for sub in [blocks, *(sub for _, sub in walk)]:
        if not type(sub).__module__.startswith("diffblocks.") and _runs_alone(type(sub)):
            names.append(register(type(sub)))
    return list(dict.fromkeys(names))


def _structure(block) -> list[tuple[str, str]]:
    walk = block.walk() if hasattr(block, "walk") else []
    return [(path, type(sub).__name__) for path, sub in walk]


def block_node_type(block: ModularPipelineBlocks) -> BlockNode:
    """The node type running ``block``: its class's, unless the instance was edited (sub-blocks inserted, popped
    or swapped), in which case the instance joins the catalog under ``<class>@<short hash of its structure>``."""
    import hashlib

    known = node_type(type(block).__name__)
    if isinstance(known, BlockNode) and _structure(known.block) == _structure(block):
        return known
    digest = hashlib.sha256(repr(_structure(block)).encode()).hexdigest()[:8]
    name = f"{type(block).__name__}@{digest}"
    if node_type(name) is None:
        register(block, name=name)
    return node_type(name)
