"""Constraints declared in an input's type hint: checked at run time, shown in reprs, docs and the JSON schema."""

import typing
from typing import Annotated, Callable, ClassVar, Literal

import numpy as np
import PIL.Image
import pytest
import torch
from pydantic import Field

from diffblocks.modular_pipelines import InputParam, ModularPipelineBlocks, OutputParam, PipelineState
from diffblocks.modular_pipelines.checks import Finite, check_input_type, value_check
from diffblocks.modular_pipelines.errors import InputTypeError, InputValueError
from diffblocks.modular_pipelines.params import type_name

STEPS = Annotated[int, Field(gt=0)]
STRENGTH = Annotated[float, Field(ge=0, le=1)]
PROMPTS = str | Annotated[list[str], Field(min_length=1)]
FINITE_TENSOR = Annotated[torch.Tensor, Finite]


class Constrained(ModularPipelineBlocks):
    description = "a block with constrained inputs"
    inputs = [
        InputParam("num_inference_steps", type_hint=STEPS, default=50, description="steps"),
        InputParam("strength", type_hint=STRENGTH, default=0.8),
        InputParam("prompt", type_hint=PROMPTS),
        InputParam("latents", type_hint=FINITE_TENSOR),
        InputParam("eta", type_hint=Annotated[float, Finite], default=0.0),
    ]
    intermediate_outputs = [OutputParam("ran", type_hint=bool)]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.ran = True
        self.set_block_state(state, block_state)
        return components, state


def check(hint, value):
    check_input_type(InputParam("x", type_hint=hint), value, "denoise.step", "Blk")


@pytest.mark.parametrize("hint, value, expected", [
    (STEPS, 0, "must be > 0, got 0"),
    (STEPS, -5, "must be > 0, got -5"),
    (STRENGTH, 1.5, "must be in [0, 1], got 1.5"),
    (STRENGTH, float("nan"), "must be in [0, 1], got nan"),
    (STRENGTH, float("inf"), "must be in [0, 1], got inf"),
    (PROMPTS, [], "must be non-empty, got []"),
    (Annotated[float, Finite], float("nan"), "must be finite, got nan"),
    (FINITE_TENSOR, torch.tensor([1.0, float("nan"), float("inf")]), "must be finite (it holds 1 NaN and 1 inf), got Tensor"),
    (FINITE_TENSOR, torch.tensor([1.0, float("nan")]), "must be finite (it holds 1 NaN), got Tensor"),  # just one
    (Annotated[np.ndarray, Finite], np.array([np.inf]), "must be finite (it holds 1 inf), got ndarray"),
    (Annotated[list, Finite], [torch.ones(2), torch.full((2,), float("nan"))], "must be finite (it holds 2 NaN) (item 1)"),
    (STRENGTH | list[STRENGTH], [0.5, 2.0], "input 'x[1]' must be in [0, 1], got [0.5, 2.0]"),
    (Annotated[float, Field(ge=0), Finite], -1.0, "must be >= 0 and finite, got -1.0"),  # every declared rule
    (Annotated[list[int], Field(max_length=2)], [1, 2, 3], "at most 2 items"),  # none to phrase: pydantic's words
])
def test_a_refused_constraint_names_block_input_rule_and_value(hint, value, expected):
    with pytest.raises(InputValueError) as info:
        check(hint, value)
    message = str(info.value)
    assert message.startswith("block 'denoise.step' (Blk): input 'x")
    assert expected in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, InputTypeError)


@pytest.mark.parametrize("hint, value", [
    (STEPS, 1), (STRENGTH, 0), (STRENGTH, 1), (STRENGTH, 0.5), (PROMPTS, ""), (PROMPTS, ["a"]),
    (FINITE_TENSOR, torch.ones(2)), (FINITE_TENSOR, torch.ones(2, dtype=torch.long)),
    (Annotated[float, Finite], 3),  # an int for a float, as strict pydantic allows
])
def test_values_inside_the_constraints_pass(hint, value):
    check(hint, value)


@pytest.mark.parametrize("hint, value, expected", [
    (STEPS, "5", "expects int > 0, got '5'"),
    (STEPS, True, "expects int > 0, got True"),
    (STEPS, 2.0, "expects int > 0, got 2.0"),
    (PROMPTS, 3, "expects str | list[str], non-empty, got 3"),
    (FINITE_TENSOR, np.ones(2), "expects Tensor, finite, got ndarray"),
])
def test_a_value_of_another_type_stays_a_type_error(hint, value, expected):
    with pytest.raises(InputTypeError) as info:
        check(hint, value)
    assert not isinstance(info.value, InputValueError) and expected in str(info.value)


