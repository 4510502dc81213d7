"""The layers import downwards only: components (the bottom, with the errors) imports none of the others,
guiders only components, the core (modular_pipelines) neither blocks nor presets, the node engine nothing above it
(no server, no CLI), the server nothing above it (no CLI)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["components", "guiders", "modular_pipelines", "blocks", "presets", "nodes", "server", "cli"]
ALLOWED = {
    "components": set(),
    "guiders": {"components"},
    "modular_pipelines": {"components", "guiders"},
    "nodes": {"components", "guiders", "modular_pipelines", "blocks", "presets"},
    "server": {"components", "guiders", "modular_pipelines", "blocks", "presets", "nodes"},
}


def imported_layers(path: Path) -> set[str]:
    """The top-level diffblocks packages a module imports (relative imports resolved against its package)."""
    package = path.relative_to(ROOT).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("diffblocks."):
                parts = node.module.split(".")[1:]
            else:
                continue
            names = [parts[0]] if parts else [alias.name for alias in node.names]
            found.update(n for n in names if n in LAYERS)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below(layer):
    wrong = {}
    for path in sorted((ROOT / layer).rglob("*.py")):
        above = imported_layers(path) - ALLOWED[layer] - {layer}
        if above:
            wrong[path.relative_to(ROOT).as_posix()] = sorted(above)
    assert wrong == {}
