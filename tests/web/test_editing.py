"""Editing the graph as ComfyUI users expect: kept across reloads, undo and redo, copy and paste, Ctrl+Enter."""

from __future__ import annotations

import re

from page_helpers import expect, node, open_editor, widget

DOCUMENT = "window.diffblocks.document()"


def prompt_box(page, node_id="text"):
    return node(page, node_id).locator('[data-input="prompt"] textarea')


def select(page, *node_ids):
    """Click the first node's title, then Ctrl+click the others (React Flow's multi-selection key)."""
    for index, node_id in enumerate(node_ids):
        node(page, node_id).locator(".node-title").click(modifiers=["Control"] if index else [])


def move(page, node_id, dx, dy):
    box = node(page, node_id).locator(".node-header").bounding_box()
    x, y = box["x"] + 20, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=10)
    page.mouse.up()


def test_the_graph_is_kept_across_a_reload(page, server):
    open_editor(page, server)
    prompt_box(page).fill("a handwritten digit three")
    widget(page, "latents", "seed").fill("5")
    select(page, "output")
    page.keyboard.press("Delete")
    expect(node(page, "output")).to_have_count(0)
    edited = page.evaluate(DOCUMENT)

    page.reload()  # at once: the page stores the graph as it is hidden, not only after a pause
    expect(prompt_box(page)).to_have_value("a handwritten digit three")
    expect(node(page, "output")).to_have_count(0)
    assert page.evaluate(DOCUMENT) == edited

    page.get_by_role("button", name="Reset").click()
    page.reload()
    expect(prompt_box(page)).to_have_value("a handwritten digit seven")
    expect(node(page, "output")).to_be_visible()

    # what another version of the page kept and this one cannot read: the default graph, no errors
    page.evaluate("localStorage.setItem('diffblocks.workflow', JSON.stringify({nodes: 5}))")
    page.reload()
    expect(node(page, "output")).to_be_visible()
    expect(prompt_box(page)).to_have_value("a handwritten digit seven")
    assert page.problems == []


def test_undo_and_redo_step_through_typing_deleting_moving_and_loading(page, server):
    open_editor(page, server)
    undo = page.get_by_role("button", name="Undo")
    redo = page.get_by_role("button", name="Redo")
    expect(undo).to_be_disabled()
    original = page.evaluate(DOCUMENT)
    wires = page.locator(".react-flow__edge")
    all_wires = wires.count()
    decode_wires = page.evaluate("window.diffblocks.state().edges.filter((e) => [e.source, e.target].includes('decode'))")
    assert len(decode_wires) == 3  # components, latents, and the wire into the Output node

    prompt_box(page).press_sequentially(" and a three")  # a keystroke at a time: still one step to undo
    typed = page.evaluate(DOCUMENT)
    select(page, "decode")
    page.keyboard.press("Delete")
    expect(node(page, "decode")).to_have_count(0)
    expect(wires).to_have_count(all_wires - 3)
    deleted = page.evaluate(DOCUMENT)
    move(page, "latents", 160, 120)
    moved = page.evaluate(DOCUMENT)
    assert moved["ui"]["positions"]["latents"] != deleted["ui"]["positions"]["latents"]

    page.keyboard.press("Control+z")
    assert page.evaluate(DOCUMENT) == deleted
    page.keyboard.press("Control+z")
    expect(node(page, "decode")).to_be_visible()
    expect(wires).to_have_count(all_wires)
    assert page.evaluate(DOCUMENT) == typed
    page.keyboard.press("Control+z")
    expect(prompt_box(page)).to_have_value("a handwritten digit seven")
    assert page.evaluate(DOCUMENT) == original
    expect(undo).to_be_disabled()
    page.keyboard.press("Control+z")  # nothing left: nothing changes
    assert page.evaluate(DOCUMENT) == original

    page.keyboard.press("Control+Shift+z")
    assert page.evaluate(DOCUMENT) == typed
    page.keyboard.press("Control+y")
    assert page.evaluate(DOCUMENT) == deleted
    redo.click()
    assert page.evaluate(DOCUMENT) == moved
    expect(redo).to_be_disabled()

    page.get_by_role("button", name="Reset").click()  # a loaded graph replaces this one, undoably
    assert page.evaluate(DOCUMENT) == original
    undo.click()
    assert page.evaluate(DOCUMENT) == moved
    # an edit after an undo drops what could be redone
    widget(page, "steps", "num_inference_steps").fill("6")
    expect(redo).to_be_disabled()
    assert page.problems == []


