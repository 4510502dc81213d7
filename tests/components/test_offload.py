import threading

import pytest
import torch
from accelerate.hooks import ModelHook, add_hook_to_module

from diffblocks.components.manager import ComponentsManager
from diffblocks.components.offload import (
    MAX_EXACT_CANDIDATES,
    AutoOffloadHook,
    Candidate,
    apply_forward_hook,
    choose_offload,
    module_size_bytes,
    parse_size,
    should_wait,
)
from diffblocks.modular_pipelines.errors import ConfigError

# --- sizes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3GB", 3 * 10**9), ("512MiB", 512 * 2**20), ("1.5gb", 1_500_000_000), (" 10 KB ", 10_000),
        ("100", 100), (42, 42), (0, 0),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["three GB", "3XB", "", -1, None])
def test_parse_size_rejects(bad):
    with pytest.raises(ConfigError, match="expects a size such as '3GB'"):
        parse_size(bad, "memory_reserve_margin")


def test_module_size_counts_shared_tensors_once():
    linear = torch.nn.Linear(4, 4)
    assert module_size_bytes(linear) == (16 + 4) * 4
    tied = torch.nn.Sequential(linear, linear)
    assert module_size_bytes(tied) == (16 + 4) * 4
    assert module_size_bytes(torch.nn.BatchNorm1d(4).half()) == 4 * 4 * 2 + 8  # 4 half tensors, int64 counter


# --- the decision ----------------------------------------------------------------------------------


def c(name, size, last_used):
    return Candidate(name, size, last_used)


@pytest.mark.parametrize(
    "needed, free, reserve, candidates, expected",
    [
        pytest.param(5, 10, 0, [c("a", 8, 1)], [], id="fits"),
        pytest.param(5, 10, 5, [c("a", 8, 1)], [], id="fits-exactly-with-reserve"),
        pytest.param(5, 10, 6, [c("a", 8, 1)], ["a"], id="reserve-pushes-over"),
        pytest.param(10, 5, 0, [], [], id="nothing-to-evict"),
        pytest.param(10, 5, 0, [c("a", 4, 1), c("b", 6, 2), c("c", 10, 3)], ["b"], id="smallest-single"),
        pytest.param(10, 4, 0, [c("a", 3, 1), c("b", 3, 2), c("c", 10, 3)], ["a", "b"], id="pair-beats-big-single"),
        pytest.param(10, 5, 0, [c("a", 5, 2), c("b", 5, 1)], ["b"], id="tie-evicts-lru"),
        pytest.param(
            10, 6, 0, [c("a", 4, 1), c("b", 2, 3), c("c", 2, 2), c("d", 4, 4)], ["a"], id="tie-keeps-most-recent"
        ),
        pytest.param(10, 6, 0, [c("a", 2, 3), c("b", 2, 1), c("c", 100, 0)], ["b", "a"], id="lru-order"),
        pytest.param(100, 5, 0, [c("a", 30, 2), c("b", 20, 1)], ["b", "a"], id="not-enough-evicts-all"),
        pytest.param(10, 0, 0, [c("a", 12, 1), c("b", 13, 2), c("c", 14, 0)], ["a"], id="no-reserve"),
        pytest.param(10, 0, 3, [c("a", 12, 1), c("b", 13, 2), c("c", 14, 0)], ["b"], id="reserve-counts"),
    ],
)
def test_choose_offload(needed, free, reserve, candidates, expected):
    assert choose_offload(needed, free, reserve, candidates) == expected


def busy(name, size, last_used):
    return Candidate(name, size, last_used, in_use=True)


@pytest.mark.parametrize(
    "needed, free, candidates, evict, wait",
    [
        pytest.param(10, 5, [busy("a", 6, 1), c("b", 6, 2)], ["b"], False, id="skips-the-running-one"),
        pytest.param(10, 5, [busy("a", 5, 1), c("b", 3, 2)], ["b"], True, id="idle-not-enough-waits"),
        pytest.param(10, 0, [busy("a", 50, 1)], [], True, id="only-a-running-one"),
        pytest.param(10, 20, [busy("a", 50, 1)], [], False, id="fits-no-wait"),
        pytest.param(100, 5, [c("a", 30, 2), c("b", 20, 1)], ["b", "a"], False, id="nothing-running-over-budget"),
        pytest.param(10, 5, [], [], False, id="nothing-on-device"),
    ],
)
def test_running_models_are_never_chosen_and_make_others_wait(needed, free, candidates, evict, wait):
    assert choose_offload(needed, free, 0, candidates) == evict
    assert should_wait(needed, free, 0, candidates) is wait


