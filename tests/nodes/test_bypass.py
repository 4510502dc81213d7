"""Bypassed nodes (``"bypass": true``, ComfyUI's Ctrl+B): taken out before a workflow is checked or run, each wire
from their outputs passed on from the matching input (its name, else its socket), constants and chains included;
on the embedded model a hires fix with its scale node bypassed draws what the two passes wired directly draw."""

import copy

import numpy as np
import pytest
from node_workflows import leaf_text2image, link

from diffblocks.nodes import Executor, Workflow, node_types, validate
from diffblocks.nodes.bypass import without_bypassed
from diffblocks.nodes.validation import check

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give

LOAD = link("load", "components")
STEPS = 3


def hires(**scale_inputs):
    return {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
        "t2i": {"type": "preset:sd15-text2image", "inputs": {
            "components": LOAD, "prompt": "a seven", "seed": 1, "num_inference_steps": STEPS}},
        "scale": {"type": "ScaleImage", "inputs": {"image": link("t2i", "images"), "scale_by": 2.0, **scale_inputs}},
        "i2i": {"type": "preset:sd15-image2image", "inputs": {
            "components": LOAD, "image": link("scale", "image"), "prompt": "a seven", "seed": 2, "strength": 0.5,
            "num_inference_steps": STEPS}},
    }}


def bypassed(workflow, *node_ids):
    new = copy.deepcopy(workflow)
    for node_id in node_ids:
        new["nodes"][node_id]["bypass"] = True
    return new


def without(workflow, node_id, **inputs):
    """``workflow`` with ``node_id`` removed and ``i2i``'s inputs set to ``inputs`` (None: left out)."""
    new = copy.deepcopy(workflow)
    del new["nodes"][node_id]
    for name, value in inputs.items():
        new["nodes"]["i2i"]["inputs"].pop(name)
        if value is not None:
            new["nodes"]["i2i"]["inputs"][name] = value
    return new


def resolved(workflow):
    return without_bypassed(Workflow.from_json(workflow), node_types()).to_json()


def test_a_wire_from_a_bypassed_node_comes_from_what_feeds_its_input_of_the_same_name():
    assert check(bypassed(hires(), "scale")).to_json() == without(hires(), "scale", image=link("t2i", "images"))


def test_a_constant_on_the_matching_input_becomes_the_constant_of_the_inputs_it_fed():
    image = {"artifact": "ab" * 32}
    workflow = bypassed(hires(image=image), "scale")
    assert resolved(workflow) == without(hires(), "scale", image=image)


def test_a_chain_of_bypassed_nodes_is_followed_to_its_start():
    workflow = hires()
    workflow["nodes"]["scale2"] = {"type": "ScaleImage", "inputs": {"image": link("scale", "image"), "scale_by": 1.5}}
    workflow["nodes"]["i2i"]["inputs"]["image"] = link("scale2", "image")
    expected = without(hires(), "scale", image=link("t2i", "images"))
    assert resolved(bypassed(workflow, "scale", "scale2")) == expected
    # bypassing only the second passes the first one's image on
    assert resolved(bypassed(workflow, "scale2"))["nodes"]["i2i"]["inputs"]["image"] == link("scale", "image")


def test_an_output_of_another_socket_passes_on_the_first_input_of_its_socket_and_one_without_any_feeds_nothing():
    workflow = {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
        "pad": {"type": "PadImage", "inputs": {"image": {"artifact": "cd" * 32}, "right": 16}, "bypass": True},
        "inpaint": {"type": "preset:sd15-inpaint", "inputs": {
            "components": LOAD, "prompt": "a seven", "image": link("pad", "image"), "mask_image": link("pad", "mask"),
            "width": link("pad", "width"), "height": link("pad", "height")}}}}
    inputs = resolved(workflow)["nodes"]["inpaint"]["inputs"]
    # mask is an image output: the first image input (the unpadded image) goes on; width and height have no
    # integer input to come from, so the preset's own defaults apply
    assert inputs == {"components": LOAD, "prompt": "a seven", "image": {"artifact": "cd" * 32},
                      "mask_image": {"artifact": "cd" * 32}}


def test_an_input_left_empty_by_a_bypass_is_reported_where_it_arrives():
    workflow = bypassed(hires(), "scale")
    del workflow["nodes"]["scale"]["inputs"]["image"]
    problems = validate(workflow)
    assert [(p["node"], p["input"]) for p in problems] == [("i2i", "image")]
    assert "required input 'image' is not set" in problems[0]["message"]


def test_a_loop_of_bypassed_nodes_passes_nothing_on():
    workflow = hires()
    workflow["nodes"]["scale"]["inputs"]["image"] = link("scale2", "image")
    workflow["nodes"]["scale2"] = {"type": "ScaleImage", "inputs": {"image": link("scale", "image")}}
    assert "image" not in resolved(bypassed(workflow, "scale", "scale2"))["nodes"]["i2i"]["inputs"]


def test_bypass_must_be_a_boolean_and_survives_a_round_trip():
    workflow = hires()
    workflow["nodes"]["scale"]["bypass"] = "yes"
    problems = validate(workflow)
    assert problems == [{"node": "scale", "input": None, "message": "\"bypass\" must be true or false, got 'yes'"}]
    kept = bypassed(hires(), "scale")
    assert Workflow.from_json(kept).to_json() == kept
    assert "bypass" not in Workflow.from_json(hires()).to_json()["nodes"]["scale"]


def test_a_bypassed_scale_node_does_not_run_and_the_image_equals_the_passes_wired_directly():
    executor = Executor(preview_every=0)
    events = []
    outputs = executor.run(bypassed(hires(), "scale"), on_event=events.append)
    assert "scale" not in outputs
    started = next(event for event in events if event["type"] == "job.started")
    assert "scale" not in started["nodes"]
    assert not any(event.get("node") == "scale" for event in events)
    direct = Executor(preview_every=0).run(without(hires(), "scale", image=link("t2i", "images")))
    np.testing.assert_array_equal(np.asarray(outputs["i2i"]["images"][0]), np.asarray(direct["i2i"]["images"][0]))
    # and the bypass really changes the picture: with the scale node it is twice the size
    scaled = executor.run(hires())
    assert scaled["i2i"]["images"][0].size == tuple(2 * side for side in direct["i2i"]["images"][0].size)


def test_to_blocks_leaves_a_bypassed_node_out():
    workflow = leaf_text2image("embedded")
    assert list(Workflow.from_json(workflow).to_blocks().sub_blocks) == [
        "text", "input", "steps", "latents", "denoise", "decode"]
    assert list(Workflow.from_json(bypassed(workflow, "input")).to_blocks().sub_blocks) == [
        "text", "steps", "latents", "denoise", "decode"]