def test_copied_nodes_paste_under_the_pointer_with_fresh_ids_and_their_wires(page, server, shots):
    open_editor(page, server)
    select(page, "text", "input")
    page.keyboard.press("Control+c")
    pane = page.locator(".react-flow__pane").bounding_box()
    pointer = (pane["x"] + 80, pane["y"] + pane["height"] - 260)
    page.mouse.move(*pointer)
    page.keyboard.press("Control+v")

    # the wire between the two copies joins them; the wire from the loader, outside the copy, is left out
    nodes = page.evaluate("window.diffblocks.workflow()")["nodes"]
    assert nodes["text_encoder"] == {"type": "StableDiffusionTextEncoderStep",
                                     "inputs": {"prompt": "a handwritten digit seven"}}
    assert nodes["input2"]["inputs"] == {"prompt_embeds": {"node": "text_encoder", "output": "prompt_embeds"},
                                         "negative_prompt_embeds": {"node": "text_encoder",
                                                                    "output": "negative_prompt_embeds"}}
    assert nodes["text"]["inputs"]["components"] == {"node": "load", "output": "components"}  # the original kept
    # the copy's top left corner under the pointer, the copies selected instead of the originals
    box = node(page, "text_encoder").bounding_box()
    assert abs(box["x"] - pointer[0]) <= 2 and abs(box["y"] - pointer[1]) <= 2, (box, pointer)
    expect(node(page, "text_encoder")).to_have_class(re.compile(r"\bselected\b"))
    expect(node(page, "input2")).to_have_class(re.compile(r"\bselected\b"))
    expect(node(page, "text")).not_to_have_class(re.compile(r"\bselected\b"))
    expect(node(page, "text_encoder").locator(".input-row.has-error")).to_have_count(1)  # components: not wired
    page.screenshot(path=str(shots / "11-pasted.png"))

    page.keyboard.press("Control+Shift+v")  # with the wires from nodes outside the copy
    nodes = page.evaluate("window.diffblocks.workflow()")["nodes"]
    assert nodes["text_encoder2"]["inputs"] == {"components": {"node": "load", "output": "components"},
                                                "prompt": "a handwritten digit seven"}
    assert nodes["input3"]["inputs"]["prompt_embeds"] == {"node": "text_encoder2", "output": "prompt_embeds"}
    page.keyboard.press("Control+z")
    expect(node(page, "text_encoder2")).to_have_count(0)
    expect(node(page, "input3")).to_have_count(0)

    # another tab pastes what this one copied
    other = page.context.new_page()
    open_editor(other, server)
    before = other.evaluate("window.diffblocks.workflow()")["nodes"]
    other.keyboard.press("Control+v")
    after = other.evaluate("window.diffblocks.workflow()")["nodes"]
    assert sorted(after[key]["type"] for key in after.keys() - before.keys()) == [
        "StableDiffusionInputStep", "StableDiffusionTextEncoderStep"]
    assert page.problems == []


def test_ctrl_enter_runs_the_graph_from_the_prompt_box(page, server):
    open_editor(page, server)
    prompt = prompt_box(page)
    prompt.fill("a handwritten digit five")
    prompt.press("Control+Enter")
    status = page.get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", "done", timeout=180_000)
    job = server.request("GET", f"/api/jobs/{status.get_attribute('data-job')}")
    assert job["status"] == "done"
    expect(prompt).to_have_value("a handwritten digit five")  # the key did not type a new line
