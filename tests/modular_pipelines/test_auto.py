"""AutoPipelineBlocks picks its branch by which trigger inputs are given, and a value given as None is not given.

``pipe(prompt=..., image=None)`` must run text-to-image, as ``pipe(prompt=...)`` does: callers pass optional
inputs through as None (a UI with an empty image slot, a CLI flag left out).
"""

import pytest
import torch
from toy_blocks import AutoImageBlocks, TwiceLoop, make_loop_step

from diffblocks.modular_pipelines import AutoPipelineBlocks, InputParam, PipelineState


@pytest.mark.parametrize("given, ran", [
    ({}, "text2img"),
    ({"image": None}, "text2img"),
    ({"image": None, "mask": None}, "text2img"),
    ({"image": "an image"}, "img2img"),
    ({"image": "an image", "mask": None}, "img2img"),
    ({"image": "an image", "mask": "a mask"}, "inpaint"),
])
def test_a_trigger_given_as_none_is_not_given(given, ran):
    pipe = AutoImageBlocks().init_pipeline()
    assert pipe(prompt="a cat", output="ran", **given) == ran


def test_a_trigger_set_to_none_in_an_earlier_state_is_not_given():
    pipe = AutoImageBlocks().init_pipeline()
    earlier = pipe(prompt="a cat", image="an image")
    assert earlier.get("ran") == "img2img"
    assert pipe(state=earlier, image=None, output="ran") == "text2img"


def test_select_reads_values_as_given_only_when_not_none():
    auto = AutoImageBlocks()
    assert auto.select({"image": None, "mask": None})[0] == "text2img"
    assert auto.select({"image": 0, "mask": None})[0] == "img2img"  # a falsy value is still given
    assert auto.select({"image"})[0] == "img2img"  # a set of names: each is given
    assert type(auto.get_execution_blocks("image")).__name__ == "ImageToImageBlock"
    assert type(auto.get_execution_blocks(image=None, mask=None)).__name__ == "TextToImageBlock"


def test_without_a_default_a_trigger_given_as_none_skips_the_block():
    Mark = make_loop_step("Mark", outputs=["marked"])
    auto = AutoPipelineBlocks.from_blocks_dict({"mark": Mark}, trigger_inputs=["flag"])
    assert auto.select({"flag": None}) is None
    assert auto.select({"flag": torch.zeros(0)})[0] == "mark"


def test_inside_a_loop_a_trigger_left_none_on_the_block_state_is_not_given():
    """Inside a loop the Auto block reads the shared BlockState, which holds every declared input (None if absent)."""
    Flagged = make_loop_step("Flagged", outputs=["path"])
    Plain = make_loop_step("Plain", outputs=["path"])
    auto = AutoPipelineBlocks.from_blocks_dict({"flagged": Flagged, "plain": Plain}, trigger_inputs=["flag", None])

    class Loop(TwiceLoop):
        loop_inputs = [InputParam("flag")]

    pipe = Loop.from_blocks_dict({"choose": auto}).init_pipeline()
    assert pipe(output="path") == "Plain.path"
    assert pipe(flag=None, output="path") == "Plain.path"
    assert pipe(flag=1, output="path") == "Flagged.path"
    assert pipe(state=PipelineState({"flag": 1}), flag=None, output="path") == "Plain.path"


@pytest.mark.parametrize("triggers", [[None, None], ["image"], ["image", "mask", None]])
def test_from_blocks_dict_refuses_triggers_that_do_not_fit_naming_them(triggers):
    from toy_blocks import make_step

    from diffblocks.modular_pipelines.errors import BlockDeclarationError

    branches = {"a": make_step("A", outputs=["x"]), "b": make_step("B", outputs=["x"])}
    with pytest.raises(BlockDeclarationError, match="at most one None") as info:
        AutoPipelineBlocks.from_blocks_dict(branches, trigger_inputs=triggers)
    assert f"got {triggers}" in str(info.value) and "(2)" in str(info.value)


def test_from_blocks_dict_keeps_the_description_and_nested_autos_see_what_is_provided():
    from toy_blocks import make_step

    from diffblocks import SequentialPipelineBlocks

    inner = AutoPipelineBlocks.from_blocks_dict(
        {"masked": make_step("Masked", outputs=["y"]), "plain": make_step("Plain", outputs=["y"])},
        trigger_inputs=["mask", None])
    outer = AutoPipelineBlocks.from_blocks_dict(
        {"with_image": SequentialPipelineBlocks.from_blocks_dict({"inner": inner}), "none": make_step("None_")},
        trigger_inputs=["image", None], description="picks by image, then by mask")
    assert outer.description == "picks by image, then by mask"
    chosen = outer.get_execution_blocks("image", "mask")
    assert [type(b).__name__ for b in chosen.sub_blocks.values()] == ["Masked"]