def test_value_check_marker_uses_its_message_and_label():
    even = value_check("even", lambda v: None if v % 2 == 0 else "must be even")
    hint = Annotated[int, even]
    check(hint, 4)
    with pytest.raises(InputValueError, match=r"input 'x' must be even, got 3"):
        check(hint, 3)
    assert type_name(hint) == "int, even"


@pytest.mark.parametrize("hint, name", [
    (STEPS, "int > 0"),
    (STRENGTH, "float in [0, 1]"),
    (Annotated[float, Field(gt=0, le=1)], "float in (0, 1]"),
    (Annotated[float, Field(ge=0, lt=1)], "float in [0, 1)"),
    (Annotated[int, Field(ge=0)], "int >= 0"),
    (Annotated[float, Field(ge=0, allow_inf_nan=False)], "float >= 0, finite"),
    (PROMPTS, "str | list[str], non-empty"),
    (FINITE_TENSOR, "Tensor, finite"),
    (torch.Tensor | list[int], "Tensor | list[int]"),
    (torch.Generator | list[torch.Generator], "Generator | list[Generator]"),
    (None, "Any"), ("PIL.Image", "PIL.Image"), (type(None), "None"), (int | None, "int | None"),
    (tuple[int, ...], "tuple[int, ...]"), (dict[str, list[float]], "dict[str, list[float]]"),
    (Literal["pil", "pt"], "Literal['pil', 'pt']"), (list, "list"),
    (Callable[[int], str], "Callable[[int], str]"),  # collections.abc.Callable is a class origin
    (Annotated[float, Field(lt=1)], "float < 1"), (Annotated[int, Field(le=10)], "int <= 10"),  # upper bound only
    # not a type and no class origin with arguments: the repr, without the module prefixes
    (typing.List, "List"), (ClassVar[torch.Tensor], "ClassVar[Tensor]"), (ClassVar[PIL.Image.Image], "ClassVar[Image]"),
])
def test_type_name_renders_constraints(hint, name):
    assert type_name(hint) == name


def test_repr_and_doc_show_the_constraints():
    text = repr(Constrained())
    assert "num_inference_steps (int > 0, default=50)" in text
    assert "strength (float in [0, 1], default=0.8)" in text and "latents (Tensor, finite, optional)" in text
    assert "    num_inference_steps (int > 0, default=50)" in Constrained().doc.splitlines()


def test_json_schema_shows_the_constraints():
    props = Constrained().input_schema()["properties"]
    assert {"type": "integer", "exclusiveMinimum": 0} in props["num_inference_steps"]["anyOf"]
    assert {"type": "number", "minimum": 0, "maximum": 1} in props["strength"]["anyOf"]
    assert {"type": "array", "items": {"type": "string"}, "minItems": 1} in props["prompt"]["anyOf"]
    assert props["latents"]["x-python-type"] == "Tensor" and props["latents"]["x-constraints"] == ["finite"]


def test_json_schema_keeps_union_members_pydantic_cannot_show():
    class Mixed(ModularPipelineBlocks):
        inputs = [InputParam("timesteps", type_hint=torch.Tensor | list[int])]

    prop = Mixed().input_schema()["properties"]["timesteps"]
    assert prop["x-python-type"] == "Tensor | list[int]" and "anyOf" not in prop  # not "a list of ints" only


def test_the_block_refuses_before_its_body_runs():
    state = PipelineState()
    state.set("num_inference_steps", 0)
    with pytest.raises(InputValueError, match="input 'num_inference_steps' must be > 0, got 0"):
        Constrained()(None, state)
    assert state.get("ran") is None
    state.set("num_inference_steps", 3)
    Constrained()(None, state)
    assert state.get("ran") is True


def test_given_values_are_all_checked_whatever_comes_before_them_and_pass_if_any_declaration_takes_them():
    from toy_blocks import make_block

    from diffblocks import AutoPipelineBlocks, SequentialPipelineBlocks

    Ints = make_block("Ints", inputs=[InputParam("size", type_hint=int), InputParam("steps", type_hint=STEPS)])
    Strs = make_block("Strs", inputs=[InputParam("size", type_hint=str)])
    pipe = SequentialPipelineBlocks.from_blocks_dict({
        "pick": AutoPipelineBlocks.from_blocks_dict({"ints": Ints, "strs": Strs}, trigger_inputs=["flag", None]),
    }).init_pipeline()
    with pytest.raises(InputValueError, match="steps"):
        pipe(flag=None, size=1, steps=0)  # after a None and after an accepted value
    pipe(size="big")  # refused by Ints, taken by Strs: not refused
