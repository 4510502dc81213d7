"""Several runs from the page, as in ComfyUI: Run while a job runs queues another, each followed in turn, and a
seed moves on after each Run as its control says."""

from __future__ import annotations

import re

from page_helpers import expect, node, open_editor, run, widget

SLOW_STEPS = "150"  # long enough on the tiny model that the next Runs are pressed while the first job runs


def control(page, node_id="latents"):
    return node(page, node_id).get_by_test_id("control")


def job_seed(server, job: str) -> int:
    return server.request("GET", f"/api/jobs/{job}")["workflow"]["nodes"]["latents"]["inputs"]["seed"]


def test_runs_pressed_while_a_job_runs_queue_behind_it_each_with_the_next_seed(page, server, shots):
    open_editor(page, server)
    widget(page, "steps", "num_inference_steps").fill(SLOW_STEPS)
    seed = widget(page, "latents", "seed")
    seed.fill("40")  # seeds no other test runs: nothing comes from the cache
    control(page).select_option("increment")
    assert page.evaluate("window.diffblocks.document()")["ui"]["controls"] == {"latents": {"seed": "increment"}}

    run = page.get_by_role("button", name="Run", exact=True)
    status = page.get_by_test_id("run-status")
    run.click()
    expect(status).to_have_attribute("data-status", re.compile("^(queued|running)$"))
    first = status.get_attribute("data-job")
    run.click()
    run.click()
    expect(page.get_by_test_id("queue")).to_have_attribute("data-count", "2")
    expect(seed).to_have_value("43")  # the value the next Run takes
    page.screenshot(path=str(shots / "12-queued.png"))

    # each job followed in turn: the status moves to the next job, the gallery gathers all three
    expect(page.locator(".gallery img")).to_have_count(3, timeout=180_000)
    expect(page.get_by_test_id("queue")).to_have_count(0)
    expect(status).to_have_attribute("data-status", "done")
    last = status.get_attribute("data-job")
    assert last != first
    jobs = [job["job"] for job in server.request("GET", "/api/jobs?limit=3")["jobs"]][::-1]  # oldest first
    assert jobs[0] == first and jobs[-1] == last
    assert [job_seed(server, job) for job in jobs] == [40, 41, 42]
    images = {image.get_attribute("src") for image in page.locator(".gallery img").all()}
    assert len(images) == 3
    expect(node(page, "denoise").get_by_test_id("node-state")).to_have_text(re.compile(r"^done"))

    # randomize: the next Run takes a new seed that fits 32 bits
    control(page).select_option("randomize")
    run.click()
    expect(status).not_to_have_attribute("data-job", last)
    expect(status).to_have_attribute("data-status", "done", timeout=180_000)
    assert job_seed(server, status.get_attribute("data-job")) == 43
    drawn = int(seed.input_value())
    assert 0 <= drawn < 2**32 and drawn != 43

    page.reload()  # the control is part of the graph the page keeps
    expect(control(page)).to_have_value("randomize")
    assert page.problems == []


def start_long_job(page, server, seed):
    """Open the editor, set 500 steps and `seed` counting up after each Run, press Run and wait until the job
    runs; returns the Run button, the run status and the running job's id."""
    open_editor(page, server)
    widget(page, "steps", "num_inference_steps").fill("500")
    widget(page, "latents", "seed").fill(str(seed))
    control(page).select_option("increment")
    run_button = page.get_by_role("button", name="Run", exact=True)
    status = page.get_by_test_id("run-status")
    run_button.click()
    expect(node(page, "denoise").get_by_test_id("node-state")).to_have_text(re.compile(r"^running \d+/500"))
    return run_button, status, status.get_attribute("data-job")


def test_clear_cancels_the_queued_jobs_and_cancel_the_running_one(page, server):
    run_button, status, running = start_long_job(page, server, seed=90)
    run_button.click()
    run_button.click()
    queue = page.get_by_test_id("queue")
    expect(queue).to_have_attribute("data-count", "2")
    queued = [job["job"] for job in server.request("GET", "/api/jobs?status=queued")["jobs"]]
    assert len(queued) == 2

    queue.get_by_role("button", name="clear").click()
    expect(queue).to_have_count(0)
    page.get_by_role("button", name="Cancel").click()
    expect(status).to_have_attribute("data-status", "cancelled")
    assert status.get_attribute("data-job") == running  # the page did not move on to a cancelled job
    for job in [running, *queued]:
        assert server.request("GET", f"/api/jobs/{job}")["status"] == "cancelled"
    assert page.problems == []


