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
    TwiceLoop,
)

from diffblocks.modular_pipelines import (
    InputParam,
    InsertableDict,
    ModularPipeline,
    ModularPipelineBlocks,
    OutputParam,
    PipelineState,
    SequentialPipelineBlocks,
)
from diffblocks.modular_pipelines.errors import MissingInputError


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


# --- loops: undeclared values on the shared block state, loop_intermediate_inputs ---------------------------

class SetsScaled(ModularPipelineBlocks):
    """Sets `scaled` on the shared block state without declaring it (as the quickstart's before_denoiser does)."""

    inputs = [InputParam("x", required=True)]

    def __call__(self, components, block_state, i):
        block_state.scaled = block_state.x * 10
        return components, block_state


class ReadsScaled(ModularPipelineBlocks):
    inputs = [InputParam("scaled", required=True, description="the scaled value")]
    intermediate_outputs = [OutputParam("x")]

    def __call__(self, components, block_state, i):
        block_state.x = block_state.scaled + i
        return components, block_state


def test_loop_sub_block_sees_a_value_an_earlier_sub_block_set_without_declaring_it():
    loop = TwiceLoop.from_blocks_dict({"scale": SetsScaled, "use": ReadsScaled})
    assert loop.init_pipeline()(x=1, output="x") == 101  # (1 * 10 + 0) * 10 + 1


def test_loop_sub_block_input_truly_missing_names_the_sub_block():
    loop = SequentialPipelineBlocks.from_blocks_dict({"loop": TwiceLoop.from_blocks_dict({"use": ReadsScaled})})
    with pytest.raises(MissingInputError) as err:
        loop.init_pipeline()()
    assert "block 'loop.use' (ReadsScaled)" in str(err.value)
    assert "'scaled' (the scaled value)" in str(err.value) and "no earlier sub-block of the loop set it" in str(err.value)


def test_loop_inputs_required_by_the_wrapper_are_demanded_up_front():
    class Steps(TwiceLoop):
        loop_inputs = [InputParam("num_steps", required=True)]

    loop = SequentialPipelineBlocks.from_blocks_dict({"loop": Steps.from_blocks_dict({"a": SetsScaled})})
    with pytest.raises(MissingInputError, match=r"block 'loop' \(Steps\) needs the required input 'num_steps'"):
        loop.init_pipeline()(x=1)


class IntermediateLoop(TwiceLoop):
    loop_inputs = [InputParam("num_steps", default=2)]

    @property
    def loop_intermediate_inputs(self):
        return [InputParam("offset", required=True, description="made by an earlier block")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        for i in range(block_state.num_steps):
            block_state.x = block_state.x + block_state.offset
            components, block_state = self.loop_step(components, block_state, i=i)
        self.set_block_state(state, block_state)
        return components, state


class AddOne(ModularPipelineBlocks):
    inputs = [InputParam("x", required=True)]
    intermediate_outputs = [OutputParam("x")]

    def __call__(self, components, block_state, i):
        block_state.x += 1
        return components, block_state


class MakeOffset(ModularPipelineBlocks):
    intermediate_outputs = [OutputParam("offset")]

    def __call__(self, components, state):
        state.set("offset", 100)
        return components, state


def test_loop_intermediate_inputs_are_read_from_the_state_like_loop_inputs():
    loop = IntermediateLoop.from_blocks_dict({"add": AddOne})
    assert [p.name for p in loop.loop_inputs] == ["num_steps", "offset"]
    assert loop.input_names == ["num_steps", "offset", "x"]
    blocks = SequentialPipelineBlocks.from_blocks_dict({"make": MakeOffset, "loop": loop})
    assert blocks.input_names == ["num_steps", "x"]  # made by an earlier block: not a pipeline input
    assert blocks.init_pipeline()(x=0, output="x") == 202
    with pytest.raises(MissingInputError, match="'offset' \\(made by an earlier block\\)"):
        loop.init_pipeline()(x=0)


def test_loop_intermediate_inputs_as_a_class_attribute_join_inherited_loop_inputs():
    class Child(IntermediateLoop):
        loop_intermediate_inputs = [InputParam("offset", required=True), InputParam("num_steps")]

    # loop_inputs' own declaration of a name wins
    assert [(p.name, p.default_value) for p in Child.from_blocks_dict({"add": AddOne}).loop_inputs] == [
        ("num_steps", 2), ("offset", None)]


# --- the quickstart's Differential Diffusion before_denoiser, as the document writes it ------------------


def quickstart_before_denoiser():
    class SDXLDiffDiffLoopBeforeDenoiser(ModularPipelineBlocks):
        @property
        def description(self) -> str:
            return (
                "Step within the denoising loop for differential diffusion that prepare the latent input for the denoiser"
            )

        @property
        def inputs(self):
            return [
                InputParam("latents", required=True, type_hint=torch.Tensor),
                InputParam("denoising_start"),
                InputParam("original_latents", type_hint=torch.Tensor),
                InputParam("diffdiff_masks", type_hint=torch.Tensor),
            ]

        def __call__(self, components, block_state, i, t):
            # Apply differential diffusion logic
            if i == 0 and block_state.denoising_start is None:
                block_state.latents = block_state.original_latents[0]
            else:
                block_state.mask = block_state.diffdiff_masks[i]
                block_state.latents = (block_state.original_latents[i] * block_state.mask
                                       + block_state.latents * (1 - block_state.mask))
            # ... rest of existing logic ... (StableDiffusionXLLoopBeforeDenoiser's, not declared as an output)
            block_state.scaled_latents = components.scheduler.scale_model_input(block_state.latents, t)
            return components, block_state

    return SDXLDiffDiffLoopBeforeDenoiser


def test_quickstart_differential_diffusion_loop_runs_as_written(sdxl_repo):
    import sys
    from pathlib import Path

    from PIL import Image
    from tiny_models import make_image

    from diffblocks.blocks.stable_diffusion_xl import (
        StableDiffusionXLDenoiseLoopWrapper,
        StableDiffusionXLLoopAfterDenoiser,
        StableDiffusionXLLoopDenoiser,
    )

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from differential_diffusion import DIFFDIFF_BLOCKS  # the same pipeline, with scaled_latents declared

    class SDXLDiffDiffDenoiseStep(StableDiffusionXLDenoiseLoopWrapper):
        block_classes = [quickstart_before_denoiser(), StableDiffusionXLLoopDenoiser, StableDiffusionXLLoopAfterDenoiser]
        block_names = ["before_denoiser", "denoiser", "after_denoiser"]

    quickstart = DIFFDIFF_BLOCKS.copy()
    quickstart["denoise"] = SDXLDiffDiffDenoiseStep
    outputs = []
    for preset in (quickstart, DIFFDIFF_BLOCKS):
        pipe = SequentialPipelineBlocks.from_blocks_dict(preset).init_pipeline(sdxl_repo)
        pipe.load_components()
        pipe.set_progress_bar_config(disable=True)
        outputs.append(pipe(prompt="a green pear", image=make_image(), diffdiff_map=Image.new("L", (32, 32), 128),
                            num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="latent",
                            output="latents"))
    assert torch.equal(outputs[0], outputs[1])
