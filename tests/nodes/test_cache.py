"""The output cache's key and eviction rules, as pure functions over tables, and its byte budget."""

import pytest
import torch

from diffblocks.nodes.cache import Entry, OutputCache, eviction_order
from diffblocks.nodes.keys import component_identity, node_key

BASE = dict(type_name="T", version="v1", constants={"seed": 1}, links={"x": "k0:latents"}, identities={"unet": "u"})


@pytest.mark.parametrize("change", [
    {"type_name": "U"}, {"version": "v2"}, {"constants": {"seed": 2}}, {"constants": {}},
    {"links": {"x": "k1:latents"}}, {"links": {"x": "k0:images"}}, {"identities": {"unet": "u|peft=a"}},
])
def test_a_key_changes_with_each_thing_a_node_computes_from(change):
    assert node_key(**{**BASE, **change}) != node_key(**BASE)


def test_a_key_is_the_same_for_the_same_inputs_in_any_order():
    assert node_key(**BASE) == node_key(**{**BASE, "constants": {"seed": 1}})
    two = {"a": 1, "b": [1, 2]}
    assert node_key(**{**BASE, "constants": two}) == node_key(**{**BASE, "constants": dict(reversed(two.items()))})


def test_a_component_changed_in_place_gets_a_new_identity():
    model = torch.nn.Linear(2, 2)
    before = component_identity(model)
    assert before == component_identity(model) and component_identity(torch.nn.Linear(2, 2)) != before
    model.peft_config = {"style": object()}
    assert component_identity(model) != before
    assert component_identity(3) is None


MB = 2**20


@pytest.mark.parametrize("entries,now,first", [
    ({"cheap_big": Entry({}, 100 * MB, 1.0, 0), "costly_small": Entry({}, MB, 1.0, 0)}, 0, "cheap_big"),
    ({"old": Entry({}, MB, 1.0, 0), "recent": Entry({}, MB, 1.0, 3000)}, 3000, "old"),
    ({"slow": Entry({}, MB, 30.0, 0), "fast": Entry({}, MB, 0.1, 0)}, 0, "fast"),
])
def test_eviction_goes_by_size_age_and_recompute_cost(entries, now, first):
    assert eviction_order(entries, now)[0] == first


def test_the_budget_holds_and_free_empties():
    clock = iter(range(100)).__next__
    cache = OutputCache(budget=3000, clock=clock)
    for i in range(5):
        assert cache.put(f"k{i}", {"t": torch.zeros(250)}, seconds=1.0)  # 1000 bytes each
    info = cache.info()
    assert info["bytes"] <= 3000 and info["entries"] == 3
    assert "k4" in cache and "k0" not in cache
    assert not cache.put("huge", {"t": torch.zeros(10_000)}, seconds=1.0) and "huge" not in cache
    cache.free()
    assert cache.info()["entries"] == 0


def test_models_in_outputs_count_nothing():
    cache = OutputCache(budget=100)
    assert cache.put("load", {"unet": torch.nn.Linear(100, 100)}, seconds=1.0)
    assert cache.info()["bytes"] == 0


def test_a_change_marked_on_a_component_gives_it_a_new_identity():
    from diffblocks.components.spec import mark_changed

    model = torch.nn.Linear(2, 2)
    before = component_identity(model)
    mark_changed(model)  # what loading or rescaling an IP-Adapter, or swapping attention processors, does
    assert component_identity(model) != before

