"""Toy blocks shared by the core tests: the design document's examples, written as they appear there."""

import torch

from diffblocks.modular_pipelines import (
    AutoPipelineBlocks,
    InputParam,
    LoopSequentialPipelineBlocks,
    ModularPipelineBlocks,
    OutputParam,
)


class InputBlock(ModularPipelineBlocks):
    @property
    def inputs(self):
        return [
            InputParam(name="prompt", type_hint=list, description="list of text prompts"),
            InputParam(name="num_images_per_prompt", type_hint=int, description="number of images per prompt"),
        ]

    @property
    def intermediate_outputs(self):
        return [OutputParam(name="batch_size", description="calculated batch size")]

    @property
    def description(self):
        return "A block that determines batch_size based on the number of prompts and num_images_per_prompt argument."

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        batch_size = len(block_state.prompt)
        block_state.batch_size = batch_size * block_state.num_images_per_prompt
        self.set_block_state(state, block_state)
        return components, state


class ImageEncoderBlock(ModularPipelineBlocks):
    @property
    def inputs(self):
        return [
            InputParam(name="image", type_hint="PIL.Image", description="raw input image to process"),
            InputParam(name="batch_size", type_hint=int),
        ]

    @property
    def intermediate_outputs(self):
        return [OutputParam(name="image_latents", description="latents representing the image")]

    @property
    def description(self):
        return "Encode raw image into its latent presentation"

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.image = torch.randn(1, 3, 512, 512)
        block_state.batch_size = block_state.batch_size * 2
        block_state.image_latents = torch.randn(1, 4, 64, 64)
        self.set_block_state(state, block_state)
        return components, state


class LoopWrapper(LoopSequentialPipelineBlocks):
    model_name = "test"

    @property
    def description(self):
        return "I'm a loop!!"

    @property
    def loop_inputs(self):
        return [InputParam(name="num_steps")]

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        for i in range(block_state.num_steps):
            components, block_state = self.loop_step(components, block_state, i=i)
        self.set_block_state(state, block_state)
        return components, state


class LoopBlock(ModularPipelineBlocks):
    model_name = "test"

    @property
    def inputs(self):
        return [InputParam(name="x")]

    @property
    def intermediate_outputs(self):
        return [OutputParam(name="x")]

    @property
    def description(self):
        return "I'm a block used inside the `LoopWrapper` class"

    def __call__(self, components, block_state, i: int):
        block_state.x += 1
        return components, block_state


def _workflow_block(name, input_names, message):
    def inputs(self):
        return [InputParam(name=n) for n in input_names]

    def call(self, components, state):
        block_state = self.get_block_state(state)
        state.set("ran", message)
        self.set_block_state(state, block_state)
        return components, state

    return type(name, (ModularPipelineBlocks,), {
        "model_name": name.lower(),
        "inputs": property(inputs),
        "intermediate_outputs": property(lambda self: []),
        "description": property(lambda self: f"I am a {message} workflow!"),
        "__call__": call,
    })


TextToImageBlock = _workflow_block("TextToImageBlock", ["prompt"], "text2img")
ImageToImageBlock = _workflow_block("ImageToImageBlock", ["prompt", "image"], "img2img")
InpaintBlock = _workflow_block("InpaintBlock", ["prompt", "image", "mask"], "inpaint")


class AutoImageBlocks(AutoPipelineBlocks):
    block_classes = [InpaintBlock, ImageToImageBlock, TextToImageBlock]
    block_names = ["inpaint", "img2img", "text2img"]
    block_trigger_inputs = ["mask", "image", None]

    def description(self):
        return (
            "Pipeline generates images given different types of conditions!\n"
            + "This is an auto pipeline block that works for text2img, img2img and inpainting tasks.\n"
            + " - inpaint workflow is run when `mask` is provided.\n"
            + " - img2img workflow is run when `image` is provided (but only when `mask` is not provided).\n"
            + " - text2img workflow is run when neither `image` nor `mask` is provided.\n"
        )


def make_block(name, inputs=(), outputs=(), fn=None):
    """A leaf block class: ``inputs`` are InputParams or names, ``fn(block_state)`` computes outputs."""
    params = [p if isinstance(p, InputParam) else InputParam(p) for p in inputs]
    outs = [o if isinstance(o, OutputParam) else OutputParam(o) for o in outputs]

    def call(self, components, state):
        block_state = self.get_block_state(state)
        if fn is not None:
            fn(block_state)
        self.set_block_state(state, block_state)
        return components, state

    return type(name, (ModularPipelineBlocks,), {
        "inputs": params, "intermediate_outputs": outs, "__call__": call, "description": f"toy {name}",
    })


def make_step(name, requires=(), optional=(), outputs=(), defaults=None):
    """A leaf block class that requires ``requires``, reads ``optional`` (and ``defaults``: name -> default)
    and sets each output to the string ``"<name>.<output>"``."""
    params = [InputParam(n, required=True) for n in requires] + [InputParam(n) for n in optional]
    params += [InputParam(n, default=v) for n, v in (defaults or {}).items()]

    def fn(block_state):
        for out in outputs:
            setattr(block_state, out, f"{name}.{out}")

    return make_block(name, inputs=params, outputs=outputs, fn=fn)


def make_loop_step(name, requires=(), outputs=()):
    """A loop sub-block class: refuses a missing required value as ``get_block_state`` would, sets outputs."""
    from diffblocks.modular_pipelines.errors import MissingInputError

    def call(self, components, block_state, **kwargs):
        for n in requires:
            if getattr(block_state, n, None) is None:
                raise MissingInputError.required(n, None, name)
        for out in outputs:
            setattr(block_state, out, f"{name}.{out}")
        return components, block_state

    return type(name, (ModularPipelineBlocks,), {
        "inputs": [InputParam(n, required=True) for n in requires],
        "intermediate_outputs": [OutputParam(o) for o in outputs],
        "__call__": call, "description": f"toy loop step {name}",
    })


class TwiceLoop(LoopSequentialPipelineBlocks):
    """Runs its sub-blocks twice over one block state."""

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        for i in range(2):
            components, block_state = self.loop_step(components, block_state, i=i)
        self.set_block_state(state, block_state)
        return components, state
