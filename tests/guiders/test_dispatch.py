"""Perturbations are per call: concurrent forwards through one shared model, and interrupted forwards.

Every comparison is bitwise (``torch.equal``) against the same forward run alone: a perturbation of another
call leaking into a forward, or one left behind by an interrupted forward, changes the numbers.
Threads meet at a ``threading.Barrier`` inside their ``with`` blocks, so every plan is active while every
thread runs its forward (no timing involved); the barrier's timeout only turns a deadlock into a failure.
"""

import sys
import threading

import pytest
import torch

import diffblocks.guiders as gd
from diffblocks.guiders import dispatch, hooks

MID = "mid_block.attentions.0.transformer_blocks"
THREADS_TIMEOUT = 120

PLANS = {
    "pag": [(slice(1, 2), gd.LayerSkipConfig([0, 1], fqn=MID, skip_attention=False, skip_attention_scores=True, skip_ff=False))],
    "none": [],
    "seg": [(slice(0, 1), gd.SmoothedEnergyGuidanceConfig([0, 1], fqn=MID, blur_sigma=0.5))],
    "skip": [(slice(1, 2), gd.LayerSkipConfig([1], fqn=MID))],
    "pag+skip": [
        (slice(0, 1), gd.LayerSkipConfig([1], fqn=MID, skip_attention=False, skip_attention_scores=True, skip_ff=False)),
        (slice(1, 2), gd.LayerSkipConfig([0], fqn=MID, skip_attention=True, skip_ff=False)),
    ],
}


def _forward(unet, inputs):
    with torch.no_grad():
        return unet(
            torch.cat([inputs["latents"]] * 2), inputs["timestep"],
            encoder_hidden_states=torch.cat([inputs["cond"], inputs["uncond"]]),
        ).sample


def _alone(unet, inputs, plan):
    with hooks.apply_perturbations(unet, plan, batch=2):
        return _forward(unet, inputs)


@pytest.fixture(scope="module")
def references(unet, unet_inputs):
    refs = {name: _alone(unet, unet_inputs, plan) for name, plan in PLANS.items()}
    for name, ref in refs.items():
        if name != "none":  # each plan really changes the forward, so a leak would show
            assert not torch.equal(ref, refs["none"]), name
    return refs


def _clean(model):
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, type(module).__name__
    assert torch._C._len_torch_function_stack() == 0
    assert dispatch.dispatched_modules() == 0
    assert dispatch._ACTIVE.get() is None


def _run_threads(workers):
    """Run each callable in its own thread; re-raise the first error any of them hit."""
    errors = []

    def guarded(work):
        try:
            work()
        except BaseException as err:  # reported by the test's thread, below
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _overlapping(names, trials, run_one):
    """Each name in its own thread, ``trials`` times; every thread is inside its plan during every forward."""
    barrier = threading.Barrier(len(names), timeout=THREADS_TIMEOUT)
    results = {i: [] for i in range(len(names))}

    def worker(i, name):
        def work():
            try:
                for _ in range(trials):
                    results[i].append(run_one(name, barrier))
            except BaseException:
                barrier.abort()
                raise

        return work

    _run_threads([worker(i, name) for i, name in enumerate(names)])
    return results


def test_concurrent_plans_on_one_model_each_see_only_their_own(unet, unet_inputs, references):
    names = ["pag", "none", "seg", "skip", "pag+skip", "pag", "none"]

    def run_one(name, barrier):
        with hooks.apply_perturbations(unet, PLANS[name], batch=2):
            barrier.wait()  # every plan is active now ...
            out = _forward(unet, unet_inputs)
            barrier.wait()  # ... and stays active until every thread has run its forward
        return out

    results = _overlapping(names, trials=4, run_one=run_one)
    for i, name in enumerate(names):
        for out in results[i]:
            assert torch.equal(out, references[name]), name
    _clean(unet)


