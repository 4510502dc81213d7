"""Validation reports every problem at once, each naming the node and the input, before anything runs."""

import pytest
from node_workflows import changed, leaf_text2image, link

from diffblocks.nodes import Executor, Workflow, WorkflowError, validate

GOOD = leaf_text2image("embedded")


def broken(node, **inputs):
    return changed(GOOD, node, **inputs)


def with_node(node_id, spec):
    workflow = changed(GOOD, "load")
    workflow["nodes"][node_id] = spec
    return workflow


CASES = {
    "unknown type": (with_node("x", {"type": "StableDiffusionTextEncoderStepp", "inputs": {}}), "x", None,
                     "did you mean StableDiffusionTextEncoderStep"),
    "unknown input": (broken("text", promt="a cat"), "text", "promt", "did you mean prompt"),
    "constraint": (broken("steps", num_inference_steps=0), "steps", "num_inference_steps", "> 0"),
    "json type": (broken("text", prompt=5), "text", "prompt", "prompt"),
    "socket": (broken("denoise", latents=link("text", "prompt_embeds"), timesteps=link("load", "scheduler")),
               "denoise", "timesteps", "expects tensor, but output 'scheduler' of node 'load' carries scheduler"),
    "missing node": (broken("decode", latents=link("denoiser", "latents")), "decode", "latents", "did you mean denoise"),
    "missing output": (broken("decode", latents=link("denoise", "latent")), "decode", "latents", "did you mean latents"),
    "required": (broken("input", prompt_embeds=None), "input", "prompt_embeds", "required input 'prompt_embeds'"),
    "cycle": (broken("text", prompt_embeds=link("decode", "images")), "text", None, "cycle"),
    "no components": (broken("steps", components=None), "steps", "components", "scheduler"),
    "seed": (broken("latents", seed=-3), "latents", "seed", "integer"),
    "unset scheduler": (broken("denoise", scheduler=None), "denoise", "scheduler",
                        "wire the 'scheduler' output of node 'steps'"),
    "image reference": (with_node("img", {"type": "LoadImage", "inputs": {"image": {"artifact": "../etc/passwd"}}}),
                        "img", "image", "artifact reference"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_names_node_input_and_what_is_wrong(case):
    workflow, node, input_name, phrase = CASES[case]
    problems = validate(workflow)
    assert any(p["node"] == node and p["input"] == input_name and phrase in p["message"] for p in problems), problems


def test_a_good_workflow_has_no_problems_and_all_problems_come_together():
    assert validate(GOOD) == []
    workflow = changed(broken("text", promt="x"), "steps", num_inference_steps=0)
    assert {(p["node"], p["input"]) for p in validate(workflow)} == {("text", "promt"), ("steps", "num_inference_steps")}


def test_run_refuses_a_bad_workflow_before_anything_runs():
    executor = Executor()
    events = []
    with pytest.raises(WorkflowError, match="2 problems") as info:
        executor.run(changed(broken("text", promt="x"), "steps", num_inference_steps=0), on_event=events.append)
    assert len(info.value.errors) == 2 and events == [] and executor.cache_info()["entries"] == 0


@pytest.mark.parametrize("bad", [[], {"nodes": []}, {"nodes": {"a": 3}}, {"nodes": {"a": {"type": "X", "inputs": 2}}}])
def test_malformed_json_is_one_clear_problem(bad):
    problems = validate(bad)
    assert problems and all("message" in p for p in problems)
    with pytest.raises(WorkflowError):
        Workflow.from_json(bad)


def test_json_round_trips():
    assert Workflow.from_json(GOOD).to_json() == GOOD
