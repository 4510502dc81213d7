"""``"targets"`` in a workflow (ComfyUI's "queue selected output nodes"): only what those nodes need runs, and only
that part is checked, so the finished part of a graph runs while the rest is still being built."""

import copy

import pytest
from node_workflows import leaf_text2image

from diffblocks.nodes import Executor, Workflow, validate
from diffblocks.nodes.validation import check

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


def targeted(workflow, *targets):
    return {**copy.deepcopy(workflow), "targets": list(targets)}


def test_only_what_the_targets_need_runs(sd_repo):
    events = []
    outputs = Executor().run(targeted(leaf_text2image(str(sd_repo), steps=2), "input", "steps"), on_event=events.append)
    assert set(outputs) == {"load", "text", "input", "steps"}
    started = next(event for event in events if event["type"] == "job.started")
    assert set(started["nodes"]) == {"load", "text", "input", "steps"}
    # the argument still wins over the workflow's own
    assert set(Executor().run(targeted(leaf_text2image(str(sd_repo), steps=2), "input"), targets=["steps"])) == {
        "load", "steps"}


def test_a_problem_outside_what_the_targets_need_does_not_stop_them():
    workflow = leaf_text2image("embedded")
    workflow["nodes"]["decode"]["inputs"]["output_type"] = 5  # the end of the graph, still being built
    del workflow["nodes"]["denoise"]["inputs"]["latents"]
    assert {(p["node"], p["input"]) for p in validate(workflow)} == {("decode", "output_type"), ("denoise", "latents")}
    assert validate(targeted(workflow, "latents", "input")) == []
    assert [(p["node"], p["input"]) for p in validate(targeted(workflow, "denoise"))] == [("denoise", "latents")]


@pytest.mark.parametrize("targets, expected", [
    ("input", ('"targets" must be a list of node ids', None)),
    ([3], ('"targets" must be a list of node ids', None)),
    ([], ('"targets" is empty', None)),
    (["inputs"], ("target 'inputs' is not a node of the workflow (did you mean input?)", None)),
    (["decode"], ("is bypassed, so it cannot be a target", "decode")),
])
def test_targets_that_cannot_run_are_refused_naming_the_problem(targets, expected):
    workflow = {**leaf_text2image("embedded"), "targets": targets}
    workflow["nodes"]["decode"]["bypass"] = True  # the last node: nothing else misses it
    problems = validate(workflow)
    assert len(problems) == 1 and expected[0] in problems[0]["message"], problems
    assert problems[0]["node"] == expected[1]


def test_targets_survive_a_round_trip_and_a_bypass():
    workflow = targeted(leaf_text2image("embedded"), "latents")
    assert Workflow.from_json(workflow).to_json() == workflow
    assert "targets" not in Workflow.from_json(leaf_text2image("embedded")).to_json()
    workflow["nodes"]["decode"]["bypass"] = True
    resolved = check(workflow)  # parsed, the bypassed node taken out: the targets stay
    assert "decode" not in resolved.nodes
    assert resolved.targets == ["latents"] and resolved.order() == ["load", "text", "input", "steps", "latents"]
