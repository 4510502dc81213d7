"""Every problem of a workflow, found before anything runs, each naming the node and the input.

Unknown node types and inputs (with the closest valid name), links to missing nodes or outputs, wires whose
socket types do not fit, constants their input refuses (type or declared constraint), required inputs left
empty, block nodes with neither their components nor a bundle, and cycles. Bypassed nodes are taken out first
(bypass.py): they neither run nor are checked, and what flows past them is checked where it arrives. A workflow
with ``targets`` is checked only where those nodes need it, so the finished part of a graph runs while the rest
is still being built.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from ..components.errors import WorkflowError
from ..components.errors.base import _did_you_mean
from ..components.errors.nodes import problem
from .block_nodes import BlockNode
from .bypass import without_bypassed
from .catalog import node_types
from .node_type import NodeType
from .sockets import fits
from .workflow import Link, Workflow


def validate(workflow: Workflow | dict) -> list[dict[str, Any]]:
    """The workflow's problems as ``[{"node", "input", "message"}]``; ``[]`` when it can run."""
    types = node_types()
    try:
        parsed = Workflow.from_json(workflow)
    except WorkflowError as err:
        return err.errors
    problems = _target_problems(parsed)
    workflow = without_bypassed(parsed, types)
    cycles = _cycles(workflow)
    if workflow.targets is not None and not problems and not cycles:
        needed = set(workflow.order())
        workflow = Workflow({node_id: spec for node_id, spec in workflow.nodes.items() if node_id in needed})
    for node_id, spec in workflow.nodes.items():
        node = types.get(spec.type)
        if node is None:
            problems.append(problem(node_id, None, f"unknown node type '{spec.type}'{_did_you_mean(spec.type, types)}"))
            continue
        problems += _node_problems(workflow, node_id, node, types)
    return problems + cycles


def check(workflow: Workflow | dict) -> Workflow:
    """The workflow, parsed; raises WorkflowError listing every problem when there is any."""
    problems = validate(workflow)
    if problems:
        raise WorkflowError(problems)
    return _parsed(workflow, node_types())


def _parsed(workflow: Workflow | dict, types: dict[str, NodeType]) -> Workflow:
    """The workflow parsed (WorkflowError for its shape), its bypassed nodes taken out."""
    return without_bypassed(Workflow.from_json(workflow), types)


def _target_problems(workflow: Workflow) -> list[dict]:
    if workflow.targets is None:
        return []
    if not workflow.targets:
        return [problem(None, None, '"targets" is empty: name the nodes to run, or leave it out to run them all')]
    found = []
    for target in workflow.targets:
        spec = workflow.nodes.get(target)
        if spec is None:
            found.append(problem(None, None, f"target '{target}' is not a node of the workflow"
                                 f"{_did_you_mean(target, workflow.nodes)}"))
        elif spec.bypass:
            found.append(problem(target, None, "is bypassed, so it cannot be a target (nothing would run for it)"))
    return found


def _node_problems(workflow: Workflow, node_id: str, node: NodeType, types: dict[str, NodeType]) -> list[dict]:
    spec = workflow.nodes[node_id]
    found = []
    for name, value in spec.inputs.items():
        entry = node.inputs.get(name)
        if entry is None:
            found.append(problem(node_id, name, f"{node.name} has no input '{name}'{_did_you_mean(name, node.inputs)}"))
        elif isinstance(value, Link):
            found += _link_problems(workflow, node_id, name, value, entry, types)
        elif value is not None and (message := node.check_value(name, value)):
            found.append(problem(node_id, name, message))
    given = {n for n, v in spec.inputs.items() if v is not None}
    for name, entry in node.inputs.items():
        if entry.required and name not in given:
            found.append(problem(node_id, name, f"required input '{name}' is not set (give a value or wire an output)"))
    if isinstance(node, BlockNode) and "components" not in given:
        missing = [s.name for s in node.block.expected_components
                   if s.default_creation_method == "from_pretrained" and s.name not in given]
        if missing:
            found.append(problem(node_id, "components", f"needs the components {', '.join(missing)}: wire a "
                                 "LoadComponents 'components' output (or each component) into it"))
    if isinstance(node, BlockNode):
        found += _stateful_wires(workflow, node_id, node, types)
    return found


def _stateful_wires(workflow: Workflow, node_id: str, node: BlockNode, types) -> list[dict]:
    """A node reading timesteps from another node must also read the scheduler that node set them on: the
    loaded scheduler (from the bundle) has no timesteps set, and the run would fail at its first step."""
    spec = workflow.nodes[node_id]
    timesteps = spec.inputs.get("timesteps")
    if "scheduler" not in node.stateful or spec.inputs.get("scheduler") is not None or not isinstance(timesteps, Link):
        return []
    source = workflow.nodes.get(timesteps.node)
    source_type = types.get(source.type) if source is not None else None
    if source_type is None or "scheduler" not in source_type.outputs:
        return []
    return [problem(node_id, "scheduler", f"wire the 'scheduler' output of node '{timesteps.node}' into it: that is "
                    "the scheduler its timesteps were set on (the loaded one has none set)")]


def _link_problems(workflow, node_id, name, link: Link, entry, types) -> list[dict]:
    source_spec = workflow.nodes.get(link.node)
    if source_spec is None:
        hint = _did_you_mean(link.node, workflow.nodes)
        return [problem(node_id, name, f"is wired to node '{link.node}', which is not in the workflow{hint}")]
    source = types.get(source_spec.type)
    if source is None:
        return []  # reported on that node
    output = source.outputs.get(link.output)
    if output is None:
        if source.open_outputs:
            return []
        hint = _did_you_mean(link.output, source.outputs)
        return [problem(node_id, name, f"is wired to output '{link.output}' of node '{link.node}' "
                        f"({source.name}), which has no such output{hint}; outputs: {', '.join(source.outputs)}")]
    if not fits(output.socket, entry.socket, entry.schema):
        expected = entry.socket or entry.schema.get("type") or "a JSON value"
        return [problem(node_id, name, f"expects {expected}, but output '{link.output}' of node '{link.node}' "
                        f"carries {output.socket}")]
    return []


def _cycles(workflow: Workflow) -> list[dict]:
    graph = workflow.graph()
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return []
    path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
    return [problem(cycle[0][0], None, f"the workflow has a cycle: {path}")]
