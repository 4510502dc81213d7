"""Bypassed nodes (``"bypass": true`` on a node, ComfyUI's Ctrl+B), taken out of a workflow before it is checked
or run.

A wire from a bypassed node's output comes instead from what feeds the node's matching input: the input of the
output's own name when its socket fits, else the first input of the output's socket (a ScaleImage passes its image
on, a LoadLoRA its components). A constant on that input becomes the constant of the inputs the output fed; a
chain of bypassed nodes is followed to its start. An output with no matching input, or whose matching input is
empty, feeds nothing: the inputs it fed are left unset (a block node then takes that component from its bundle,
and a required input says it is not set).
"""

from __future__ import annotations

from typing import Any

from .node_type import NodeType
from .sockets import fits
from .workflow import Link, NodeSpec, Workflow

_UNSET = object()


def without_bypassed(workflow: Workflow, types: dict[str, NodeType]) -> Workflow:
    """``workflow`` with its bypassed nodes taken out and their wires passed on; the same object when none is."""
    bypassed = {node_id for node_id, spec in workflow.nodes.items() if spec.bypass}
    if not bypassed:
        return workflow

    def source(value: Any, passed: frozenset[str]) -> Any:
        """What an input wired or set to ``value`` gets once the bypassed nodes are gone (``_UNSET``: nothing)."""
        if not isinstance(value, Link) or value.node not in bypassed:
            return value
        if value.node in passed:  # a loop of bypassed nodes passes nothing on
            return _UNSET
        spec = workflow.nodes[value.node]
        node = types.get(spec.type)
        name = _matching_input(node, value.output) if node is not None else None
        if name is None or name not in spec.inputs:
            return _UNSET
        return source(spec.inputs[name], passed | {value.node})

    nodes = {}
    for node_id, spec in workflow.nodes.items():
        if node_id in bypassed:
            continue
        inputs = {name: source(value, frozenset()) for name, value in spec.inputs.items()}
        nodes[node_id] = NodeSpec(spec.type, {name: value for name, value in inputs.items() if value is not _UNSET})
    return Workflow(nodes, workflow.targets)


def _matching_input(node: NodeType, output_name: str) -> str | None:
    """The input of ``node`` that a bypass passes on as its output ``output_name``, or None."""
    output = node.outputs.get(output_name)
    if output is None:
        return None
    same = node.inputs.get(output_name)
    if same is not None and (same.socket == output.socket or fits(output.socket, same.socket, same.schema)):
        return output_name
    return next((name for name, entry in node.inputs.items() if entry.socket == output.socket), None)