def test_the_history_tab_lists_every_clients_jobs_and_loads_the_workflow_a_job_ran(page, server, shots):
    open_editor(page, server)
    mine = run(page)
    page.get_by_role("tab", name="History").click()
    history = page.get_by_test_id("history")
    expect(history.locator(f'[data-job="{mine}"]')).to_have_attribute("data-status", "done")

    # another client's job shows up as it runs, without a reload
    workflow = page.evaluate("window.diffblocks.workflow()")
    workflow["nodes"]["text"]["inputs"]["prompt"] = "a handwritten digit nine"
    theirs = server.run_job(workflow)["job"]
    expect(history.locator(f'[data-job="{theirs}"]')).to_have_attribute("data-status", "done")
    assert history.locator(".history-item").first.get_attribute("data-job") == theirs  # newest first

    before = page.evaluate("window.diffblocks.document()")
    history.locator(f'[data-job="{theirs}"] .history-load').click()
    expect(node(page, "text").locator('[data-input="prompt"] textarea')).to_have_value("a handwritten digit nine")
    assert page.evaluate("window.diffblocks.workflow()") == workflow
    page.keyboard.press("Control+z")
    assert page.evaluate("window.diffblocks.document()") == before
    page.screenshot(path=str(shots / "16-history.png"))
    page.get_by_role("tab", name="Gallery").click()
    expect(page.locator(".gallery img")).to_have_count(1)
    assert page.problems == []


def test_ctrl_shift_enter_queues_ahead_of_every_job_waiting(page, server):
    run_button, status, running = start_long_job(page, server, seed=60)  # runs
    run_button.click()  # seed 61, waits
    queue = page.get_by_test_id("queue")
    expect(queue).to_have_attribute("data-count", "1")
    node(page, "steps").locator(".node-title").click()  # the keys on the canvas, not in a widget
    page.keyboard.press("Control+Shift+Enter")  # seed 62, ahead of 61
    expect(queue).to_have_attribute("data-count", "2")
    page.get_by_role("button", name="Cancel").click()
    expect(status).not_to_have_attribute("data-job", running)  # the page follows the next job to start
    assert job_seed(server, status.get_attribute("data-job")) == 62
    queue.get_by_role("button", name="clear").click()
    page.get_by_role("button", name="Cancel").click()
    expect(status).to_have_attribute("data-status", "cancelled")
    assert page.problems == []


def test_run_selected_runs_only_what_the_selected_node_needs_while_the_rest_is_unfinished(page, server):
    open_editor(page, server)
    page.get_by_label("Templates").select_option(label="Hires fix")
    widget(page, "second", "strength").fill("7")  # the second pass not right yet
    expect(node(page, "second").locator('[data-input="strength"] .input-error')).to_have_count(1)
    run_selected = page.get_by_role("button", name="Run selected")
    expect(run_selected).to_be_disabled()  # nothing selected
    node(page, "first").locator(".node-title").click()
    run_selected.click()
    status = page.get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", "done", timeout=180_000)
    job = server.request("GET", f"/api/jobs/{status.get_attribute('data-job')}")
    assert job["workflow"]["targets"] == ["first"]
    assert set(job["executed"] + job["cached"]) == {"load", "first"}
    expect(node(page, "first").get_by_test_id("node-state")).to_have_text(re.compile(r"^done"))
    expect(node(page, "second").get_by_test_id("node-state")).to_have_count(0)
    expect(node(page, "scale").get_by_test_id("node-state")).to_have_count(0)

    page.get_by_role("button", name="Run", exact=True).click()  # the whole graph: the unfinished part stops it
    expect(status).to_have_attribute("data-status", "invalid")
    assert page.problems == []


def test_a_batch_count_queues_that_many_jobs_each_with_the_next_seed(page, server):
    open_editor(page, server)
    seed = widget(page, "latents", "seed")
    seed.fill("70")
    control(page).select_option("increment")
    page.get_by_label("batch count").fill("3")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator(".gallery img")).to_have_count(3, timeout=180_000)
    status = page.get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", "done")
    jobs = [job["job"] for job in server.request("GET", "/api/jobs?limit=3")["jobs"]][::-1]
    assert [job_seed(server, job) for job in jobs] == [70, 71, 72]
    expect(seed).to_have_value("73")
    # each Run's seed change is a step to undo: Ctrl+Z gives back the seed of the last image, then the one before
    page.locator(".react-flow__pane").click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+z")
    expect(seed).to_have_value("72")
    page.keyboard.press("Control+z")
    expect(seed).to_have_value("71")
    page.keyboard.press("Control+y")
    expect(seed).to_have_value("72")
    page.get_by_label("batch count").fill("")  # while typing: empty is allowed, and the count stays
    page.get_by_label("batch count").blur()
    expect(page.get_by_label("batch count")).to_have_value("3")
    assert page.problems == []
