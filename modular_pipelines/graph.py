"""The data-flow graph of a block tree (networkx), its validation, and a mermaid rendering.

Nodes are the leaf blocks by dotted path (plus each loop wrapper, and the source node ``"inputs"`` for
values the user gives); an edge ``a -> b`` carries the ``names`` that ``b`` reads from ``a``. An Auto
block contributes every branch: a later consumer gets an edge from each branch that produces its input.

Validation follows every way the tree can run. Which branch of each Auto block runs depends only on
which trigger inputs are present, so the tree is walked once per consistent set of trigger decisions
(``mask_image`` given, ``image`` given, neither, ...): a required input is a problem exactly when, on
some of these paths, nothing before its block sets it and the user cannot give it.
"""

from __future__ import annotations

from collections import Counter

import networkx as nx

from .auto import AutoPipelineBlocks
from .block import ModularPipelineBlocks
from .composite import CompositeBlocks
from ..components.errors import PipelineValidationError
from .loop import LoopSequentialPipelineBlocks

SOURCE = "inputs"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Builder:
    def __init__(self):
        self.graph = nx.DiGraph()
        self.graph.add_node(SOURCE, kind="inputs")

    def consume(self, node: str, params, producers: dict) -> None:
        for param in params:
            if param.name is None:
                continue
            for source in producers.get(param.name, [SOURCE]):
                if source == node:
                    continue
                if not self.graph.has_edge(source, node):
                    self.graph.add_edge(source, node, names=[])
                names = self.graph.edges[source, node]["names"]
                if param.name not in names:
                    names.append(param.name)

    def leaf(self, block, path: str, producers: dict) -> None:
        node = path or type(block).__name__
        self.graph.add_node(node, kind="block", cls=type(block).__name__)
        self.consume(node, block.inputs, producers)
        for out in block.intermediate_outputs:
            producers[out.name] = [node]

    def add(self, block, path: str, producers: dict) -> None:
        if isinstance(block, AutoPipelineBlocks):
            self.auto(block, path, producers)
        elif isinstance(block, LoopSequentialPipelineBlocks):
            node = path or type(block).__name__
            self.graph.add_node(node, kind="loop", cls=type(block).__name__)
            self.consume(node, block.loop_inputs, producers)
            for name, sub in block.sub_blocks.items():
                self.add(sub, _join(path, name), producers)
            for out in block.loop_intermediate_outputs:
                producers[out.name] = [node]
        elif isinstance(block, CompositeBlocks):
            for name, sub in block.sub_blocks.items():
                self.add(sub, _join(path, name), producers)
        else:
            self.leaf(block, path, producers)

    def auto(self, block: AutoPipelineBlocks, path: str, producers: dict) -> None:
        before = dict(producers)
        merged: dict[str, list[str]] = {}
        branch_outputs = []
        for name, sub in block.sub_blocks.items():
            branch = dict(before)
            self.add(sub, _join(path, name), branch)
            branch_outputs.append({n for n, srcs in branch.items() if before.get(n) != srcs})
            for out in branch_outputs[-1]:
                merged.setdefault(out, []).extend(s for s in branch[out] if s not in merged.get(out, []))
        everywhere = set.intersection(*branch_outputs) if branch_outputs else set()
        if None not in block.triggers:  # the block may be skipped: nothing it outputs is certain
            everywhere = set()
        for out, sources in merged.items():
            producers[out] = sources + ([] if out in everywhere else before.get(out, [SOURCE]))


def build_graph(block: ModularPipelineBlocks) -> nx.DiGraph:
    """The data-flow DiGraph of ``block`` (any nesting)."""
    builder = _Builder()
    builder.add(block, "", {})
    return builder.graph


class _World:
    """One way the tree can run, up to some block: the names set so far, the user triggers decided
    (name -> given?) and the Auto branches taken (auto path, auto block, branch name or None)."""

    def __init__(self, available=frozenset(), given=None, choices=()):
        self.available = frozenset(available)
        self.given = dict(given or {})
        self.choices = tuple(choices)

    def adding(self, names) -> "_World":
        return _World(self.available | set(names), self.given, self.choices)

    def choosing(self, path: str, block, branch: str | None) -> "_World":
        return _World(self.available, self.given, self.choices + ((path, block, branch),))

    def deciding(self, name: str, present: bool) -> "_World":
        return _World(self.available, {**self.given, name: present}, self.choices)

    def when(self) -> str:
        parts = [f"'{n}' is {'' if present else 'not '}given" for n, present in self.given.items()]
        return f" (when {' and '.join(parts)})" if parts else ""


