"""Running workflows: results equal the pipeline call on the same blocks bitwise (tolerance 0), the cache re-runs
exactly what a change touches, interrupts leave the cache consistent, runs at once equal runs alone."""

import threading

import pytest
import torch
from node_workflows import changed, leaf_text2image, link, preset_text2image
from tiny_models import build_pipeline, make_image

from diffblocks.components.schedulers import EulerAncestralDiscreteScheduler
from diffblocks.nodes import ArtifactStore, Executor, Interrupted, NodeRunError, Workflow
from diffblocks.presets import stable_diffusion

STEPS = 3


@pytest.fixture(scope="module")
def executor():
    return Executor(preview_every=1)


@pytest.fixture(scope="module")
def pipe(sd_repo):
    return build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)


def reference(pipe, prompt="a cat", seed=0, **inputs):
    return pipe(prompt=prompt, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed),
                output_type="pt", output="images", **inputs)


def run(executor, workflow, **kwargs):
    events = []
    outputs = executor.run(workflow, on_event=events.append, **kwargs)
    return outputs, events


def ran(events):
    return {e["node"] for e in events if e["type"] == "node.started"}


def test_leaf_workflow_equals_the_pipeline_call_bitwise(executor, pipe, sd_repo):
    outputs, events = run(executor, leaf_text2image(str(sd_repo), steps=STEPS))
    assert torch.equal(outputs["decode"]["images"], reference(pipe))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "job.started" and kinds[-1] == "job.finished"
    progress = [(e["step"], e["total"]) for e in events if e["type"] == "node.progress"]
    assert progress == [(i, STEPS) for i in range(1, STEPS + 1)]
    previews = [e for e in events if e["type"] == "node.preview"]
    assert len(previews) == STEPS and all(e["node"] == "denoise" and max(e["image"].size) <= 128 for e in previews)


def test_previews_keep_their_interval_and_the_image_does_not_change(sd_repo):
    workflow = leaf_text2image(str(sd_repo), steps=STEPS)
    every, sparse = Executor(preview_interval=0.0), Executor(preview_interval=3600.0)
    out_every, events_every = run(every, workflow)
    out_sparse, events_sparse = run(sparse, workflow)
    previews_every = [e for e in events_every if e["type"] == "node.preview"]
    assert [e["step"] for e in previews_every] == list(range(1, STEPS + 1))
    # the next is an hour away, but the loop's last step is always shown: the preview a node keeps is its result
    previews_sparse = [e for e in events_sparse if e["type"] == "node.preview"]
    assert [e["step"] for e in previews_sparse] == [1, STEPS]
    assert previews_sparse[-1]["image"].tobytes() == previews_every[-1]["image"].tobytes()
    assert previews_sparse[-1]["image"].tobytes() != previews_sparse[0]["image"].tobytes()
    assert sum(e["type"] == "node.progress" for e in events_sparse) == STEPS
    assert torch.equal(out_every["decode"]["images"], out_sparse["decode"]["images"])


def test_the_last_step_is_previewed_off_the_preview_stride(sd_repo):
    stride = Executor(preview_every=STEPS - 1, preview_interval=0.0)
    _, events = run(stride, leaf_text2image(str(sd_repo), steps=STEPS))
    assert [e["step"] for e in events if e["type"] == "node.preview"] == [STEPS - 1, STEPS]


def test_preset_workflow_equals_the_pipeline_call_bitwise(executor, pipe, sd_repo):
    outputs, _ = run(executor, preset_text2image(str(sd_repo), prompt="a dog", seed=3, steps=STEPS))
    assert torch.equal(outputs["run"]["images"], reference(pipe, prompt="a dog", seed=3))


@pytest.mark.gpu
def test_preset_workflow_on_cuda_equals_the_pipeline_on_cuda_bitwise(sd_repo):
    """The loader puts the models on the executor's device; the seed's generator stays on the CPU, as in the
    pipeline call; previews are drawn from the CUDA latents."""
    on_cuda = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo).to("cuda")
    outputs, events = run(Executor(device="cuda", preview_every=1),
                          preset_text2image(str(sd_repo), prompt="a dog", seed=3, steps=STEPS))
    images = outputs["run"]["images"]
    assert images.device.type == "cuda"
    assert torch.equal(images, reference(on_cuda, prompt="a dog", seed=3))
    assert sum(e["type"] == "node.preview" for e in events) == STEPS


