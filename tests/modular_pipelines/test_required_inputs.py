"""A required input nothing gives is reported before any block runs, naming the block that needs it."""

import pytest
from toy_blocks import make_block, make_step

from diffblocks import AutoPipelineBlocks, SequentialPipelineBlocks
from diffblocks.modular_pipelines.errors import MissingInputError


def counting_pipeline(calls):
    def first(block_state):
        calls.append("first")
        block_state.mid = 1

    blocks = SequentialPipelineBlocks.from_blocks_dict({
        "first": make_block("First", inputs=["x"], outputs=["mid"], fn=first),
        "pick": AutoPipelineBlocks.from_blocks_dict(
            {"with_image": make_step("WithImage", requires=["mid", "strength"], outputs=["out"]),
             "plain": make_step("Plain", requires=["mid"], outputs=["out"])}, trigger_inputs=["image", None]),
        "last": make_step("Last", requires=["out", "size"]),
    })
    return blocks.init_pipeline()


@pytest.mark.parametrize("given,missing,where", [
    ({"x": 1}, "size", "block 'last' (Last)"),
    ({"x": 1, "size": 2, "image": 3}, "strength", "block 'pick.with_image' (WithImage)"),
])
def test_missing_input_is_reported_before_any_block_runs(given, missing, where):
    calls = []
    with pytest.raises(MissingInputError, match=missing) as info:
        counting_pipeline(calls)(**given)
    assert where in str(info.value) and calls == []


def test_inputs_from_an_earlier_state_or_an_earlier_block_count_as_given():
    calls = []
    pipe = counting_pipeline(calls)
    state = pipe(x=1, size=2)
    assert calls == ["first"] and state.get("out") == "Plain.out"
    pipe(state=state)  # everything needed is in the state
    assert calls == ["first", "first"]


def test_an_earlier_block_s_default_counts_as_given_and_its_optional_input_without_one_does_not():
    from diffblocks import InputParam

    calls = []
    without = SequentialPipelineBlocks.from_blocks_dict({
        "first": make_block("First", inputs=["seed"], fn=lambda bs: calls.append("first")),
        "needs": make_step("Needs", requires=["seed"]),
    })
    with pytest.raises(MissingInputError, match=r"block 'needs' \(Needs\) needs the required input 'seed'"):
        without.init_pipeline()()
    assert calls == []  # before any block ran
    with_default = SequentialPipelineBlocks.from_blocks_dict({
        "first": make_block("First", inputs=[InputParam("seed", default=3)]),
        "needs": make_step("Needs", requires=["seed"], outputs=["out"]),
    })
    assert with_default.init_pipeline()(output="out") == "Needs.out"
