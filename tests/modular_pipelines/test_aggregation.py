"""Aggregation rules of composite blocks (documented in modular_pipelines/composite.py)."""

import pytest
from toy_blocks import make_block

from diffblocks.modular_pipelines import (
    AutoPipelineBlocks,
    InputParam,
    OutputParam,
    SequentialPipelineBlocks,
)
from diffblocks.modular_pipelines.composite import variants

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


# --- which declaration applies depends on the triggers given -------------------------------------------------


def test_auto_without_default_branch_requires_nothing():
    # the whole block is skipped when no trigger is given, so no input is required of it
    A = make_block("A", inputs=[InputParam("image", required=True), InputParam("x", required=True)])
    B = make_block("B", inputs=[InputParam("image", required=True), InputParam("x", required=True)])
    auto = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B}, trigger_inputs=["mask", "image"])
    assert auto.required_input_names == []
    with_default = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B}, trigger_inputs=["mask", None])
    assert with_default.required_input_names == ["image", "x"]


def test_auto_branches_with_different_defaults_claim_none():
    A = make_block("A", inputs=[InputParam("strength", default=1.0)])
    B = make_block("B", inputs=[InputParam("strength", default=0.8)])
    C = make_block("C", inputs=[])
    auto = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B, "c": C}, trigger_inputs=["mask", "image", None])
    [param] = [p for p in auto.inputs if p.name == "strength"]
    assert not param.has_default and not param.required
    assert [(dict(v.when), v.default) for v in variants(param)] == [
        ({"mask": True}, 1.0), ({"mask": False, "image": True}, 0.8)]
    # the same default in every branch that reads it stays the default
    same = AutoPipelineBlocks.from_blocks_dict({"a": A, "c": C}, trigger_inputs=["mask", None])
    assert next(p for p in same.inputs if p.name == "strength").default == 1.0


def test_sequence_of_autos_keeps_the_declaration_that_applies_first():
    # as in the presets: the image encoder reads strength only for inpainting, set_timesteps for both workflows
    Encode = make_block("Encode", inputs=[InputParam("strength", default=1.0)])
    Plain = make_block("Plain", inputs=[])
    Img2Img = make_block("Img2Img", inputs=[InputParam("strength", default=0.3)])
    encoder = AutoPipelineBlocks.from_blocks_dict({"inpaint": Encode, "img2img": Plain}, trigger_inputs=["mask", "image"])
    timesteps = AutoPipelineBlocks.from_blocks_dict({"inpaint": Encode, "img2img": Img2Img, "text": Plain},
                                                    trigger_inputs=["mask", "image", None])
    blocks = SequentialPipelineBlocks.from_blocks_dict({"encoder": encoder, "timesteps": timesteps})
    [param] = [p for p in blocks.inputs if p.name == "strength"]
    assert not param.has_default
    assert [v.default for v in variants(param)] == [1.0, 0.3]


def test_plain_declaration_after_a_conditional_one_applies_elsewhere():
    Reads = make_block("Reads", inputs=[InputParam("x", required=True)])
    Needs = make_block("Needs", inputs=[InputParam("x", required=True)])
    Skip = make_block("Skip", inputs=[])
    auto = AutoPipelineBlocks.from_blocks_dict({"t": Reads, "other": Skip}, trigger_inputs=["t", None])
    blocks = SequentialPipelineBlocks.from_blocks_dict({"auto": auto, "needs": Needs})
    assert blocks.required_input_names == ["x"]  # required on both ways: by 'auto.t' or by 'needs'
    Optional = make_block("Optional", inputs=[InputParam("x")])
    loose = SequentialPipelineBlocks.from_blocks_dict({"auto": auto, "opt": Optional})
    assert loose.required_input_names == []


def test_branch_whose_trigger_an_earlier_branch_has_never_applies():
    A = make_block("A", inputs=[InputParam("x", default=1)])
    B = make_block("B", inputs=[InputParam("x", default=2)])
    auto = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B}, trigger_inputs=["t", "t"])
    assert [v.default for v in variants(next(p for p in auto.inputs if p.name == "x"))] == [1]


def test_nested_auto_conditions_combine():
    Inner = make_block("Inner", inputs=[InputParam("x", default=5)])
    inner = AutoPipelineBlocks.from_blocks_dict({"inner": Inner}, trigger_inputs=["b"])
    outer = AutoPipelineBlocks.from_blocks_dict({"seq": SequentialPipelineBlocks.from_blocks_dict({"i": inner})},
                                                trigger_inputs=["a"])
    [param] = [p for p in outer.inputs if p.name == "x"]
    assert [dict(v.when) for v in variants(param)] == [{"a": True, "b": True}]
    assert param.default == 5 and not param.required


def test_branches_with_equal_defaults_that_are_not_the_same_object_keep_the_default():
    A = make_block("A", inputs=[InputParam("sizes", default=[512, 512])])
    B = make_block("B", inputs=[InputParam("sizes", default=[512, 512])])  # equal, another list
    auto = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B}, trigger_inputs=["mask", None])
    [param] = [p for p in auto.inputs if p.name == "sizes"]
    assert param.default == [512, 512] and param.metadata is None  # a plain param: no per-workflow variants


def test_branches_with_tensor_defaults_claim_none_and_a_param_keeps_its_own_metadata():
    import torch

    A = make_block("A", inputs=[InputParam("noise", default=torch.zeros(2), metadata={"widget": "tensor"})])
    B = make_block("B", inputs=[InputParam("noise", default=torch.ones(2))])
    auto = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B}, trigger_inputs=["mask", None])
    [param] = [p for p in auto.inputs if p.name == "noise"]
    assert not param.has_default and len(variants(param)) == 2  # tensors: only the same object is the same
    assert param.metadata["widget"] == "tensor"


@pytest.mark.parametrize("declared", [{"required": True}, {"default": 2}])
def test_a_conditional_declaration_completed_by_a_later_plain_one_becomes_a_plain_param(declared):
    Reads = make_block("Reads", inputs=[InputParam("x", metadata={"widget": "slider"}, **declared)])
    Later = make_block("Later", inputs=[InputParam("x", **declared)])
    auto = AutoPipelineBlocks.from_blocks_dict({"t": Reads}, trigger_inputs=["t"])  # reads x only when t is given
    assert next(p for p in auto.inputs if p.name == "x").metadata  # per-workflow variants
    blocks = SequentialPipelineBlocks.from_blocks_dict({"auto": auto, "later": Later})
    [param] = [p for p in blocks.inputs if p.name == "x"]
    assert param == InputParam("x", **declared)  # the same in every workflow: no variants left
    assert dict(param.metadata) == {"widget": "slider"}  # its own metadata kept, the variants dropped
