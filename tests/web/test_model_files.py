"""The loader nodes' model inputs offer the files of `diffblocks serve --models-dir` (ComfyUI's models/ folder)."""

from __future__ import annotations

import time

import pytest

from page_helpers import empty_spot, expect, node, open_editor


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models/ folder of tiny dummy files: nothing is loaded from them here."""
    root = tmp_path_factory.mktemp("models")
    for name in ("checkpoints/a.safetensors", "checkpoints/sd15/b.safetensors", "loras/style.safetensors"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"dummy")
    return root


@pytest.fixture(scope="module")
def models_server(tmp_path_factory, make_server, models):
    served = make_server(tmp_path_factory.mktemp("serve-models"), flags=("--models-dir", str(models))).start()
    yield served
    served.stop()


def add_node(page, node_type, across):
    """Double-click an empty spot near the canvas's top, pick `node_type` in the search; the new node's id."""
    before = set(page.evaluate("window.diffblocks.workflow()")["nodes"])
    page.mouse.dblclick(*empty_spot(page, across))
    search = page.get_by_test_id("node-search")
    page.keyboard.type(node_type)
    search.locator(f'[role=option][data-type="{node_type}"]').click()
    expect(search).to_have_count(0)
    added = set(page.evaluate("window.diffblocks.workflow()")["nodes"]) - before
    assert len(added) == 1, added
    return added.pop()


def model_input(page, node_id, name):
    return node(page, node_id).locator(f'[data-input="{name}"] input[type=text]')


def toggle(field):
    return field.locator("xpath=..").locator(".model-file-toggle")


def menu(field):
    return field.locator("xpath=..").locator("[role=listbox] [role=option]")


def offered(field):
    """The names the input's ▾ shows (every file of its folder, whatever the input holds); the menu closed after."""
    if toggle(field).count() == 0:
        return []
    toggle(field).click()
    names = menu(field).all_inner_texts()
    toggle(field).click()
    expect(menu(field)).to_have_count(0)
    return names