def test_image2image_from_an_uploaded_artifact_equals_the_pipeline(sd_repo, tmp_path):
    store = ArtifactStore(tmp_path)
    image = make_image(1)
    sha = store.put_image(image)
    executor = Executor(artifacts=store)
    workflow = preset_text2image(str(sd_repo), steps=STEPS, preset="sd15-image2image", strength=0.6)
    workflow["nodes"]["picture"] = {"type": "LoadImage", "inputs": {"image": {"artifact": sha}}}
    workflow["nodes"]["run"]["inputs"]["image"] = link("picture", "image")
    outputs, _ = run(executor, workflow)
    i2i = build_pipeline(stable_diffusion.IMAGE2IMAGE_BLOCKS, sd_repo)
    expected = reference(i2i, image=store.open_image(sha), strength=0.6)
    assert torch.equal(outputs["run"]["images"], expected)


def test_an_image_the_store_lacks_fails_its_node_naming_the_input(tmp_path):
    """The reference is well formed (validation passes) but the store has no such image: the node that reads it
    fails, and says which input and what to do, not an anonymous error."""
    missing = "ab" * 32
    workflow = {"nodes": {"picture": {"type": "LoadImage", "inputs": {"image": {"artifact": missing}}}}}
    with pytest.raises(NodeRunError) as caught:
        Executor(artifacts=ArtifactStore(tmp_path)).run(workflow)
    assert caught.value.node == "picture" and caught.value.input == "image"
    assert missing in caught.value.message and "POST /api/uploads" in caught.value.message


def test_an_ancestral_scheduler_node_and_a_wired_generator_continue_one_random_stream(sd_repo, pipe):
    """Euler a draws noise every step: bitwise only if the denoise node continues prepare_latents' generator."""
    workflow = leaf_text2image(str(sd_repo), steps=STEPS)
    nodes = workflow["nodes"]
    nodes["ancestral"] = {"type": "EulerAncestralDiscreteScheduler", "inputs": {"scheduler": link("load", "scheduler")}}
    nodes["steps"]["inputs"]["scheduler"] = link("ancestral", "scheduler")
    nodes["denoise"]["inputs"]["generator"] = link("latents", "generator")
    outputs, _ = run(Executor(), workflow)
    ancestral = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)
    ancestral.update_components(scheduler=EulerAncestralDiscreteScheduler.from_config(ancestral.scheduler.config))
    assert torch.equal(outputs["decode"]["images"], reference(ancestral))
    unwired = run(Executor(), changed(workflow, "denoise", generator=None, seed=0))[0]
    assert not torch.equal(unwired["decode"]["images"], outputs["decode"]["images"])


def test_a_new_seed_reruns_latents_denoise_and_decode_only(executor, sd_repo):
    workflow = leaf_text2image(str(sd_repo), prompt="a house", steps=STEPS)
    first, _ = run(executor, workflow)
    again, events = run(executor, workflow)
    assert ran(events) == set() and {e["node"] for e in events if e["type"] == "node.cached"} == set(workflow["nodes"])
    assert again["decode"]["images"] is first["decode"]["images"]
    reseeded, events = run(executor, changed(workflow, "latents", seed=5))
    assert ran(events) == {"latents", "denoise", "decode"}
    assert not torch.equal(reseeded["decode"]["images"], first["decode"]["images"])
    _, events = run(executor, changed(workflow, "text", prompt="a boat"))
    assert ran(events) == {"text", "input", "latents", "denoise", "decode"}
    finished = next(e for e in events if e["type"] == "job.finished")
    assert set(finished["executed"]) == ran(events) and set(finished["cached"]) == {"load", "steps"}


def test_a_partial_run_runs_only_what_the_target_needs(sd_repo):
    outputs, events = run(Executor(), leaf_text2image(str(sd_repo), prompt="a tree"), targets=["input"])
    assert set(outputs) == {"load", "text", "input"} == ran(events)


