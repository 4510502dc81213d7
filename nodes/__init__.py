"""The node engine: every block a node, workflows as JSON, re-running only what a change touches.

``catalog()`` lists the node types; ``Workflow`` holds a graph of nodes (JSON both ways, from a pipeline and back
to blocks); ``validate`` finds every problem before anything runs; ``Executor`` runs workflows with an output
cache keyed by what each node computes from, reporting events as it goes.
"""

from ..components.errors import ArtifactError, Interrupted, NodeRunError, WorkflowError
from .artifacts import ArtifactStore
from .bundle import ComponentsBundle
from .catalog import catalog, node_type, node_types, register, register_repo
from .executor import Executor
from .validation import validate
from .workflow import Link, Workflow

__all__ = ["ArtifactError", "ArtifactStore", "ComponentsBundle", "Executor", "Interrupted", "Link", "NodeRunError",
           "Workflow", "WorkflowError", "catalog", "node_type", "node_types", "register", "register_repo", "validate"]
