"""Aggregation rules of composite blocks (documented in modular_pipelines/composite.py)."""

import pytest
from toy_blocks import make_block

from diffblocks.modular_pipelines import (
    AutoPipelineBlocks,
    InputParam,
    OutputParam,
    SequentialPipelineBlocks,
)

Producer = make_block("Producer", inputs=["seed"], outputs=["latents"], fn=lambda s: setattr(s, "latents", s.seed * 2))
Consumer = make_block("Consumer", inputs=[InputParam("latents", required=True)], outputs=["out"],
                      fn=lambda s: setattr(s, "out", s.latents + 1))


def test_required_input_produced_earlier_is_not_a_pipeline_input():
    blocks = SequentialPipelineBlocks.from_blocks_dict({"make": Producer, "use": Consumer})
    assert "latents" not in blocks.input_names
    assert blocks.required_input_names == []
    assert blocks.init_pipeline()(seed=2, output="out") == 5


def test_required_input_produced_later_stays_an_input():
    blocks = SequentialPipelineBlocks.from_blocks_dict({"use": Consumer, "make": Producer})
    assert blocks.required_input_names == ["latents"]


def test_first_declaration_wins():
    First = make_block("First", inputs=[InputParam("x", default=1, description="first")])
    Second = make_block("Second", inputs=[InputParam("x", default=2, description="second")])
    blocks = SequentialPipelineBlocks.from_blocks_dict({"a": First, "b": Second})
    [param] = blocks.inputs
    assert param.default == 1 and param.description == "first"


@pytest.mark.parametrize("required_a, required_b, expected", [(True, True, True), (True, False, False), (False, False, False)])
def test_auto_input_required_only_when_every_branch_requires_it(required_a, required_b, expected):
    A = make_block("A", inputs=[InputParam("x", required=required_a)])
    B = make_block("B", inputs=[InputParam("x", required=required_b)])
    auto = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B}, trigger_inputs=["t", None])
    param = next(p for p in auto.inputs if p.name == "x")
    assert param.required is expected
    assert "t" in auto.input_names  # the trigger is an input too


def test_auto_input_missing_from_one_branch_is_optional():
    A = make_block("A", inputs=[InputParam("x", required=True)])
    B = make_block("B", inputs=[])
    auto = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B}, trigger_inputs=["t", None])
    assert next(p for p in auto.inputs if p.name == "x").required is False


def test_properties_never_mutate_param_objects():
    shared = InputParam("x", required=True)
    A = make_block("A", inputs=[shared])
    B = make_block("B", inputs=[])
    auto = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B}, trigger_inputs=["t", None])
    auto.inputs
    auto.inputs
    assert shared.required is True
    with pytest.raises(AttributeError):
        shared.required = False


def test_sub_block_named_like_its_input_keeps_its_outputs():
    # a well-known implementation loses the outputs of a sub-block whose name equals one of its inputs
    Latents = make_block("Latents", inputs=["latents"], outputs=["latents", "extra"],
                         fn=lambda s: (setattr(s, "latents", (s.latents or 0) + 10), setattr(s, "extra", "yes")))
    blocks = SequentialPipelineBlocks.from_blocks_dict({"latents": Latents, "use": Consumer})
    assert blocks.intermediate_output_names == ["latents", "extra", "out"]
    assert blocks.init_pipeline()(latents=1, output=["latents", "extra", "out"]) == {"latents": 11, "extra": "yes", "out": 12}


def test_nested_auto_inside_sequential_resolves_with_get_execution_blocks():
    Text = make_block("Text", inputs=["prompt"], outputs=["embeds"])
    Img = make_block("Img", inputs=["image"], outputs=["image_latents"])
    Plain = make_block("Plain", inputs=[], outputs=["latents"])
    FromImage = make_block("FromImage", inputs=[InputParam("image_latents", required=True)], outputs=["latents"])
    encoder = AutoPipelineBlocks.from_blocks_dict({"img": Img}, trigger_inputs=["image"])
    latents = AutoPipelineBlocks.from_blocks_dict({"from_image": FromImage, "plain": Plain},
                                                  trigger_inputs=["image_latents", None])
    blocks = SequentialPipelineBlocks.from_blocks_dict({"text": Text, "encoder": encoder, "latents": latents})

    with_image = blocks.get_execution_blocks("image")
    assert [type(b).__name__ for b in with_image.sub_blocks.values()] == ["Text", "Img", "FromImage"]
    without = blocks.get_execution_blocks()
    assert [type(b).__name__ for b in without.sub_blocks.values()] == ["Text", "Plain"]
    assert list(without.sub_blocks) == ["text", "latents"]


def test_outputs_and_components_are_unions():
    A = make_block("A", outputs=[OutputParam("x", description="from a")])
    B = make_block("B", outputs=[OutputParam("x", description="from b"), OutputParam("y")])
    blocks = SequentialPipelineBlocks.from_blocks_dict({"a": A, "b": B})
    assert [(o.name, o.description) for o in blocks.intermediate_outputs] == [("x", "from a"), ("y", "")]
