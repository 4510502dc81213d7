"""Editing the graph as ComfyUI users expect: kept across reloads, undo and redo, copy and paste, Ctrl+Enter."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from page_helpers import DOCUMENT, empty_spot, expect, move, node, open_editor, select, widget

HIRES_FIX = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "hires-fix.json"


def prompt_box(page, node_id="text"):
    return node(page, node_id).locator('[data-input="prompt"] textarea')


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

    # Ctrl+A, Ctrl+C, Ctrl+V: the whole graph twice, the copy wired within itself like the original
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+c")
    whole = page.evaluate("window.diffblocks.workflow()")["nodes"]
    page.keyboard.press("Control+v")
    doubled = page.evaluate("window.diffblocks.workflow()")["nodes"]
    assert len(doubled) == 2 * len(whole)
    assert doubled["decode2"]["inputs"]["latents"] == {"node": "denoise2", "output": "latents"}
    page.keyboard.press("Delete")  # the pasted copy is what is selected
    assert page.evaluate("window.diffblocks.workflow()")["nodes"] == whole

    # another tab pastes what this one copied
    other = page.context.new_page()
    open_editor(other, server)
    before = other.evaluate("window.diffblocks.workflow()")["nodes"]
    other.keyboard.press("Control+v")
    after = other.evaluate("window.diffblocks.workflow()")["nodes"]
    assert sorted(after[key]["type"] for key in after.keys() - before.keys()) == sorted(
        spec["type"] for spec in whole.values())
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


def drop_wire(page, handle, at):
    """Drag a wire from `handle` (a socket) and let it go at `at` on the canvas."""
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(*at, steps=12)
    page.mouse.up()


def test_double_clicking_the_canvas_opens_a_search_that_adds_the_node_there(page, server, shots):
    open_editor(page, server)
    at = empty_spot(page)
    page.mouse.dblclick(*at)
    search = page.get_by_test_id("node-search")
    expect(search.get_by_placeholder("Add a node…")).to_be_focused()
    box = search.bounding_box()
    assert abs(box["x"] - at[0]) <= 2 and abs(box["y"] - at[1]) <= 2
    page.keyboard.type("ddim")
    expect(search.get_by_role("option").first).to_have_attribute("data-type", "DDIMScheduler")
    page.screenshot(path=str(shots / "13-search.png"))
    page.keyboard.press("Enter")
    expect(search).to_have_count(0)
    added = node(page, "ddim_scheduler")
    expect(added).to_be_visible()
    placed = added.bounding_box()
    assert abs(placed["x"] - at[0]) <= 2 and abs(placed["y"] - at[1]) <= 2, (placed, at)

    at = empty_spot(page, across=0.2, top=False)  # near the bottom: the box opens upwards, to stay in view
    page.mouse.dblclick(*at)
    box = search.bounding_box()
    assert abs(box["x"] - at[0]) <= 2 and abs(box["y"] + box["height"] - at[1]) <= 2, (box, at)
    page.keyboard.type("scale image")
    page.keyboard.press("ArrowDown")  # the second match, then back to the first: the keys move the choice
    page.keyboard.press("ArrowUp")
    expect(search.get_by_role("option", selected=True)).to_have_attribute("data-type", "ScaleImage")
    page.keyboard.press("Escape")
    expect(search).to_have_count(0)
    expect(node(page, "scale_image")).to_have_count(0)
    page.keyboard.press("Control+z")  # the added node was one step
    expect(added).to_have_count(0)
    assert page.problems == []


def test_a_wire_left_on_the_canvas_offers_the_nodes_that_take_it_and_wires_the_one_chosen(page, server, shots):
    open_editor(page, server)
    at = empty_spot(page)
    drop_wire(page, node(page, "decode").locator('[data-output="images"] .react-flow__handle'), at)
    search = page.get_by_test_id("node-search")
    expect(search.locator(".node-search-hint")).to_have_text("takes image")
    offered = [option.get_attribute("data-type") for option in search.get_by_role("option").all()]
    assert "ScaleImage" in offered and "PreviewImage" in offered
    assert "DDIMScheduler" not in offered and "StableDiffusionTextEncoderStep" not in offered
    # the wire's family (and the nodes of every family) first: SDXL's and FLUX.1's after SD's for an SD decoder
    catalog = server.request("GET", "/api/nodes")
    families = [catalog[kind]["category"].replace("presets/", "").split("/")[0] if kind in catalog and "/" in
                catalog[kind]["category"] else None for kind in offered]
    other = [family not in (None, "stable_diffusion") for family in families]
    assert "flux" in families and other == sorted(other), list(zip(offered, families))
    page.screenshot(path=str(shots / "14-wire-search.png"))
    page.keyboard.type("scale")
    page.keyboard.press("Enter")
    nodes = page.evaluate("window.diffblocks.workflow()")["nodes"]
    assert nodes["scale_image"]["inputs"] == {"image": {"node": "decode", "output": "images"}}

    # from an input: the nodes that give what it takes, wired into it
    drop_wire(page, node(page, "scale_image").locator('[data-input="image"] .react-flow__handle'),
              empty_spot(page, 0.2, top=False))
    expect(search.locator(".node-search-hint")).to_have_text("gives image for image")
    page.keyboard.type("load image")
    page.keyboard.press("Enter")
    nodes = page.evaluate("window.diffblocks.workflow()")["nodes"]
    assert nodes["scale_image"]["inputs"]["image"] == {"node": "load_image", "output": "image"}  # the new wire won
    page.keyboard.press("Control+z")  # node and wire in one step
    nodes = page.evaluate("window.diffblocks.workflow()")["nodes"]
    assert "load_image" not in nodes and nodes["scale_image"]["inputs"]["image"] == {"node": "decode", "output": "images"}
    assert page.problems == []


def test_ctrl_b_bypasses_the_selected_node_and_the_run_passes_its_input_on(page, server, shots):
    open_editor(page, server)
    page.get_by_test_id("load-input").set_input_files(str(HIRES_FIX))
    scale = node(page, "scale")
    expect(scale).to_be_visible()
    select(page, "scale")
    page.keyboard.press("Control+b")
    expect(scale.locator(".block-node")).to_have_class(re.compile(r"\bbypassed\b"))
    workflow = page.evaluate("window.diffblocks.workflow()")
    assert workflow["nodes"]["scale"]["bypass"] is True
    page.get_by_role("button", name="Run", exact=True).click()
    status = page.get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", "done", timeout=180_000)
    page.screenshot(path=str(shots / "15-bypassed.png"))
    job = server.request("GET", f"/api/jobs/{status.get_attribute('data-job')}")
    assert "scale" not in job["executed"] + job["cached"] and job["workflow"]["nodes"]["scale"]["bypass"] is True
    expect(scale.get_by_test_id("node-state")).to_have_count(0)  # it never ran

    # the same image as the two passes wired directly: the server answers that workflow from its cache
    direct = json.loads(HIRES_FIX.read_text())
    del direct["nodes"]["scale"]
    direct["nodes"]["second"]["inputs"]["image"] = {"node": "first", "output": "images"}
    answered = server.run_job({"nodes": direct["nodes"]})
    assert answered["outputs"]["second"]["images"] == job["outputs"]["second"]["images"]
    assert answered["executed"] == []

    page.keyboard.press("Control+b")  # again: no longer bypassed
    expect(scale.locator(".block-node")).not_to_have_class(re.compile(r"\bbypassed\b"))
    assert "bypass" not in page.evaluate("window.diffblocks.workflow()")["nodes"]["scale"]
    page.keyboard.press("Control+z")
    expect(scale.locator(".block-node")).to_have_class(re.compile(r"\bbypassed\b"))
    assert page.problems == []


def test_the_templates_menu_loads_each_example_workflow_and_undo_brings_the_graph_back(page, server):
    open_editor(page, server)
    menu = page.get_by_label("Templates")
    titles = [option.inner_text() for option in menu.locator("option").all()][1:]
    assert titles == ["Text to image", "Hires fix", "Outpaint"]
    original = page.evaluate(DOCUMENT)
    for title, name in [("Hires fix", "hires-fix"), ("Outpaint", "outpaint")]:
        menu.focus()
        menu.select_option(label=title)
        example = json.loads((HIRES_FIX.parent / f"{name}.json").read_text())
        assert page.evaluate("window.diffblocks.workflow()") == {"nodes": example["nodes"]}
        expect(menu).to_have_value("")  # the menu is ready for the next choice
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    assert page.evaluate(DOCUMENT) == original
    assert page.problems == []


PASTE_IMAGE = """(base64) => {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], 'image.png', { type: 'image/png' }));
  document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
}"""


def test_an_image_pasted_from_the_clipboard_becomes_a_load_image_node_under_the_pointer(page, server):
    import base64
    import io

    from PIL import Image

    open_editor(page, server)
    at = empty_spot(page)
    page.mouse.move(*at)
    picture = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 90)).save(picture, format="PNG")
    before = page.evaluate("window.diffblocks.workflow()")["nodes"]
    page.evaluate(PASTE_IMAGE, base64.b64encode(picture.getvalue()).decode())
    added = node(page, "load_image")
    expect(added.locator('[data-input="image"] img')).to_be_visible()
    box = added.bounding_box()
    assert abs(box["x"] - at[0]) <= 2 and abs(box["y"] - at[1]) <= 2, (box, at)
    nodes = page.evaluate("window.diffblocks.workflow()")["nodes"]
    assert {key: spec for key, spec in nodes.items() if key != "load_image"} == before
    with urllib.request.urlopen(f"{server.url}/api/artifacts/{nodes['load_image']['inputs']['image']['artifact']}") as got:
        assert Image.open(io.BytesIO(got.read())).convert("RGB").getpixel((3, 3)) == (200, 40, 90)
    page.keyboard.press("Control+z")  # one step
    expect(added).to_have_count(0)
    assert page.problems == []


UPLOAD = """async (base64) => {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append('file', new File([bytes], 'image.png', { type: 'image/png' }));
  return (await (await fetch('/api/uploads', { method: 'POST', body: form })).json()).artifact;
}"""
DROP_LINK_AT = """([url, x, y]) => {
  const data = new DataTransfer();
  data.setData('text/uri-list', url);
  document.querySelector('.react-flow').dispatchEvent(new DragEvent('drop', {
    dataTransfer: data, bubbles: true, cancelable: true, clientX: x, clientY: y }));
}"""


def test_a_stored_image_without_a_workflow_dropped_as_a_link_becomes_a_load_image_node_without_an_upload(page, server):
    import base64
    import io

    from PIL import Image

    open_editor(page, server)
    picture = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 40, 200)).save(picture, format="PNG")
    sha = page.evaluate(UPLOAD, base64.b64encode(picture.getvalue()).decode())
    uploads = []
    page.on("request", lambda request: request.url.endswith("/api/uploads") and uploads.append(request))
    at = empty_spot(page)
    page.evaluate(DROP_LINK_AT, [f"/api/artifacts/{sha}", *at])
    expect(node(page, "load_image")).to_be_visible()
    assert page.evaluate("window.diffblocks.workflow()")["nodes"]["load_image"]["inputs"] == {"image": {"artifact": sha}}
    assert uploads == []
    assert page.problems == []


def test_alt_c_folds_a_node_to_its_title_bar_with_its_wires_kept(page, server, shots):
    open_editor(page, server)
    latents = node(page, "latents")
    tall = latents.bounding_box()["height"]
    wires = page.locator(".react-flow__edge path.react-flow__edge-path")
    count = wires.count()
    workflow = page.evaluate("window.diffblocks.workflow()")
    select(page, "latents")
    page.keyboard.press("Alt+c")
    expect(latents.locator(".block-node")).to_have_class(re.compile(r"\bcollapsed\b"))
    assert latents.bounding_box()["height"] < min(60, tall / 4)
    expect(wires).to_have_count(count)  # every wire still drawn, ending on the title bar
    assert all(path.get_attribute("d") and "NaN" not in path.get_attribute("d") for path in wires.all())
    assert page.evaluate("window.diffblocks.workflow()") == workflow  # folding changes no input
    assert page.evaluate(DOCUMENT)["ui"]["collapsed"] == ["latents"]
    run_status = page.get_by_test_id("run-status")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(run_status).to_have_attribute("data-status", "done", timeout=180_000)
    expect(latents.get_by_test_id("node-state")).to_have_text(re.compile(r"^done"))  # its state shows folded too
    page.screenshot(path=str(shots / "17-folded.png"))

    page.reload()  # kept with the graph
    expect(latents.locator(".block-node")).to_have_class(re.compile(r"\bcollapsed\b"))
    latents.get_by_role("button", name="unfold").click()
    expect(latents.locator(".block-node")).not_to_have_class(re.compile(r"\bcollapsed\b"))
    assert abs(latents.bounding_box()["height"] - tall) < 2
    page.keyboard.press("Control+z")
    expect(latents.locator(".block-node")).to_have_class(re.compile(r"\bcollapsed\b"))

    # a folded node still says what is wrong with it, naming the input
    widget(page, "steps", "num_inference_steps").fill("0")
    select(page, "steps")
    page.keyboard.press("Alt+c")
    expect(node(page, "steps").locator(".block-node")).to_have_class(re.compile(r"\bcollapsed\b"))
    expect(node(page, "steps").locator(".node-error")).to_contain_text("num_inference_steps: ")
    assert page.problems == []
