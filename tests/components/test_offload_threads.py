"""Auto offload under threads: a model whose forward runs, in any thread, is never moved.

The device is simulated on CPU (a memory probe that counts the bytes of the models placed on it); moves are
seen by recording every ``Module._apply`` together with the number of the model's forwards running then.
Events, not sleeps, order the threads; timeouts only bound a failing test.
"""

import logging
import random
import sys
import threading

import pytest
import torch

from diffblocks.components.manager import ComponentsManager
from diffblocks.components.offload import apply_forward_hook, module_size_bytes

LOGGER = "diffblocks.components.offload"
TIMEOUT = 30  # seconds; reached only when the behaviour under test is broken


class Tracked(torch.nn.Linear):
    """A 10 -> 10 linear layer (440 bytes) that logs each move of its weights as ``(name, forwards running)``.

    ``during(model)``, when set, runs inside the forward; ``decode`` is a decorated entry point that calls
    the hooked forward (a nested use, like ``vae.decode`` calling ``vae.forward``).
    """

    def __init__(self, name, seed, moves):
        torch.manual_seed(seed)
        super().__init__(10, 10)
        self.name, self.moves, self.during = name, moves, None
        self.running, self._count = 0, threading.Lock()

    def forward(self, x):
        with self._count:
            self.running += 1
        try:
            if self.during is not None:
                self.during(self)
            return super().forward(x)
        finally:
            with self._count:
                self.running -= 1

    @apply_forward_hook
    def decode(self, x):
        return self.forward(x) * 2

    def _apply(self, fn, recurse=True):
        self.moves.append((self.name, self.running))
        return super()._apply(fn, recurse)


def offloaded(names, capacity):
    """A manager offloading ``Tracked`` models to a simulated device of ``capacity`` bytes."""
    moves = []
    manager = ComponentsManager()
    models = {name: Tracked(name, seed, moves) for seed, name in enumerate(names)}
    ids = {name: manager.add(name, model) for name, model in models.items()}

    def free_bytes(device):
        if manager.offloader is None:  # enable_auto_cpu_offload checking the device
            return capacity
        components = manager.components
        return capacity - sum(module_size_bytes(components[cid]) for cid in manager.offloader.resident_ids)

    manager.enable_auto_cpu_offload("cpu", 0, memory_probe=free_bytes)
    moves.clear()  # attaching moved each model to CPU
    return manager, ids, models, moves


def moved_while_running(moves):
    return [(name, running) for name, running in moves if running]


def reference(model, x):
    with torch.no_grad():
        return torch.nn.functional.linear(x, model.weight, model.bias)


def in_thread(target):
    """Run ``target`` in a daemon thread (a hang cannot block the test run); returns its result or error."""
    outcome = {}

    def run():
        try:
            outcome["result"] = target()
        except Exception as err:  # reported below
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "the call never returned"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class _OnMessage(logging.Handler):
    def __init__(self, text, event):
        super().__init__(logging.INFO)
        self.text, self.event = text, event

    def emit(self, record):
        if self.text in record.getMessage():
            self.event.set()


