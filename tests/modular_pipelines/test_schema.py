import json

import torch

from diffblocks.modular_pipelines import InputParam, ModularPipelineBlocks


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
