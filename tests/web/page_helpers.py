"""What the browser tests share: finding nodes and widgets on the page, opening the editor, running a job."""

from __future__ import annotations

import io
import re
import time
import urllib.request

import numpy as np
from PIL import Image

DOCUMENT = "window.diffblocks.document()"  # the graph as the page keeps it: nodes and ui
DEFAULT_NODES = ["load", "text", "input", "steps", "latents", "denoise", "decode", "output"]

# records, from the first paint on, every progress value and node state the page shows, so a test can
# assert that progress appeared however quickly the tiny model runs
WATCH = """
window.__seen = {progress: 0, states: {}};
new MutationObserver(() => {
  for (const bar of document.querySelectorAll('[role=progressbar]')) {
    window.__seen.progress = Math.max(window.__seen.progress, Number(bar.getAttribute('aria-valuenow')) || 0);
  }
  for (const node of document.querySelectorAll('[data-node-id][data-state]')) {
    const seen = window.__seen.states[node.dataset.nodeId] = window.__seen.states[node.dataset.nodeId] || [];
    if (seen[seen.length - 1] !== node.dataset.state) seen.push(node.dataset.state);
  }
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def node(page, node_id):
    return page.locator(f'.react-flow__node[data-id="{node_id}"]')


def widget(page, node_id, name, kind="input[type=number]"):
    return node(page, node_id).locator(f'[data-input="{name}"] {kind}')


def open_editor(page, server):
    page.add_init_script(WATCH)
    started = time.monotonic()
    page.goto(server.url)
    expect(node(page, "decode").locator(".node-title")).to_have_text("Decode")
    expect(page.get_by_test_id("connection")).to_have_text("connected")
    return time.monotonic() - started


def run(page, expected="done"):
    """Press Run; return the job id once the page shows the job `expected` (done, failed, cancelled)."""
    page.get_by_role("button", name="Run", exact=True).click()
    status = page.get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", re.compile("^(done|failed|cancelled|invalid|lost)$"),
                                      timeout=180_000)
    assert status.get_attribute("data-status") == expected, status.inner_text()
    return status.get_attribute("data-job")


def shown_image(page):
    image = page.locator('[data-testid="output-images"] img.output-image')
    expect(image).to_have_count(1)
    return image.get_attribute("data-artifact")


def pixels(server, sha):
    with urllib.request.urlopen(f"{server.url}/api/artifacts/{sha}", timeout=60) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def drag(page, source, target):
    """Press on `source`, move to `target` in steps (React Flow follows pointer moves), release."""
    start, end = source.bounding_box(), target.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=12)
    page.mouse.up()


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


def place_centre(page, node_id, x, y):
    """Drag a node by its title bar until its centre is at page pixel (x, y)."""
    box = node(page, node_id).bounding_box()
    move(page, node_id, x - (box["x"] + box["width"] / 2), y - (box["y"] + box["height"] / 2))


def empty_spot(page, across=0.5, top=True):
    """A point of the canvas (page pixels) with no node on it: near its top or bottom, `across` of the way along."""
    pane = page.locator(".react-flow__pane").bounding_box()
    x, y = pane["x"] + pane["width"] * across, pane["y"] + (60 if top else pane["height"] - 60)
    assert page.evaluate("([x, y]) => document.elementFromPoint(x, y).classList.contains('react-flow__pane')", [x, y])
    return x, y
