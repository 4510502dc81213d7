"""The example workflows in examples/workflows (documents the editor's Load button takes): each validates against
the catalog and runs on the embedded model into an image of the size it is built to make."""

import json
from pathlib import Path

import pytest

from diffblocks.nodes import Executor, validate

WORKFLOWS = Path(__file__).resolve().parents[2] / "examples" / "workflows"
# the node whose images each example ends with, and their size: twice the model's 32 px, or 16 px added each side
ENDS = {"hires-fix.json": ("second", (64, 64)), "outpaint.json": ("paint", (64, 32))}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_example_is_listed_here():
    assert sorted(path.name for path in WORKFLOWS.glob("*.json")) == sorted(ENDS)


@pytest.mark.parametrize("name", sorted(ENDS))
def test_an_example_validates_and_runs_on_the_embedded_model(name):
    document = json.loads((WORKFLOWS / name).read_text())
    assert validate(document) == []
    node, size = ENDS[name]
    assert document["ui"]["previews"]["output"] == {"node": node, "output": "images"}
    images = Executor(preview_every=0).run(document, targets=[node])[node]["images"]
    assert [image.size for image in images] == [size]
