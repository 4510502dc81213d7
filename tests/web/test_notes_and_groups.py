"""Notes and groups: page-only items that travel with the graph's layout and never reach the engine as nodes."""

from __future__ import annotations

from page_helpers import DOCUMENT, empty_spot, expect, node, open_editor, place_centre, select


def test_a_note_is_saved_with_the_graph_and_never_sent_as_a_node(page, server):
    open_editor(page, server)
    page.get_by_placeholder("Search nodes…").fill("note")
    page.locator('.palette-item[data-type="Note"]').dblclick()
    note = node(page, "note")
    note.get_by_label("note text").fill("seed 0 draws the best seven")
    document = page.evaluate(DOCUMENT)
    assert document["ui"]["notes"] == {"note": "seed 0 draws the best seven"} and "note" not in document["nodes"]
    page.get_by_role("button", name="Run", exact=True).click()
    status = page.get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", "done", timeout=180_000)
    job = server.request("GET", f"/api/jobs/{status.get_attribute('data-job')}")
    assert "note" not in job["workflow"]["nodes"] and job["workflow"]["ui"]["notes"] == document["ui"]["notes"]

    page.reload()
    expect(note.get_by_label("note text")).to_have_value("seed 0 draws the best seven")
    select(page, "note")
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    expect(node(page, "note2").get_by_label("note2 text")).to_have_value("seed 0 draws the best seven")
    assert page.problems == []


def test_ctrl_g_groups_the_selected_nodes_and_moving_the_group_moves_them(page, server, shots):
    open_editor(page, server)
    select(page, "text", "input")
    page.keyboard.press("Control+g")
    group = node(page, "group")
    expect(group).to_be_visible()
    area = group.bounding_box()
    for member in ("text", "input"):
        box = node(page, member).bounding_box()
        assert area["x"] < box["x"] and box["x"] + box["width"] < area["x"] + area["width"], member
        assert area["y"] < box["y"] and box["y"] + box["height"] < area["y"] + area["height"], member
    # as in ComfyUI, a node belongs to a group when its centre is inside: "load" half in, "steps" overlapping it
    # with its centre out
    place_centre(page, "load", area["x"] + 15, area["y"] + area["height"] / 2)
    steps = node(page, "steps").bounding_box()
    place_centre(page, "steps", area["x"] + area["width"] + steps["width"] / 2 - 30, area["y"] + area["height"] / 2)
    for member, half_in in (("load", True), ("steps", False)):
        box = node(page, member).bounding_box()
        assert box["x"] < area["x"] + area["width"] and area["x"] < box["x"] + box["width"], member  # overlapping
        assert (area["x"] < box["x"] + box["width"] / 2 < area["x"] + area["width"]) == half_in, member
    before = page.evaluate(DOCUMENT)
    assert before["ui"]["groups"]["group"]["title"] == "Group" and "group" not in before["nodes"]

    title = group.locator(".group-title").bounding_box()  # dragged by its title bar, beside the name
    x, y = title["x"] + title["width"] - 12, title["y"] + title["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 90, y + 60, steps=10)
    page.mouse.up()
    moved = page.evaluate(DOCUMENT)["ui"]["positions"]
    start = before["ui"]["positions"]
    dx, dy = moved["group"]["x"] - start["group"]["x"], moved["group"]["y"] - start["group"]["y"]
    assert dx > 0 and dy > 0
    for member in ("text", "input", "load"):
        assert (moved[member]["x"] - start[member]["x"], moved[member]["y"] - start[member]["y"]) == (dx, dy), member
    assert all(moved[other] == start[other] for other in ("steps", "latents", "denoise", "decode", "output"))
    page.screenshot(path=str(shots / "18-group.png"))

    group.get_by_label("group title").fill("prompts")
    page.mouse.click(*empty_spot(page))
    page.keyboard.press("Control+z")  # the name
    page.keyboard.press("Control+z")  # the move, members and all
    assert page.evaluate(DOCUMENT)["ui"]["positions"] == start
    page.keyboard.press("Control+y")
    page.keyboard.press("Control+y")
    page.reload()
    expect(group.get_by_label("group title")).to_have_value("prompts")
    assert page.evaluate(DOCUMENT)["ui"]["positions"] == moved
    assert page.problems == []
