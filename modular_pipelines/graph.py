"""The data-flow graph of a block tree (networkx), its validation, and a mermaid rendering.

Nodes are the leaf blocks by dotted path (plus each loop wrapper, and the source node ``"inputs"`` for
values the user gives); an edge ``a -> b`` carries the ``names`` that ``b`` reads from ``a``. An Auto
block contributes every branch: a later consumer gets an edge from each branch that produces its input.
"""

from __future__ import annotations

from collections import Counter

import networkx as nx

from .auto import AutoPipelineBlocks
from .block import ModularPipelineBlocks
from .composite import CompositeBlocks
from .errors import PipelineValidationError
from .loop import LoopSequentialPipelineBlocks

SOURCE = "inputs"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Builder:
    def __init__(self):
        self.graph = nx.DiGraph()
        self.graph.add_node(SOURCE, kind="inputs")
        self.problems: list[str] = []

    def consume(self, node: str, block: ModularPipelineBlocks, params, producers: dict) -> None:
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
            if param.required and param.name not in producers:
                self.graph.nodes[node]["required_from_user"].append(param.name)

    def leaf(self, block, path: str, producers: dict, kind: str = "block") -> None:
        node = path or type(block).__name__
        self.graph.add_node(node, kind=kind, cls=type(block).__name__, required_from_user=[])
        self.consume(node, block, block.inputs, producers)
        for out in block.intermediate_outputs:
            producers[out.name] = [node]

    def add(self, block, path: str, producers: dict) -> None:
        if isinstance(block, AutoPipelineBlocks):
            self.auto(block, path, producers)
        elif isinstance(block, LoopSequentialPipelineBlocks):
            node = path or type(block).__name__
            self.graph.add_node(node, kind="loop", cls=type(block).__name__, required_from_user=[])
            self.consume(node, block, block.loop_inputs, producers)
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
        branch_outputs = {}
        for name, sub in block.sub_blocks.items():
            branch = dict(before)
            self.add(sub, _join(path, name), branch)
            branch_outputs[name] = {n for n, srcs in branch.items() if before.get(n) != srcs}
            for out in branch_outputs[name]:
                merged.setdefault(out, []).extend(s for s in branch[out] if s not in merged.get(out, []))
        partial = set().union(*branch_outputs.values()) - set.intersection(*branch_outputs.values()) if branch_outputs else set()
        if None not in block.triggers:  # the block may be skipped: nothing it outputs is certain
            partial |= set(merged)
        for out, sources in merged.items():
            producers[out] = sources + ([s for s in before.get(out, [SOURCE])] if out in partial else [])
        self.graph.graph.setdefault("partial_outputs", {})[path or type(block).__name__] = (partial, branch_outputs)


def build_graph(block: ModularPipelineBlocks) -> nx.DiGraph:
    """The data-flow DiGraph of ``block`` (any nesting)."""
    builder = _Builder()
    builder.add(block, "", {})
    return builder.graph


def problems(block: ModularPipelineBlocks, inputs=None) -> list[str]:
    """Every problem in the tree: see :func:`validate`."""
    graph = build_graph(block)
    found = []
    given = None if inputs is None else set(inputs)
    produced = set(block.intermediate_output_names)
    for node, data in graph.nodes(data=True):
        for name in data.get("required_from_user", []):
            if given is not None and name not in given:
                found.append(f"'{name}' is required by '{node}' ({data['cls']}) but nothing produces it and it is not given")
            elif given is None and name in produced:
                found.append(f"'{name}' is required by '{node}' ({data['cls']}) but is only produced after it runs")
    for auto_path, (partial, outputs) in graph.graph.get("partial_outputs", {}).items():
        for node, data in graph.nodes(data=True):
            for src, _, edge in graph.in_edges(node, data=True):
                needed = [n for n in edge["names"] if n in partial and src.startswith(auto_path + ".")]
                for name in needed:
                    if _requires(graph, node, name, block):
                        missing = sorted(b for b, outs in outputs.items() if name not in outs) or ["(skipped)"]
                        found.append(
                            f"auto block '{auto_path}': branches output different names; '{name}' is required by "
                            f"'{node}' but branch {', '.join(missing)} does not output it"
                        )
    seen = Counter(id(b) for _, b in _walk(block))
    for path, sub in _walk(block):
        if seen[id(sub)] > 1:
            found.append(f"block '{path}' ({type(sub).__name__}) is used at more than one place in the tree")
            seen[id(sub)] = 0
    return list(dict.fromkeys(found))


def _walk(block):
    return block.walk() if isinstance(block, CompositeBlocks) else []


def _requires(graph: nx.DiGraph, node: str, name: str, root) -> bool:
    for path, sub in [("", root), *_walk(root)]:
        if (path or type(root).__name__) == node:
            return any(p.name == name and p.required for p in sub.inputs)
    return False


def validate(block: ModularPipelineBlocks, inputs=None) -> None:
    """Raise one :class:`PipelineValidationError` listing every problem, or return None.

    Problems: a required input produced only after the block that needs it (or, when ``inputs`` names
    what the user will give, one that nothing produces and the user does not give); an Auto block whose
    branches output different names where a later block requires one of them; a block instance used at
    two places in the tree.
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