def wait_offered(page, field, expected, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while offered(field) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(100)  # the list comes from a request the focus started
    assert offered(field) == expected


def test_loader_inputs_offer_the_files_of_the_models_folder(page, models_server, models, shots):
    catalog = models_server.request("GET", "/api/nodes")
    assert catalog["LoadCheckpoint"]["inputs"]["file"]["schema"]["x-model-folder"] == "checkpoints"
    listed = models_server.request("GET", "/api/models")
    assert listed["checkpoints"] == ["a.safetensors", "sd15/b.safetensors"], listed
    assert listed["diffusers"] == [] and listed["vae"] == [], listed

    requests = []
    page.on("request", lambda request: request.url.endswith("/api/models") and requests.append(request.url))
    open_editor(page, models_server)
    checkpoint = add_node(page, "LoadCheckpoint", 0.25)
    lora = add_node(page, "LoadLoRA", 0.5)
    vae = add_node(page, "LoadVAE", 0.75)
    file = model_input(page, checkpoint, "file")
    expect(file).to_have_attribute("data-model-folder", "checkpoints")
    expect(toggle(file)).to_have_count(1)  # the list came
    # the widgets share one list: one request for the page before any input had the focus
    assert len(requests) == 1, requests

    page.wait_for_timeout(2100)  # past the refetch interval: the focus asks again
    file.focus()
    deadline = time.monotonic() + 10
    while len(requests) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # the request the focus started
    assert len(requests) == 2, requests
    file.blur()
    file.focus()  # within the interval: no request
    page.wait_for_timeout(300)
    assert len(requests) == 2, requests
    assert offered(file) == ["a.safetensors", "sd15/b.safetensors"]
    file.fill("sd15/b.safetensors")
    assert page.evaluate("window.diffblocks.workflow()")["nodes"][checkpoint]["inputs"]["file"] == "sd15/b.safetensors"
    # whatever the input holds, ▾ shows every file (a datalist would show only those matching the text)
    assert offered(file) == ["a.safetensors", "sd15/b.safetensors"]

    # a file dropped into the folder shows up on the next focus, without a reload
    (models / "checkpoints" / "c.safetensors").write_bytes(b"dummy")
    file.blur()
    page.wait_for_timeout(2100)
    file.focus()
    wait_offered(page, file, ["a.safetensors", "c.safetensors", "sd15/b.safetensors"])
    assert page.evaluate("window.diffblocks.workflow()")["nodes"][checkpoint]["inputs"]["file"] == "sd15/b.safetensors"

    # typing narrows the menu to the names containing the text; the arrows and Enter pick; a click picks
    file.fill("")
    file.type("safe")
    expect(menu(file)).to_have_text(["a.safetensors", "c.safetensors", "sd15/b.safetensors"])
    file.fill("")
    file.type("/B")  # case does not matter
    expect(menu(file)).to_have_text(["sd15/b.safetensors"])
    file.press("Enter")
    expect(menu(file)).to_have_count(0)
    assert page.evaluate("window.diffblocks.workflow()")["nodes"][checkpoint]["inputs"]["file"] == "sd15/b.safetensors"
    file.press("ArrowDown")  # opens every name, the current one chosen
    expect(menu(file)).to_have_count(3)
    expect(file.locator("xpath=..").locator("li.chosen")).to_have_text("sd15/b.safetensors")
    file.press("ArrowUp")
    file.press("Enter")
    assert page.evaluate("window.diffblocks.workflow()")["nodes"][checkpoint]["inputs"]["file"] == "c.safetensors"
    toggle(file).click()
    menu(file).filter(has_text="a.safetensors").click()
    expect(menu(file)).to_have_count(0)
    assert page.evaluate("window.diffblocks.workflow()")["nodes"][checkpoint]["inputs"]["file"] == "a.safetensors"
    file.press("ArrowDown")
    file.press("Escape")  # closes, picks nothing
    expect(menu(file)).to_have_count(0)
    assert page.evaluate("window.diffblocks.workflow()")["nodes"][checkpoint]["inputs"]["file"] == "a.safetensors"

    # every loader input offers its own kind
    wait_offered(page, model_input(page, lora, "repo"), ["style.safetensors"])
    # an empty folder: nothing offered, and the input says why
    vae_file = model_input(page, vae, "file")
    assert offered(vae_file) == []
    expect(vae_file).to_have_attribute("placeholder", "nothing in models/vae: type a path")
    expect(vae_file).to_have_attribute("title", "nothing in models/vae: type a path")
    expect(model_input(page, checkpoint, "file")).to_have_attribute("title", "")
    vae_file.fill("/somewhere/else/vae.safetensors")  # any path still typed
    assert page.evaluate("window.diffblocks.workflow()")["nodes"][vae]["inputs"]["file"] == \
        "/somewhere/else/vae.safetensors"
    toggle(file).click()
    page.screenshot(path=str(shots / "model-files.png"))
    assert page.problems == []


def test_a_server_without_the_models_route_leaves_plain_text_inputs(page, models_server):
    """An older server answers 404 for /api/models: the inputs are plain text inputs, with no hint."""
    page.route("**/api/models", lambda route: route.fulfill(status=404, content_type="application/json",
                                                            body='{"detail": "Not Found"}'))
    open_editor(page, models_server)
    checkpoint = add_node(page, "LoadCheckpoint", 0.3)
    file = model_input(page, checkpoint, "file")
    file.focus()
    page.wait_for_timeout(500)
    assert offered(file) == []
    expect(file).to_have_attribute("placeholder", "")
    expect(file).to_have_attribute("title", "")
    file.fill("sd15/b.safetensors")
    expect(menu(file)).to_have_count(0)
    assert page.evaluate("window.diffblocks.workflow()")["nodes"][checkpoint]["inputs"]["file"] == "sd15/b.safetensors"
    # the refused request is the one console error (the browser logs it); nothing else went wrong
    assert [problem for problem in page.problems if "404" not in problem] == []
