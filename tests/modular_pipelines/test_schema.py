import enum
import json
import warnings
from typing import Annotated

import torch
from pydantic import Field

from diffblocks.modular_pipelines import InputParam, ModularPipelineBlocks
from diffblocks.modular_pipelines.checks import Finite


class Typed(ModularPipelineBlocks):
    description = "a block with every kind of input"
    inputs = [
        InputParam("prompt", type_hint=str | list[str], required=True, description="what to draw"),
        InputParam("num_inference_steps", type_hint=int, default=50, description="steps"),
        InputParam("latents", type_hint=torch.Tensor, description="start latents"),
        InputParam("image", type_hint="PIL.Image"),
        InputParam("eta"),
    ]


def test_input_schema_has_types_defaults_descriptions_and_required():
    schema = Typed().input_schema()
    json.dumps(schema)  # serialisable
    props = schema["properties"]
    assert schema["required"] == ["prompt"] and schema["description"] == "a block with every kind of input"
    assert props["num_inference_steps"]["default"] == 50 and props["num_inference_steps"]["description"] == "steps"
    assert {"type": "integer"} in props["num_inference_steps"]["anyOf"]
    assert props["prompt"]["anyOf"][0] == {"type": "string"}
    assert props["latents"]["x-python-type"] == "Tensor" and props["image"]["x-python-type"] == "PIL.Image"


def test_preset_schema_covers_every_pipeline_input():
    from diffblocks import SequentialPipelineBlocks
    from diffblocks.presets.stable_diffusion_xl import AUTO_BLOCKS

    blocks = SequentialPipelineBlocks.from_blocks_dict(AUTO_BLOCKS)
    schema = blocks.input_schema()
    assert set(schema["properties"]) == set(blocks.input_names)
    assert schema["properties"]["prompt"]["description"]


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


def fresh_block():
    """Made per test, with the schema caches emptied: a param's schema is cached per distinct declaration, so a
    test of how it is built needs declarations no earlier schema has seen."""
    from diffblocks.modular_pipelines import schema

    schema._PROPERTIES.clear()
    schema._DESCRIBABLE.clear()

    class Fresh(ModularPipelineBlocks):
        description = "fresh"
        inputs = [
            InputParam("prompt", type_hint=str, required=True, description="what to draw"),
            InputParam("num_inference_steps", type_hint=Annotated[int, Field(gt=0)], default=50),
            InputParam("guidance_scale", type_hint=float),
            InputParam("latents", type_hint=Annotated[torch.Tensor, Finite]),
            InputParam("mask", type_hint=Annotated[torch.Tensor, "a note, not a constraint"]),
            InputParam("noise", type_hint=torch.Tensor, default=torch.zeros(1)),  # not JSON: shown as null
            InputParam("sizes", type_hint=list[int], default=[torch.zeros(1)]),  # not JSON inside: left out
            InputParam("image", type_hint="PIL.Image"),
            InputParam("eta"),
            InputParam("mode", type_hint=Mode, default="fast"),
        ]

    return Fresh()


FRESH_SCHEMA = {
    "properties": {
        "prompt": {"description": "what to draw", "title": "Prompt", "type": "string"},
        "num_inference_steps": {"anyOf": [{"exclusiveMinimum": 0, "type": "integer"}, {"type": "null"}],
                                "default": 50, "title": "Num Inference Steps"},
        "guidance_scale": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None, "title": "Guidance Scale"},
        "latents": {"default": None, "title": "Latents", "x-constraints": ["finite"], "x-python-type": "Tensor"},
        "mask": {"default": None, "title": "Mask", "x-python-type": "Tensor"},
        "noise": {"default": None, "title": "Noise", "x-python-type": "Tensor"},
        "sizes": {"anyOf": [{"items": {"type": "integer"}, "type": "array"}, {"type": "null"}], "title": "Sizes"},
        "image": {"default": None, "title": "Image", "x-python-type": "PIL.Image"},
        "eta": {"default": None, "title": "Eta"},
        "mode": {"anyOf": [{"$ref": "#/$defs/Mode"}, {"type": "null"}], "default": "fast", "title": "Mode"},
    },
    "title": "FreshInputs",
    "type": "object",
    "required": ["prompt"],
    "$defs": {"Mode": {"enum": ["fast", "slow"], "title": "Mode", "type": "string"}},
    "description": "fresh",
}


def test_each_kind_of_input_gets_its_exact_schema_fragment_and_the_cached_one_is_the_same():
    block = fresh_block()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic's warning about a default it cannot show stays inside
        first = block.input_schema()
        again = block.input_schema()  # every param's schema now comes from the cache
    assert first == FRESH_SCHEMA and again == FRESH_SCHEMA
    assert list(first["properties"]) == [p.name for p in block.inputs]


def test_blocks_declaring_the_same_input_share_its_schema_but_not_the_dicts():
    class A(ModularPipelineBlocks):
        inputs = [InputParam("steps", type_hint=int, default=4, description="how many")]

    class B(ModularPipelineBlocks):
        inputs = [InputParam("steps", type_hint=int, default=4, description="how many"),
                  InputParam("other", type_hint=int, default=5, description="how many")]

    class C(ModularPipelineBlocks):
        inputs = [InputParam("steps", type_hint=int, default=8, description="how many")]

    a = A().input_schema()
    a["properties"]["steps"]["default"] = 99  # a caller's change stays in its own copy
    a["properties"]["steps"]["anyOf"].append({"type": "string"})
    b, c = B().input_schema(), C().input_schema()
    assert b["properties"]["steps"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": 4,
                                        "description": "how many", "title": "Steps"}
    assert b["properties"]["other"]["default"] == 5 and b["properties"]["other"]["title"] == "Other"
    assert c["properties"]["steps"]["default"] == 8  # another default is another declaration