@pytest.fixture
def waiting(caplog):
    """An event set when a thread starts waiting for room on the device (the offloader logs it)."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    event = threading.Event()
    handler = _OnMessage("waits for room", event)
    logging.getLogger(LOGGER).addHandler(handler)
    yield event
    logging.getLogger(LOGGER).removeHandler(handler)


# --- two threads, ordered by events --------------------------------------------------------------


@pytest.mark.parametrize("entry", ["forward", "decode"])
def test_a_running_model_is_not_evicted_for_another_threads_model(waiting, entry):
    manager, ids, models, moves = offloaded(["a", "b"], capacity=600)  # one model fits, not two
    x = torch.randn(2, 10)
    order, out = [], {}

    def run_b():
        try:
            out["b"] = models["b"](x)
        finally:
            order.append("b ended")
            waiting.set()  # the old behaviour: b evicts a and ends without waiting

    thread_b = threading.Thread(target=run_b, daemon=True)

    def inside_a(model):
        thread_b.start()
        assert waiting.wait(TIMEOUT)  # b waits for a's forward to end (or, if broken, b is already done)
        order.append("a ends")

    models["a"].during = inside_a
    out["a"] = getattr(models["a"], entry)(x)
    thread_b.join(TIMEOUT)

    assert order == ["a ends", "b ended"]
    assert moved_while_running(moves) == []
    assert moves == [("a", 0), ("a", 0), ("b", 0)]  # a placed, a evicted once its forward ended, b placed
    assert manager.offloader.resident_ids == [ids["b"]]
    factor = 2 if entry == "decode" else 1
    assert torch.equal(out["a"], reference(models["a"], x) * factor)
    assert torch.equal(out["b"], reference(models["b"], x))


@pytest.mark.parametrize("entry", ["forward", "decode"])
def test_an_exception_in_the_forward_ends_its_use(entry):
    manager, ids, models, moves = offloaded(["a", "b"], capacity=600)
    x = torch.randn(2, 10)

    def fail(model):
        raise RuntimeError("forward failed")

    models["a"].during = fail
    with pytest.raises(RuntimeError, match="forward failed"):
        getattr(models["a"], entry)(x)
    assert not manager.offloader.holds(models["a"])
    # b needs a's room: were a still counted in use, b would wait for it forever
    assert torch.equal(in_thread(lambda: models["b"](x)), reference(models["b"], x))
    assert manager.offloader.last_evicted == [ids["a"]]
    assert manager.offloader.resident_ids == [ids["b"]]


def test_a_thread_inside_a_forward_never_waits_and_goes_over_budget():
    manager, ids, models, moves = offloaded(["a", "b"], capacity=600)
    x = torch.randn(2, 10)
    models["a"].during = lambda model: models["b"](x)  # b is needed while this thread holds a

    assert torch.equal(in_thread(lambda: models["a"](x)), reference(models["a"], x))
    assert moved_while_running(moves) == []
    assert sorted(manager.offloader.resident_ids) == sorted([ids["a"], ids["b"]])  # 880 bytes on 600


def test_a_model_is_placed_over_budget_when_nothing_is_running():
    manager, ids, models, moves = offloaded(["a", "b"], capacity=300)  # not even one model fits
    x = torch.randn(2, 10)
    models["a"](x)
    assert torch.equal(in_thread(lambda: models["b"](x)), reference(models["b"], x))
    assert manager.offloader.last_evicted == [ids["a"]]


@pytest.mark.parametrize("how", ["remove", "disable"])
def test_a_model_unhooked_while_it_runs_goes_to_cpu_when_it_ends(how):
    manager, ids, models, moves = offloaded(["a"], capacity=600)
    x = torch.randn(2, 10)

    def unhook(model):
        manager.remove(ids["a"]) if how == "remove" else manager.disable_auto_cpu_offload()
        assert not hasattr(model, "_hf_hook")

    models["a"].during = unhook
    assert torch.equal(models["a"](x), reference(models["a"], x))
    assert moves == [("a", 0), ("a", 0)]  # placed before its forward, back to CPU after it, never during


# --- many threads, random calls ------------------------------------------------------------------


def test_random_concurrent_calls_never_move_a_running_model():
    names = ["a", "b", "c", "d", "e"]
    manager, ids, models, moves = offloaded(names, capacity=1000)  # two models fit at a time
    xs = [torch.randn(2, 10, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    models["e"].during = lambda model: models["a"](xs[0])  # a nested use of another model
    plans = [
        [(rng.choice(names), rng.randrange(len(xs)), rng.choice(["forward", "decode"])) for _ in range(50)]
        for rng in (random.Random(seed) for seed in range(4))
    ]
    expected = {call: getattr(models[call[0]], call[2])(xs[call[1]]) for plan in plans for call in plan}
    moves.clear()
    results, errors = [[] for _ in plans], []
    start = threading.Barrier(len(plans))

    def work(plan, out):
        try:
            start.wait()
            out.extend(getattr(models[name], entry)(xs[i]) for name, i, entry in plan)
        except Exception as err:  # reported below
            errors.append(err)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so forwards interleave
    try:
        threads = [threading.Thread(target=work, args=args, daemon=True) for args in zip(plans, results)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
    finally:
        sys.setswitchinterval(interval)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(moves) > 20  # models did come and go
    assert moved_while_running(moves) == []
    for plan, out in zip(plans, results):
        assert all(torch.equal(o, expected[call]) for o, call in zip(out, plan, strict=True))
    assert all(not model.running for model in models.values())