def test_choose_offload_many_candidates_is_greedy_but_sufficient():
    candidates = [c(f"m{i}", 10 + i, i) for i in range(MAX_EXACT_CANDIDATES + 4)]
    chosen = choose_offload(needed_bytes=35, free_bytes=0, reserve_bytes=0, candidates=candidates)
    # LRU prefix m0..m3 (46 bytes), then the largest members not needed are given back: only m1 can go
    assert chosen == ["m0", "m2", "m3"]


# --- hooks on CPU with a simulated device ----------------------------------------------------------


class FakeDevice:
    """A device of ``capacity`` bytes whose free memory is what the manager has not placed on it."""

    def __init__(self, manager, capacity):
        self.manager, self.capacity, self.calls = manager, capacity, 0

    def __call__(self, device):
        self.calls += 1
        offloader = self.manager.offloader
        if offloader is None:
            return self.capacity
        comps = self.manager.components
        used = {id(comps[i]): module_size_bytes(comps[i]) for i in offloader.resident_ids}
        return self.capacity - sum(used.values())


def linear(n_in, seed):
    torch.manual_seed(seed)
    return torch.nn.Linear(n_in, 10)  # (n_in * 10 + 10) * 4 bytes


@pytest.fixture
def offloaded():
    manager = ComponentsManager()
    a, b, big = linear(10, 0), linear(10, 1), linear(20, 2)  # 440, 440, 840 bytes
    ids = {n: manager.add(n, m, collection="x") for n, m in (("a", a), ("b", b), ("big", big))}
    probe = FakeDevice(manager, capacity=1400)
    manager.enable_auto_cpu_offload(device="cpu", memory_reserve_margin=0, memory_probe=probe)
    return manager, ids, {"a": a, "b": b, "big": big}


def test_hooks_evict_least_recently_used_when_memory_runs_out(offloaded):
    manager, ids, models = offloaded
    x10, x20 = torch.randn(3, 10), torch.randn(3, 20)
    with torch.no_grad():
        expected = {n: torch.nn.functional.linear(x, m.weight, m.bias) for n, m, x in
                    (("a", models["a"], x10), ("b", models["b"], x10), ("big", models["big"], x20))}
    off = manager.offloader
    assert off.resident_ids == []

    out_a = models["a"](x10)
    assert off.last_evicted == [] and off.resident_ids == [ids["a"]]
    models["b"](x10)
    assert off.last_evicted == [] and off.resident_ids == [ids["a"], ids["b"]]
    models["a"](x10)  # already placed: nothing moves, a becomes most recent
    assert off.last_evicted == [] and off.resident_ids == [ids["b"], ids["a"]]
    out_big = models["big"](x20)  # 840 > 1400 - 880: one of a, b must go; b is least recently used
    assert off.last_evicted == [ids["b"]]
    assert off.resident_ids == [ids["a"], ids["big"]]
    out_b = models["b"](x10)  # 440 > 1400 - 1280: evicting a (440) suffices and frees less than big
    assert off.last_evicted == [ids["a"]]

    torch.testing.assert_close(out_a, expected["a"])
    torch.testing.assert_close(out_b, expected["b"])
    torch.testing.assert_close(out_big, expected["big"])


def test_hooks_cover_components_added_later_and_drop_removed_ones(offloaded):
    manager, ids, models = offloaded
    late = linear(10, 3)
    late_id = manager.add("late", late)
    assert isinstance(late._hf_hook, AutoOffloadHook)
    late(torch.randn(1, 10))
    assert late_id in manager.offloader.resident_ids
    manager.remove(late_id)
    assert not hasattr(late, "_hf_hook")
    assert late_id not in manager.offloader.resident_ids
    late(torch.randn(1, 10))  # still usable without the hook