def test_from_blocks_dict_without_triggers_takes_the_class_s():
    from toy_blocks import make_block

    auto = AutoImageBlocks.from_blocks_dict({"a": make_block("A"), "b": make_block("B"), "c": make_block("C")})
    assert auto.trigger_map == {"a": "mask", "b": "image", "c": None}
    assert auto.select({"image"})[0] == "b" and auto.select(set())[0] == "c"


def test_an_auto_block_inside_a_loop_runs_its_choice_with_the_loop_arguments():
    from toy_components import Count, CountLoop

    from diffblocks import ModularPipelineBlocks, OutputParam, SequentialPipelineBlocks
    from diffblocks.modular_pipelines.call import CallComponents
    from diffblocks.modular_pipelines.errors import BlockExecutionError

    seen = []

    class Boosted(ModularPipelineBlocks):
        inputs = [InputParam("count", default=0), InputParam("boost")]
        intermediate_outputs = [OutputParam("count")]

        def __call__(self, components, block_state, i):
            seen.append((components, i))
            if block_state.boost == "boom":
                raise ValueError("no boost")
            block_state.count += 10 * i
            return components, block_state

    class Choose(AutoPipelineBlocks):
        block_classes = [Boosted, Count]
        block_names = ["boosted", "plain"]
        block_trigger_inputs = ["boost", None]

    pipe = CountLoop.from_blocks_dict({"step": Choose}).init_pipeline()
    assert pipe(num_steps=3, boost=1, output="count") == 0 + 10 + 20
    assert [i for _, i in seen] == [0, 1, 2] and all(isinstance(c, CallComponents) for c, _ in seen)
    assert pipe(num_steps=3, output="count") == 0 + 1 + 2  # the default branch
    with pytest.raises(BlockExecutionError) as caught:
        pipe(num_steps=2, boost="boom")
    assert str(caught.value).startswith(
        "block 'step.boosted' (Boosted) failed: ValueError: no boost\n  inputs: count=0, boost='boom'")
    nested = SequentialPipelineBlocks.from_blocks_dict({"denoise": CountLoop.from_blocks_dict({"step": Choose})})
    with pytest.raises(BlockExecutionError, match=r"^block 'denoise\.step\.boosted' \(Boosted\) failed"):
        nested.init_pipeline()(num_steps=2, boost="boom")  # the full path, however deep the loop is


@pytest.mark.parametrize("kind, declared, counts", [
    ("auto", {"block_names": ["count", "plus"], "block_trigger_inputs": ["x"]},
     "block_classes=2, block_names=2, block_trigger_inputs=1"),
    ("sequence", {"block_names": ["count"]}, "block_classes=2, block_names=1"),
])
def test_uneven_declarations_say_how_many_of_each(kind, declared, counts):
    from toy_components import Count, Plus

    from diffblocks import SequentialPipelineBlocks
    from diffblocks.modular_pipelines.errors import BlockDeclarationError

    base = AutoPipelineBlocks if kind == "auto" else SequentialPipelineBlocks
    uneven = type("Uneven", (base,), {"block_classes": [Count, Plus], **declared})
    with pytest.raises(BlockDeclarationError) as caught:
        uneven()
    assert str(caught.value) == ("Uneven: block_classes, block_names and block_trigger_inputs must have one entry per "
                                 f"block; got {counts}")


def test_an_error_in_the_block_an_auto_block_chose_names_its_full_path():
    from toy_components import Plus

    from diffblocks import ModularPipelineBlocks, SequentialPipelineBlocks
    from diffblocks.modular_pipelines.errors import BlockExecutionError

    class Fails(ModularPipelineBlocks):
        inputs = [InputParam("boom")]

        def __call__(self, components, state):
            raise ValueError("it broke")

    class Choose(AutoPipelineBlocks):
        block_classes = [Fails, Plus]
        block_names = ["fails", "plus"]
        block_trigger_inputs = ["boom", None]

    pipe = SequentialPipelineBlocks.from_blocks_dict({"choose": Choose}).init_pipeline()
    with pytest.raises(BlockExecutionError) as caught:
        pipe(boom=1, x=1)
    assert (caught.value.path, caught.value.block_cls) == ("choose.fails", "Fails")
    assert str(caught.value).startswith("block 'choose.fails' (Fails) failed: ValueError: it broke")
