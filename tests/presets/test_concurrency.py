"""Calls running at once give what they give alone: one pipeline from several threads, pipelines sharing
components through a manager, PAG next to CFG on one UNet; states given to a call are left as they were;
one call can be stopped alone, and ``pipe.interrupt()`` stops every running call.

Each threaded call waits on a barrier inside its first denoise step, so that every call has set its
timesteps (and installed any perturbation) before any of them goes on: overlap is certain, not likely.
"""

import threading

import pytest
import torch
from tiny_models import build_pipeline

from diffblocks import ComponentsManager, ModularPipeline, PipelineState
from diffblocks.components.schedulers import DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffblocks.guiders import ClassifierFreeGuidance, PerturbedAttentionGuidance
from diffblocks.presets import stable_diffusion

TRIALS = 3


def make_pipe(repo, manager=None, collection=None):
    return build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, repo, manager, collection)


def call(pipe, steps, seed, **kwargs):
    return pipe(prompt="a cat", generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                output_type="pt", output="images", **kwargs)


def run_together(jobs):
    """Run ``[(pipe, steps, seed), ...]`` in one thread each, all inside their first step at once."""
    barrier = threading.Barrier(len(jobs), timeout=60)
    results, errors = [None] * len(jobs), []

    def meet(i, t, latents):
        if i == 0:
            barrier.wait()

    def work(index, pipe, steps, seed):
        try:
            results[index] = call(pipe, steps, seed, step_callback=meet)
        except BaseException as err:  # reported by the main thread
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture(scope="module")
def pipe(sd_repo):
    return make_pipe(sd_repo)


@pytest.mark.parametrize("scheduler", [None, EulerDiscreteScheduler, DPMSolverMultistepScheduler])
def test_one_pipeline_from_four_threads_with_different_step_counts(pipe, scheduler):
    if scheduler is not None:
        pipe = make_pipe(pipe.pretrained_model_name_or_path)
        pipe.update_components(scheduler=scheduler.from_config(pipe.scheduler.config))
    jobs = [(pipe, steps, seed) for steps, seed in ((2, 0), (3, 1), (4, 2), (5, 3))]
    alone = [call(*job) for job in jobs]
    for _ in range(TRIALS):
        together = run_together(jobs)
        for expected, got in zip(alone, together):
            assert torch.equal(expected, got)


def test_two_pipelines_from_one_repo_in_one_manager(sd_repo):
    manager = ComponentsManager()
    first = make_pipe(sd_repo, manager, "a")
    second = make_pipe(sd_repo, manager, "b")
    assert first.scheduler is second.scheduler and first.unet is second.unet  # shared, as the manager dedupes
    jobs = [(first, 2, 0), (second, 4, 1), (first, 3, 2), (second, 5, 3)]
    alone = [call(*job) for job in jobs]
    for _ in range(TRIALS):
        for expected, got in zip(alone, run_together(jobs)):
            assert torch.equal(expected, got)


def test_pag_next_to_cfg_on_one_unet(sd_repo):
    manager = ComponentsManager()
    cfg = make_pipe(sd_repo, manager, "cfg")
    pag = make_pipe(sd_repo, manager, "pag")
    pag.update_components(guider=PerturbedAttentionGuidance(
        guidance_scale=5.0, perturbed_guidance_scale=3.0, perturbed_guidance_start=0.0, perturbed_guidance_stop=1.0,
        perturbed_guidance_layers=[0]))
    assert cfg.unet is pag.unet and isinstance(cfg.guider, ClassifierFreeGuidance)
    jobs = [(cfg, 3, 0), (pag, 3, 0), (pag, 4, 1), (cfg, 4, 1)]
    alone = [call(*job) for job in jobs]
    assert not torch.equal(alone[0], alone[1])  # the perturbation changes the image
    for _ in range(TRIALS):
        for expected, got in zip(alone, run_together(jobs)):
            assert torch.equal(expected, got)


def earlier_state(pipe):
    """The state of an earlier call, less its schedule (which a later call would take as custom timesteps)."""
    state = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), num_inference_steps=2, output_type="pt")
    return PipelineState({k: v for k, v in state.values.items() if k != "timesteps"})


def test_a_call_leaves_the_state_it_was_given_unchanged(pipe):
    first = earlier_state(pipe)
    before = dict(first.values)
    latents = first.values["latents"].clone()
    again = [call(pipe, 2, 1, state=first) for _ in range(2)]
    assert torch.equal(again[0], again[1])  # the second call does not start from the first one's results
    assert first.values.keys() == before.keys()
    assert all(first.values[k] is v for k, v in before.items())
    assert torch.equal(first.values["latents"], latents)


def test_a_value_given_as_none_overrides_the_state(pipe):
    assert torch.equal(call(pipe, 2, 1, state=earlier_state(pipe), latents=None), call(pipe, 2, 1))


def test_one_call_is_stopped_alone(pipe):
    stop = threading.Event()
    steps = {"stopped": [], "other": []}
    barrier = threading.Barrier(2, timeout=60)

    def stopped(i, t, latents):
        steps["stopped"].append(i)
        if i == 0:
            stop.set()
            barrier.wait()

    def other(i, t, latents):
        steps["other"].append(i)
        if i == 0:
            barrier.wait()

    results = {}
    threads = [
        threading.Thread(target=lambda: results.__setitem__("stopped", call(pipe, 4, 0, step_callback=stopped,
                                                                             interrupt_event=stop))),
        threading.Thread(target=lambda: results.__setitem__("other", call(pipe, 4, 0, step_callback=other))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert steps == {"stopped": [0], "other": [0, 1, 2, 3]}
    assert torch.equal(results["other"], call(pipe, 4, 0))


def test_interrupt_stops_every_running_call_and_not_the_next(pipe):
    barrier = threading.Barrier(2, timeout=60)
    steps = [[], []]

    def meet(index):
        def callback(i, t, latents):
            steps[index].append(i)
            barrier.wait()
            if index == 0:
                pipe.interrupt()
            barrier.wait()
        return callback

    threads = [threading.Thread(target=call, args=(pipe, 4, 0), kwargs={"step_callback": meet(n)}) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert steps == [[0], [0]]
    later = []
    call(pipe, 3, 0, step_callback=lambda i, t, latents: later.append(i))
    assert later == [0, 1, 2]


def test_modular_repo_of_a_shared_pipeline_still_loads(pipe, tmp_path):
    """The call machinery keeps the pipeline's own components untouched (saved and loaded as before)."""
    call(pipe, 2, 0)
    assert pipe.scheduler.step_index is None and pipe.guider._step is None
    pipe.save_pretrained(tmp_path / "repo")
    again = ModularPipeline.from_pretrained(tmp_path / "repo")
    again.load_components()
    again.set_progress_bar_config(disable=True)
    assert torch.equal(call(again, 2, 0), call(pipe, 2, 0))