def test_cfg_calls_next_to_pag_calls_stay_unperturbed(unet, unet_inputs, references):
    """Two pipelines sharing one UNet: CFG (no perturbation) and PAG, run by the guiders as the loop does."""
    pag = gd.PerturbedAttentionGuidance(
        guidance_scale=1.0, perturbed_guidance_config=PLANS["pag"][0][1], perturbed_guidance_start=0.0,
        perturbed_guidance_stop=1.0,
    )
    cfg = gd.ClassifierFreeGuidance()
    guiders = {"pag": pag, "cfg": cfg}
    for guider in guiders.values():
        guider.set_state(0, 10)
    assert [b.name for b in pag.branches] == ["pred_cond", "pred_cond_skip"]

    def run_one(name, barrier):
        guider = guiders[name]
        with guider.perturb(unet, guider.batch_slices(1)):
            barrier.wait()
            out = _forward(unet, unet_inputs)
            barrier.wait()
        return out

    names = ["cfg", "pag", "cfg", "pag"]
    results = _overlapping(names, trials=4, run_one=run_one)
    for i, name in enumerate(names):
        for out in results[i]:
            assert torch.equal(out, references["none" if name == "cfg" else "pag"]), name
    _clean(unet)


def test_hooks_come_and_go_while_other_threads_run_forwards(unet, unet_inputs, references):
    """One thread adds and removes the dispatchers as fast as it can while others run forwards through
    those modules, plain or perturbed; a switch interval of 1 us makes the threads interleave finely."""
    done = threading.Event()

    def churn():
        while not done.is_set():
            with hooks.apply_perturbations(unet, PLANS["pag+skip"], batch=2):
                pass

    def forwards(name):
        def work():
            for _ in range(6):
                out = _alone(unet, unet_inputs, PLANS[name])
                assert torch.equal(out, references[name]), name

        return work

    def then_stop(work):
        def run():
            try:
                work()
            finally:
                done.set()

        return run

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _run_threads([churn, then_stop(forwards("none")), forwards("none"), forwards("pag"), forwards("skip")])
    finally:
        sys.setswitchinterval(interval)
    _clean(unet)


def test_a_half_registered_dispatcher_is_a_no_op_for_other_calls(unet, unet_inputs, references):
    """PyTorch registers a hook before its with_kwargs flag; a forward in between calls it without kwargs."""
    attn = unet.mid_block.attentions[0].transformer_blocks[0].attn1
    pre = attn.register_forward_pre_hook(dispatch._before)
    post = attn.register_forward_hook(dispatch._after)
    try:
        assert torch.equal(_forward(unet, unet_inputs), references["none"])
        with hooks.apply_perturbations(unet, PLANS["skip"], batch=2):  # edits elsewhere in the same model
            assert torch.equal(_forward(unet, unet_inputs), references["skip"])
    finally:
        pre.remove()
        post.remove()
    _clean(unet)


# --- interruptions --------------------------------------------------------------------------------------


class _Interrupt(KeyboardInterrupt):
    """A KeyboardInterrupt (a BaseException: PyTorch's always_call hooks do not run for it)."""


def _raise(*_):
    raise _Interrupt()


def _attn(unet, block):
    return unet.mid_block.attentions[0].transformer_blocks[block].attn1


# Where the forward is interrupted: before, inside and after the perturbed attention modules.
POINTS = {
    "before the mid block": lambda u: u.down_blocks[1].register_forward_hook(_raise),
    "pre-hook after ours": lambda u: _attn(u, 0).register_forward_pre_hook(_raise),
    "inside attention, before SDPA": lambda u: _attn(u, 0).to_q.register_forward_hook(_raise),
    "inside attention, after SDPA": lambda u: _attn(u, 1).to_out[0].register_forward_hook(_raise),
    "post-hook after ours": lambda u: _attn(u, 1).register_forward_hook(_raise),
    "between perturbed blocks": lambda u: u.mid_block.attentions[0].transformer_blocks[1].norm1.register_forward_hook(_raise),
    "after the mid block": lambda u: u.up_blocks[0].register_forward_hook(_raise),
}