class _Paths:
    """Walks every way ``root`` can run and records each required input that may be missing.

    ``inputs=None``: the user may give any of the tree's inputs (``root.input_names``), so only names
    the pipeline must make itself can be missing, and each trigger among them may be given or not.
    Otherwise exactly ``inputs`` are given (and not None).
    """

    def __init__(self, root: ModularPipelineBlocks, inputs=None):
        self.root = root
        self.fixed = inputs is not None
        self.user = set(root.input_names) if inputs is None else set(inputs)
        self.found: dict[tuple[str, str], str] = {}

    def run(self, block, path: str, worlds: list[_World]) -> list[_World]:
        if isinstance(block, AutoPipelineBlocks):
            return [after for world in worlds for after in self.auto(block, path, world)]
        if isinstance(block, LoopSequentialPipelineBlocks):
            return [after for world in worlds for after in self.loop(block, path, world)]
        if isinstance(block, CompositeBlocks):
            for name, sub in block.sub_blocks.items():
                worlds = self.run(sub, _join(path, name), worlds)
            return worlds
        return [self.leaf(block, path, world) for world in worlds]

    def leaf(self, block, path: str, world: _World) -> _World:
        self.check(block, path, block.inputs, world)
        # set_block_state writes back an absent input whose default was applied, so it is set afterwards
        return world.adding(block.intermediate_output_names + _defaulted(block.inputs))

    def loop(self, block: LoopSequentialPipelineBlocks, path: str, world: _World) -> list[_World]:
        self.check(block, path, block.loop_inputs, world)
        worlds = [world.adding(_defaulted(block.inputs))]  # the loop's block state holds every default
        for name, sub in block.sub_blocks.items():
            worlds = self.run(sub, _join(path, name), worlds)
        return [w.adding(o.name for o in block.loop_intermediate_outputs) for w in worlds]

    def auto(self, block: AutoPipelineBlocks, path: str, world: _World) -> list[_World]:
        """The first branch whose trigger is present runs, else the default, else none (see ``select``)."""
        out, absent, default = [], world, None
        for (name, sub), trigger in zip(block.sub_blocks.items(), block.triggers):
            if trigger is None:
                default = (name, sub)
                continue
            chosen = self.assume(absent, trigger, True)
            if chosen is not None:
                out += self.run(sub, _join(path, name), [chosen.choosing(path, block, name)])
            absent = self.assume(absent, trigger, False)
            if absent is None:
                return out
        if default is not None:
            return out + self.run(default[1], _join(path, default[0]), [absent.choosing(path, block, default[0])])
        return out + [absent.choosing(path, block, None)]

    def assume(self, world: _World | None, name: str, present: bool) -> _World | None:
        """``world`` where trigger ``name`` is present (or absent), or None when that cannot happen."""
        if world is None:
            return None
        if name in world.available:
            return world if present else None
        if self.fixed or name not in self.user:
            return world if (name in self.user) == present else None
        if name in world.given:
            return world if world.given[name] == present else None
        return world.deciding(name, present)

    def check(self, block, path: str, params, world: _World) -> None:
        for param in params:
            name = param.name
            if not param.required or name is None or name in world.available or name in self.user:
                continue
            where = path or type(block).__name__
            self.found.setdefault((where, name), self.describe(block, where, name, world))

    def describe(self, block, path: str, name: str, world: _World) -> str:
        cause = _auto_cause(world, path, name)
        if cause is not None:
            auto_path, auto, chosen = cause
            ran = "it runs no branch" if chosen is None else f"branch {chosen} does not output it"
            return (f"auto block '{auto_path or type(auto).__name__}': branches output different names; "
                    f"'{name}' is required by '{path}' but {ran}{world.when()}")
        makers = [repr(p) for p, b in _setters(self.root) if p != path and name in _own_outputs(b)]
        made = "nothing produces it"
        if makers:
            made = f"no block before it produces it (it is made by {', '.join(makers)})"
        given = "it is not given" if self.fixed else "it is not an input of the pipeline"
        return f"'{name}' is required by '{path}' ({type(block).__name__}) but {made} and {given}{world.when()}"


