"""A workflow: nodes by id, each a node type and its inputs (JSON constants or links to another node's output).

JSON: ``{"nodes": {"<id>": {"type": "<node type>", "inputs": {"<name>": <value> | {"node": "<id>", "output": "<name>"}}}}}``;
a node may carry ``"bypass": true`` (ComfyUI's Ctrl+B): it does not run, and what it would pass on flows past it
(``bypass.py``). ``"targets": ["<id>", ...]`` beside ``"nodes"`` runs only what those nodes need (ComfyUI's "queue
selected output nodes").
Converts both ways with pipelines: :meth:`Workflow.from_pipeline` makes one node per top-level block wired by
name (and a ``LoadComponents`` node for the pipeline's repo), :meth:`Workflow.to_blocks` turns a chain of block
nodes back into a ``SequentialPipelineBlocks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from ..components.errors import WorkflowError
from ..components.errors.nodes import problem


@dataclass(frozen=True)
class Link:
    """An input wired to output ``output`` of node ``node``."""

    node: str
    output: str

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "output": self.output}


def _is_link(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"node", "output"}


@dataclass
class NodeSpec:
    type: str
    inputs: dict[str, Any] = field(default_factory=dict)
    bypass: bool = False

    def links(self) -> dict[str, Link]:
        return {n: v for n, v in self.inputs.items() if isinstance(v, Link)}

    def constants(self) -> dict[str, Any]:
        return {n: v for n, v in self.inputs.items() if not isinstance(v, Link)}


class Workflow:
    """Nodes by id. Build from JSON with :meth:`from_json`, check with :func:`diffblocks.nodes.validate`."""

    def __init__(self, nodes: dict[str, NodeSpec] | None = None, targets: list[str] | None = None):
        self.nodes: dict[str, NodeSpec] = dict(nodes or {})
        self.targets = None if targets is None else list(targets)  # None: every node runs

    # --- JSON ---------------------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, obj: Any) -> "Workflow":
        """Raises WorkflowError (every shape problem) when ``obj`` is not shaped like a workflow."""
        if isinstance(obj, Workflow):
            return obj
        nodes = obj.get("nodes") if isinstance(obj, dict) else None
        if not isinstance(nodes, dict):
            raise WorkflowError.one(None, None, 'a workflow is a JSON object {"nodes": {"<id>": {"type": ..., "inputs": {...}}}}')
        problems, parsed = [], {}
        targets = obj.get("targets")
        if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
            problems.append(problem(None, None, f'"targets" must be a list of node ids, got {targets!r}'))
        for node_id, node in nodes.items():
            if not isinstance(node, dict) or not isinstance(node.get("type"), str):
                problems.append(problem(node_id, None, 'a node is an object with a "type" string and an "inputs" object'))
                continue
            inputs = node.get("inputs", {})
            if not isinstance(inputs, dict):
                problems.append(problem(node_id, None, f'"inputs" must be an object, got {type(inputs).__name__}'))
                continue
            bypass = node.get("bypass", False)
            if not isinstance(bypass, bool):
                problems.append(problem(node_id, None, f'"bypass" must be true or false, got {bypass!r}'))
                continue
            parsed[node_id] = NodeSpec(node["type"], {
                name: Link(str(v["node"]), str(v["output"])) if _is_link(v) else v for name, v in inputs.items()},
                bypass)
        if problems:
            raise WorkflowError(problems)
        return cls(parsed, targets)

    def to_json(self) -> dict[str, Any]:
        return {"nodes": {node_id: {"type": spec.type, "inputs": {
            name: value.to_json() if isinstance(value, Link) else value for name, value in spec.inputs.items()},
            **({"bypass": True} if spec.bypass else {})} for node_id, spec in self.nodes.items()},
            **({"targets": list(self.targets)} if self.targets is not None else {})}

    # --- structure ----------------------------------------------------------------------------------------
    def graph(self) -> nx.DiGraph:
        """Edges from each node to the nodes reading its outputs (links to missing nodes are left out)."""
        graph = nx.DiGraph()
        graph.add_nodes_from(self.nodes)
        for node_id, spec in self.nodes.items():
            for link in spec.links().values():
                if link.node in self.nodes:
                    graph.add_edge(link.node, node_id)
        return graph

    def order(self, targets: list[str] | None = None) -> list[str]:
        """The nodes to run in topological order: all, or only those ``targets`` (default: the workflow's own) need
        (a partial run)."""
        graph = self.graph()
        needed = set(graph)
        targets = self.targets if targets is None else targets
        if targets is not None:
            needed = set(targets).union(*(nx.ancestors(graph, t) for t in targets))
        position = {node_id: i for i, node_id in enumerate(self.nodes)}  # ties keep the workflow's own order
        return [n for n in nx.lexicographical_topological_sort(graph, key=position.get) if n in needed]

    # --- pipelines ----------------------------------------------------------------------------------------
    @classmethod
    def from_pipeline(cls, pipe, repo: str | None = None) -> "Workflow":
        """One node per top-level block of ``pipe.blocks`` (in order), each input wired to the latest earlier
        node that outputs that name, and a ``LoadComponents`` node for ``repo`` (default: the pipeline's)."""
        from .catalog import block_node_type

        repo = repo or pipe.pretrained_model_name_or_path
        nodes: dict[str, NodeSpec] = {}
        if repo is not None:
            nodes["load"] = NodeSpec("LoadComponents", {"repo": str(repo)})
        blocks = pipe.blocks
        children = list(blocks.sub_blocks.items()) if type(blocks).__name__ == "SequentialPipelineBlocks" \
            or _is_plain_sequential(blocks) else [("blocks", blocks)]
        produced: dict[str, Link] = {}
        for name, block in children:
            node = block_node_type(block)
            inputs: dict[str, Any] = {"components": Link("load", "components")} if "load" in nodes else {}
            for input_name in node.inputs:
                if input_name in produced:
                    inputs[input_name] = produced[input_name]
            nodes[name] = NodeSpec(node.name, inputs)
            for output in node.outputs:
                produced[output] = Link(name, output)
        return cls(nodes)

    def to_blocks(self):
        """The block nodes, in order, as one ``SequentialPipelineBlocks`` (node ids become block names); bypassed
        nodes are left out.

        Raises:
            WorkflowError: a node is not a block node, or the block nodes do not form a chain.
        """
        from ..modular_pipelines.sequential import SequentialPipelineBlocks
        from .block_nodes import BlockNode
        from .bypass import without_bypassed
        from .catalog import node_type, node_types

        workflow = without_bypassed(self, node_types())
        order = workflow.order()
        blocks, problems = [], []
        for node_id in order:
            node = node_type(workflow.nodes[node_id].type)
            if isinstance(node, BlockNode):
                blocks.append((node_id, node.block))
            elif node is None or node.name not in ("LoadComponents",):
                problems.append(problem(node_id, None, f"'{workflow.nodes[node_id].type}' is not a block node; "
                                        "only block nodes and LoadComponents convert to blocks"))
        block_ids = [b for b, _ in blocks]
        if not problems and not _is_chain(workflow.graph().subgraph(block_ids), block_ids):
            problems.append(problem(None, None, "the block nodes do not form one chain (each reading only earlier ones)"))
        if problems:
            raise WorkflowError(problems)
        return SequentialPipelineBlocks.from_blocks_dict(dict(blocks))


def _is_plain_sequential(blocks) -> bool:
    from ..modular_pipelines.sequential import SequentialPipelineBlocks

    return isinstance(blocks, SequentialPipelineBlocks) and type(blocks).__module__.startswith("diffblocks.modular")


def _is_chain(graph: nx.DiGraph, order: list[str]) -> bool:
    """Whether the nodes form one weakly connected group (an order exists; it is the topological one)."""
    return len(order) <= 1 or nx.is_weakly_connected(graph)