def test_one_hook_for_an_object_under_two_names(offloaded, recwarn):
    manager, ids, models = offloaded
    alias = manager.add("a_alias", models["a"])
    models["a"](torch.randn(1, 10))
    assert manager.offloader.resident_ids == [ids["a"], alias]
    manager.remove(ids["a"])
    assert isinstance(models["a"]._hf_hook, AutoOffloadHook)  # the alias still uses it
    manager.remove(alias)
    assert not hasattr(models["a"], "_hf_hook")


def test_disable_removes_hooks_and_keeps_results(offloaded):
    manager, ids, models = offloaded
    x = torch.randn(2, 10)
    before = models["a"](x)
    manager.disable_auto_cpu_offload()
    assert manager.offloader is None
    assert all(not hasattr(m, "_hf_hook") for m in models.values())
    torch.testing.assert_close(models["a"](x), before)


def test_enable_twice_replaces_hooks(offloaded):
    manager, ids, models = offloaded
    first = manager.offloader
    manager.enable_auto_cpu_offload("cpu", "1KB", memory_probe=lambda d: 10**6)
    assert manager.offloader is not first and manager.offloader.reserve_bytes == 1000
    assert models["a"]._hf_hook._offloader() is manager.offloader


def test_apply_forward_hook_places_the_model_for_other_entry_points():
    class Decoder(torch.nn.Linear):
        @apply_forward_hook
        def decode(self, x):
            return torch.nn.functional.linear(x, self.weight, self.bias)

    manager = ComponentsManager()
    decoder = Decoder(4, 4)
    cid = manager.add("vae", decoder)
    manager.enable_auto_cpu_offload("cpu", 0, memory_probe=lambda d: 10**6)
    decoder.decode(torch.randn(1, 4))
    assert manager.offloader.resident_ids == [cid]


def test_apply_forward_hook_runs_other_hooks_pre_forward():
    class Double(ModelHook):
        def pre_forward(self, module, *args, **kwargs):
            return tuple(2 * a for a in args), kwargs

    class Decoder(torch.nn.Module):
        @apply_forward_hook
        def decode(self, x):
            return x + 1

    decoder = add_hook_to_module(Decoder(), Double())
    assert decoder.decode(torch.ones(1)).item() == 3


def test_enable_rejects_a_device_it_cannot_query():
    def broken(device):
        raise RuntimeError("no such device")

    with pytest.raises(ConfigError, match="'device' expects an available device, got 'cuda:7'") as info:
        ComponentsManager().enable_auto_cpu_offload("cuda:7", memory_probe=broken)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_concurrent_forwards_keep_placement_within_capacity(offloaded):
    manager, ids, models = offloaded
    probe = manager.offloader.memory_probe
    errors = []

    def run(name, x):
        try:
            for _ in range(30):
                models[name](x)
                assert probe(manager.offloader.device) >= 0
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n, torch.randn(1, 20 if n == "big" else 10))) for n in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_repr_shows_execution_device(offloaded):
    manager, ids, models = offloaded
    assert "auto offload to cpu" in repr(manager)
    assert "cpu (exec cpu)" in repr(manager)


# --- on a real GPU ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_offload_moves_models_and_inputs():
    manager = ComponentsManager()
    a, b = linear(10, 0), linear(10, 1)
    x = torch.randn(2, 10)
    expected_a, expected_b = a(x).detach(), b(x).detach()
    ids = [manager.add("a", a), manager.add("b", b)]
    free = {"bytes": 10**12}
    manager.enable_auto_cpu_offload("cuda", 0, memory_probe=lambda d: free["bytes"])
    assert a.weight.device.type == "cpu"
    out = a(x)  # a CPU input is moved to the device
    assert out.device.type == "cuda" and a.weight.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), expected_a)
    free["bytes"] = 0  # simulate a full device: b can only come in if a leaves
    torch.testing.assert_close(b(x).cpu(), expected_b)
    assert manager.offloader.last_evicted == [ids[0]]
    assert a.weight.device.type == "cpu" and b.weight.device.type == "cuda"
    manager.disable_auto_cpu_offload()
    assert b.weight.device.type == "cpu"


@pytest.mark.gpu
def test_cuda_default_probe_reads_free_memory():
    manager = ComponentsManager()
    model = linear(10, 0)
    manager.add("m", model)
    manager.enable_auto_cpu_offload("cuda", "1MB")
    model(torch.randn(1, 10))
    assert model.weight.device.type == "cuda"
    assert manager.offloader.last_evicted == []