def test_an_interrupt_stops_within_a_step_and_the_node_is_not_cached(executor, pipe, sd_repo):
    workflow = leaf_text2image(str(sd_repo), prompt="a bird", seed=11, steps=STEPS)
    stop, at_step_one, stopped = threading.Event(), threading.Event(), threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if event["type"] == "node.progress" and event["step"] == 1:
            at_step_one.set()
            stopped.wait()  # the loop goes on only once the other thread has asked it to stop

    def interrupter():
        at_step_one.wait()
        stop.set()
        stopped.set()

    other = threading.Thread(target=interrupter)
    other.start()
    with pytest.raises(Interrupted, match="denoise"):
        executor.run(workflow, on_event=on_event, stop_event=stop)
    other.join()
    steps = [e["step"] for e in events if e["type"] == "node.progress"]
    assert steps == [1] and events[-1] == {"type": "job.cancelled", "job": events[0]["job"], "node": "denoise"}
    outputs, events = run(executor, workflow)
    assert ran(events) == {"denoise", "decode"}
    assert torch.equal(outputs["decode"]["images"], reference(pipe, prompt="a bird", seed=11))


def test_a_failing_node_is_named_and_reported(executor, tmp_path):
    workflow = leaf_text2image(str(tmp_path / "no-such-model"), steps=STEPS)
    events = []
    with pytest.raises(NodeRunError, match="no-such-model") as info:
        executor.run(workflow, on_event=events.append)
    assert info.value.node == "load" and "LoadComponents failed" in info.value.message
    assert events[-1]["type"] == "job.failed" and events[-1]["node"] == "load"
    assert not any(e["type"] == "node.started" and e["node"] != "load" for e in events)


def test_concurrent_runs_equal_the_same_runs_alone(sd_repo):
    executor = Executor()
    workflows = [leaf_text2image(str(sd_repo), prompt=f"a shape {i % 2}", seed=i, steps=STEPS) for i in range(4)]
    alone = [Executor().run(w)["decode"]["images"] for w in workflows]
    results = [None] * len(workflows)
    barrier = threading.Barrier(len(workflows))

    def work(i):
        barrier.wait()
        results[i] = executor.run(workflows[i])["decode"]["images"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workflows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(a, b) for a, b in zip(alone, results))
    loads = [c for c in executor.components_manager.components.values() if type(c).__name__ == "UNet2DConditionModel"]
    assert len(loads) == 1  # four runs, one UNet


def test_stream_yields_the_events_through_the_end(executor, sd_repo):
    events = list(executor.stream(leaf_text2image(str(sd_repo), prompt="a fish", steps=STEPS)))
    assert events[0]["type"] == "job.started" and events[-1]["type"] == "job.finished"


def test_from_pipeline_runs_to_the_same_image_and_converts_back_to_blocks(pipe, sd_repo):
    workflow = Workflow.from_pipeline(pipe)
    workflow.nodes["text_encoder"].inputs["prompt"] = "a cat"
    workflow.nodes["set_timesteps"].inputs["num_inference_steps"] = STEPS
    workflow.nodes["prepare_latents"].inputs["seed"] = 0
    workflow.nodes["decode"].inputs["output_type"] = "pt"
    outputs = Executor().run(workflow)
    assert torch.equal(outputs["decode"]["images"], reference(pipe))
    blocks = Workflow.from_json(workflow.to_json()).to_blocks()
    assert list(blocks.sub_blocks) == list(pipe.blocks.sub_blocks)
    assert [type(b) for b in blocks.sub_blocks.values()] == [type(b) for b in pipe.blocks.sub_blocks.values()]


def test_a_failure_about_one_input_names_that_input(executor, sd_repo):
    workflow = leaf_text2image(str(sd_repo), steps=STEPS)
    workflow["nodes"]["latents"]["inputs"]["latents"] = link("text", "prompt_embeds")  # a tensor of the wrong shape
    events = []
    with pytest.raises(NodeRunError) as info:
        executor.run(workflow, on_event=events.append)
    assert (info.value.node, info.value.input) == ("latents", "latents")
    assert events[-1] == {"type": "job.failed", "job": events[0]["job"], **info.value.error_json()}
