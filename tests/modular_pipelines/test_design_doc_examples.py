"""The examples of the design document's core sections, run as written (diffusers read as diffblocks)."""

import pytest
import torch
from toy_blocks import (
    AutoImageBlocks,
    ImageEncoderBlock,
    ImageToImageBlock,
    InputBlock,
    LoopBlock,
    LoopWrapper,
)

from diffblocks.modular_pipelines import (
    InsertableDict,
    ModularPipeline,
    PipelineState,
    SequentialPipelineBlocks,
)


def test_sequential_example_connects_input_and_image_encoder():
    blocks_dict = InsertableDict()
    blocks_dict["input"] = InputBlock()
    blocks_dict["image_encoder"] = ImageEncoderBlock()
    blocks = SequentialPipelineBlocks.from_blocks_dict(blocks_dict)

    # batch_size is produced by "input", so it is not an input of the whole
    assert blocks.input_names == ["prompt", "num_images_per_prompt", "image"]
    assert blocks.intermediate_output_names == ["batch_size", "image_latents"]

    pipe = blocks.init_pipeline()
    state = pipe(prompt=["a", "b"], num_images_per_prompt=3, image="img")
    # the image encoder doubled batch_size and replaced the image: both changes reach the pipeline state
    assert state.get("batch_size") == 12
    assert isinstance(state.get("image"), torch.Tensor)
    assert state.get("image_latents").shape == (1, 4, 64, 64)
    assert "Sub-Blocks" in repr(blocks) and "image_encoder (ImageEncoderBlock)" in repr(blocks)
    assert "num_images_per_prompt" in blocks.doc


def test_loop_example_from_blocks_dict_with_class_and_instance():
    loop = LoopWrapper.from_blocks_dict({"block1": LoopBlock(), "block2": LoopBlock})
    pipe = loop.init_pipeline()
    assert pipe(num_steps=3, x=0, output="x") == 6
    assert loop.input_names == ["num_steps", "x"]


def test_loop_built_from_a_class_only_runs():
    # a well-known implementation fails to instantiate classes given to from_blocks_dict
    loop = LoopWrapper.from_blocks_dict({"block1": LoopBlock})
    assert isinstance(loop.sub_blocks["block1"], LoopBlock)
    assert loop.init_pipeline()(num_steps=4, x=1, output="x") == 5


@pytest.mark.parametrize(
    "given, branch",
    [({"prompt": "p", "mask": 1, "image": 1}, "inpaint"), ({"prompt": "p", "image": 1}, "img2img"), ({"prompt": "p"}, "text2img")],
)
def test_auto_example_selects_by_trigger(given, branch):
    auto_blocks = AutoImageBlocks()
    state = auto_blocks.init_pipeline()(**given)
    assert state.get("ran") == branch


def test_auto_get_execution_blocks_positional_and_keyword():
    auto_blocks = AutoImageBlocks()
    assert type(auto_blocks.get_execution_blocks("mask")).__name__ == "InpaintBlock"
    assert isinstance(auto_blocks.get_execution_blocks("image"), ImageToImageBlock)
    assert isinstance(auto_blocks.get_execution_blocks(image=object()), ImageToImageBlock)
    assert type(auto_blocks.get_execution_blocks(image=None)).__name__ == "TextToImageBlock"
    assert "inpaint workflow is run when `mask` is provided" in auto_blocks.doc


def test_states_example_repr_shows_tensors_briefly():
    state = PipelineState()
    state.set("prompt", "a cat")
    state.set("prompt_embeds", torch.zeros(1, 1, 1, 1))
    state.set("negative_prompt_embeds", None)
    text = repr(state)
    assert "'prompt': 'a cat'" in text
    assert "Tensor(dtype=torch.float32, shape=(1, 1, 1, 1))" in text
    assert state.get(["prompt", "negative_prompt_embeds"]) == {"prompt": "a cat", "negative_prompt_embeds": None}


def test_adding_blocks_section_insert_pop_swap():
    presets = InsertableDict([("input", InputBlock), ("image_encoder", ImageEncoderBlock)])
    presets.insert("loop", LoopWrapper, 0)
    assert list(presets) == ["loop", "input", "image_encoder"]
    presets.pop("loop")
    presets["image_encoder"] = InputBlock
    assert presets["image_encoder"] is InputBlock

    blocks = SequentialPipelineBlocks.from_blocks_dict({"input": InputBlock, "image_encoder": ImageEncoderBlock})
    popped = blocks.sub_blocks.pop("image_encoder")
    assert isinstance(popped, ImageEncoderBlock) and list(blocks.sub_blocks) == ["input"]
    blocks.sub_blocks.insert("image_encoder", popped, 0)
    assert list(blocks.sub_blocks) == ["image_encoder", "input"]
    blocks.sub_blocks["image_encoder"] = ImageEncoderBlock  # a class is instantiated
    assert isinstance(blocks.sub_blocks["image_encoder"], ImageEncoderBlock)
    # the edit is live: batch_size is now a pipeline input because its producer runs later
    assert "batch_size" in blocks.input_names


def test_modular_pipeline_output_modes():
    blocks = SequentialPipelineBlocks.from_blocks_dict({"input": InputBlock})
    pipe = blocks.init_pipeline()
    assert isinstance(pipe, ModularPipeline)
    assert isinstance(pipe(prompt=["a"], num_images_per_prompt=1), PipelineState)
    assert pipe(prompt=["a"], num_images_per_prompt=2, output="batch_size") == 2
    assert pipe(prompt=["a"], num_images_per_prompt=2, output=["batch_size", "prompt"]) == {"batch_size": 2, "prompt": ["a"]}