def _auto_cause(world: _World, path: str, name: str) -> tuple[str, AutoPipelineBlocks, str | None] | None:
    """The latest Auto block on this path that ran a branch (or none) without ``name`` where another
    branch outputs it: (its path, the block, the branch that ran or None)."""
    for auto_path, auto, chosen in reversed(world.choices):
        branch = _join(auto_path, chosen or "")
        if chosen is not None and (path == branch or path.startswith(branch + ".")):
            continue  # the branch the consumer itself is in
        outputs = {n: b.intermediate_output_names for n, b in auto.sub_blocks.items()}
        elsewhere = any(name in outs for n, outs in outputs.items() if n != chosen)
        if elsewhere and (chosen is None or name not in outputs[chosen]):
            return auto_path, auto, chosen
    return None


def _defaulted(params) -> list[str]:
    return [p.name for p in params if p.name is not None and p.has_default]


def _setters(root):
    """(path, block) of every block that sets values itself: leaves and loop wrappers."""
    pairs = [(type(root).__name__, root), *_walk(root)]
    loops = LoopSequentialPipelineBlocks
    return [(p, b) for p, b in pairs if not isinstance(b, CompositeBlocks) or isinstance(b, loops)]


def _own_outputs(block) -> list[str]:
    if isinstance(block, LoopSequentialPipelineBlocks):
        return [o.name for o in block.loop_intermediate_outputs]
    return block.intermediate_output_names


def problems(block: ModularPipelineBlocks, inputs=None) -> list[str]:
    """Every problem in the tree: see :func:`validate`."""
    paths = _Paths(block, inputs)
    paths.run(block, "", [_World()])
    found = list(paths.found.values())
    seen = Counter(id(b) for _, b in _walk(block))
    for path, sub in _walk(block):
        if seen[id(sub)] > 1:
            found.append(f"block '{path}' ({type(sub).__name__}) is used at more than one place in the tree")
            seen[id(sub)] = 0
    return found


def _walk(block):
    return block.walk() if isinstance(block, CompositeBlocks) else []


def validate(block: ModularPipelineBlocks, inputs=None) -> None:
    """Raise one :class:`PipelineValidationError` listing every problem, or return None.

    A problem is a required input that is missing on some way the tree can run: which Auto branches
    run follows from which triggers are present, a trigger is present when the user gives it or an
    earlier block sets it, and a value is set when an earlier block on that path outputs it (an input
    a block gives a default to counts as set after that block). A block instance used at two places
    in the tree is a problem too.

    Args:
        block: the root of the tree.
        inputs: the names the user will give (all of them present). None: the user may give any of
            the tree's inputs, so only values the pipeline must make itself can be missing, and every
            combination of given triggers is checked.

    Raises:
        PipelineValidationError: every problem, each naming the block path and the input (and, for a
            problem on some paths only, which triggers lead there).
    """
    found = problems(block, inputs=inputs)
    if found:
        raise PipelineValidationError(found)


def _node_id(index: int) -> str:
    return f"n{index}"


def to_mermaid(graph: nx.DiGraph) -> str:
    """A ``flowchart TD`` mermaid text of the data-flow graph."""
    ids = {node: _node_id(i) for i, node in enumerate(graph.nodes)}
    lines = ["flowchart TD"]
    for node, data in graph.nodes(data=True):
        if data.get("kind") == "inputs":
            lines.append(f"    {ids[node]}([inputs])")
        else:
            shape = ("{{", "}}") if data.get("kind") == "loop" else ("[", "]")
            lines.append(f'    {ids[node]}{shape[0]}"{node}<br/>{data.get("cls", "")}"{shape[1]}')
    for src, dst, data in graph.edges(data=True):
        label = ", ".join(data.get("names", []))
        lines.append(f"    {ids[src]} -->|{label}| {ids[dst]}")
    return "\n".join(lines)