@pytest.mark.parametrize("plan", ["pag", "seg", "pag+skip"])
@pytest.mark.parametrize("point", list(POINTS))
def test_an_interrupted_forward_leaves_nothing_behind(unet, unet_inputs, references, plan, point):
    modes = torch._C._len_torch_function_stack()
    for _ in range(2):
        with pytest.raises(_Interrupt):
            with hooks.apply_perturbations(unet, PLANS[plan], batch=2):
                handle = POINTS[point](unet)  # registered after the dispatchers
                try:
                    _forward(unet, unet_inputs)
                finally:
                    handle.remove()
        assert torch._C._len_torch_function_stack() == modes
        assert torch.equal(_forward(unet, unet_inputs), references["none"])
        assert torch.equal(_alone(unet, unet_inputs, PLANS[plan]), references[plan])
    _clean(unet)


@pytest.mark.parametrize("nth", [1, 2])
@pytest.mark.parametrize("step", ["_push_mode", "_pop_mode"])
def test_an_interrupt_inside_the_dispatcher_leaves_nothing_behind(unet, unet_inputs, references, monkeypatch, step, nth):
    """Interrupted right after a mode was pushed or popped, before the bookkeeping that follows."""
    real = getattr(dispatch, step)
    calls = [0]

    def interrupted(*args):
        out = real(*args)
        calls[0] += 1
        if calls[0] == nth:
            raise _Interrupt()
        return out

    monkeypatch.setattr(dispatch, step, interrupted)
    with pytest.raises(_Interrupt):
        _alone(unet, unet_inputs, PLANS["pag"])  # two attention modes: two pushes, two pops
    monkeypatch.setattr(dispatch, step, real)
    assert torch.equal(_forward(unet, unet_inputs), references["none"])
    _clean(unet)


def test_a_mode_entered_inside_a_perturbed_forward_survives_it(unet, unet_inputs, references):
    """Leaving our mode from under a foreign one keeps the foreign one (and its place) on the stack."""
    from torch.overrides import TorchFunctionMode

    class Foreign(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    foreign = Foreign()
    handle = _attn(unet, 0).to_q.register_forward_hook(lambda *_: foreign.__enter__() and None)
    try:
        assert torch.equal(_alone(unet, unet_inputs, PLANS["pag"]), references["pag"])
        assert torch.overrides._get_current_function_mode_stack() == [foreign]
    finally:
        handle.remove()
        foreign.__exit__(None, None, None)
    assert torch.equal(_forward(unet, unet_inputs), references["none"])
    _clean(unet)


def test_an_error_inside_a_perturbed_module_leaves_its_mode_at_once(unet, unet_inputs):
    """Model code may catch an error and go on: the attention mode must not stay active for what follows."""
    attn, other = _attn(unet, 0), unet.up_blocks[1].attentions[0].transformer_blocks[0].attn1
    x, y = torch.randn(2, 16, attn.to_q.in_features), torch.randn(2, 16, other.to_q.in_features)
    with torch.no_grad():
        plain = other(y)
        handle = attn.to_out[0].register_forward_hook(lambda *_: _raise_runtime())
        with hooks.apply_perturbations(unet, PLANS["pag"], batch=2):
            try:
                with pytest.raises(RuntimeError, match="caught by the model"):
                    attn(x)
            finally:
                handle.remove()
            assert torch._C._len_torch_function_stack() == 0
            assert torch.equal(other(y), plain)  # a self-attention outside the plan, after the error
    _clean(unet)


def _raise_runtime():
    raise RuntimeError("caught by the model")


# --- the dispatcher called directly -----------------------------------------------------------------------


class _Double(dispatch.Edit):
    def after(self, module, args, kwargs, output, state):
        return output * 2


def test_the_post_dispatcher_takes_either_calling_convention_without_an_open_frame():
    """A post-hook met without its pre-hook (no frame opened), called with or without kwargs, still edits."""
    module, x = torch.nn.Identity(), torch.ones(2)
    with dispatch.activate({module: [_Double()]}):
        assert torch.equal(dispatch._after(module, (x,), x), 2 * x)
        assert torch.equal(dispatch._after(module, (x,), {}, x), 2 * x)
        assert dispatch._after(torch.nn.Identity(), (x,), {}, x) is None  # a module without edits: untouched
    assert dispatch.dispatched_modules() == 0
