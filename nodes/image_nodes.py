"""Image utilities: ``ScaleImage``, ``CropImage``, ``PadImage`` (with the mask for outpainting), ``InvertMask`` and
``ImageToMask``.

Each takes one PIL image or a list of them (what a preset's ``images`` output holds) and answers in the same
shape, one result per image. Widgets are declared as type hints with bounds; pydantic gives their JSON schemas and
checks their values, constants before the run and wired values when it starts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from PIL import Image, ImageOps
from pydantic import Field, TypeAdapter, ValidationError

from ..components.errors import InputTypeError, InputValueError
from .node_type import NodeInput, NodeOutput, NodeType, RunContext
from .values import artifact_ref

MAX_SIDE = 16384  # px: a bound for sizes and offsets, far above what any model paints
RESAMPLING = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
              "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
FILLS = {"black": 0, "gray": 128}  # "edge" repeats the border pixels instead
PIXELS = Annotated[int, Field(ge=0, le=MAX_SIDE)]


def _image(description: str) -> NodeInput:
    return NodeInput({"description": description}, required=True, socket="image")


class _ImageNode(NodeType):
    """An image utility: run :meth:`apply` on the image at input ``image_input``, or on each image of a list.

    ``widgets`` declares the other inputs, ``name: (type hint with its bounds, default, description)``: pydantic
    gives each its JSON schema and checks the values, constants before the run and wired ones when it starts."""

    category = "image"
    image_input = "image"
    image_description = "the image, or a list of images"
    widgets: dict[str, tuple[Any, Any, str]] = {}

    def __init__(self):
        self.inputs = {self.image_input: _image(self.image_description)}
        self._adapters = {}
        for name, (hint, default, description) in self.widgets.items():
            adapter = self._adapters[name] = TypeAdapter(hint)
            self.inputs[name] = NodeInput({**adapter.json_schema(), "default": default, "description": description})

    def _problem(self, name: str, value: Any) -> str | None:
        try:
            self._adapters[name].validate_python(value, strict=True)
        except ValidationError as err:
            return err.errors()[0]["msg"].replace("Input should be", "must be", 1)
        return None

    def check_value(self, name: str, value: Any) -> str | None:
        if self.inputs[name].socket is not None:
            return None if artifact_ref(value) else ("an image constant must be an artifact reference "
                                                     "{\"artifact\": sha256}")
        problem = self._problem(name, value)
        return None if problem is None else f"{problem}, got {value!r}"

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        options = {}
        for name, (_, default, _) in self.widgets.items():
            value = options[name] = default if values.get(name) is None else values[name]
            if (problem := self._problem(name, value)) is not None:  # a wired value: not checked before
                raise InputValueError.invalid(name, None, self.name, problem, value)
        image = values[self.image_input]
        if isinstance(image, Image.Image):
            return self.apply(image, **options)
        if isinstance(image, (list, tuple)) and image and all(isinstance(one, Image.Image) for one in image):
            each = [self.apply(one, **options) for one in image]
            return {name: each[0][name] if output.socket == "integer" else [outputs[name] for outputs in each]
                    for name, output in self.outputs.items()}  # a size: the first image's (a batch shares one)
        raise InputTypeError.wrong_type(self.image_input, None, self.name, "a PIL image or a list of them (set "
                                        "output_type 'pil' on the node that makes it)", image)

    def apply(self, image: Image.Image, **options: Any) -> dict[str, Image.Image]:
        raise NotImplementedError


class ScaleImage(_ImageNode):
    name = "ScaleImage"
    description = ("Resize an image by scale_by, or to a width and/or height (one alone keeps the aspect ratio), "
                   "rounded to a multiple of multiple_of; lanczos by default, the sharpest for upscaling a first pass "
                   "before a second image-to-image pass (hires fix).")

    widgets = {
        "scale_by": (Annotated[float, Field(gt=0, le=16)], 1.0,
                     "factor for both sides, used when width and height are both 0"),
        "width": (PIXELS, 0, "width in px (0: from height keeping the aspect ratio, or from scale_by)"),
        "height": (PIXELS, 0, "height in px (0: from width keeping the aspect ratio, or from scale_by)"),
        "method": (Literal[tuple(RESAMPLING)], "lanczos",
                   "resampling filter (lanczos: sharpest for upscaling a first pass before a second pass)"),
        "multiple_of": (Annotated[int, Field(ge=1, le=256)], 8,
                        "round each side to a multiple of this (8: what a VAE that scales by 8 takes; 1: exact)"),
    }
    outputs = {"image": NodeOutput("image")}

    def apply(self, image, scale_by, width, height, method, multiple_of):
        from ..components.image_processor import scaled_size

        size = scaled_size(image.size, scale_by, width, height, multiple_of)
        return {"image": image.resize(size, RESAMPLING[method])}


class CropImage(_ImageNode):
    name = "CropImage"
    description = ("Cut the box of width x height px at (x, y) out of an image (a size of 0: up to the image's "
                   "edge); a box reaching past the image is an error.")

    widgets = {
        "x": (PIXELS, 0, "left edge of the box, px from the image's left"),
        "y": (PIXELS, 0, "top edge of the box, px from the image's top"),
        "width": (PIXELS, 0, "box width in px (0: up to the image's right edge)"),
        "height": (PIXELS, 0, "box height in px (0: up to the image's bottom edge)"),
    }
    outputs = {"image": NodeOutput("image")}

    def apply(self, image, x, y, width, height):
        image_width, image_height = image.size
        size = f"the image is {image_width}x{image_height} px"
        for start, begin, length, extent, side in (("x", x, "width", width, image_width),
                                                   ("y", y, "height", height, image_height)):
            if begin >= side:
                raise InputValueError.invalid(start, None, self.name, f"must be below {side} ({size})", begin)
            if extent and begin + extent > side:
                raise InputValueError.invalid(length, None, self.name, f"reaches past the image: {start} + {length} "
                                              f"= {begin + extent} > {side} ({size})", extent)
        box = (x, y, x + (width or image_width - x), y + (height or image_height - y))
        return {"image": image.crop(box)}


class PadImage(_ImageNode):
    name = "PadImage"
    description = ("Add pixels around an image for outpainting, with the mask to paint them (white) and feather px "
                   "of the original blended in; 'edge' fill continues the border pixels, which outpainting fills best. "
                   "Wire width and height into the inpaint preset's: it paints at the model's size otherwise.")

    widgets = {
        **{side: (PIXELS, 0, f"px added on the {side}") for side in ("left", "top", "right", "bottom")},
        "feather": (PIXELS, 0, "px of the original's edge the mask ramps over, from white to black"),
        "fill": (Literal["edge", "black", "gray"], "edge",
                 "what the new pixels start as ('edge': the border pixels continued, which outpainting fills best)"),
    }
    outputs = {"image": NodeOutput("image"), "mask": NodeOutput("image"), "width": NodeOutput("integer"),
               "height": NodeOutput("integer")}

    def apply(self, image, left, top, right, bottom, feather, fill):
        if image.mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        pixels = np.asarray(image)
        pad = ((top, bottom), (left, right)) + ((0, 0),) * (pixels.ndim - 2)
        padded = (np.pad(pixels, pad, mode="edge") if fill == "edge"
                  else np.pad(pixels, pad, mode="constant", constant_values=FILLS[fill]))
        height, width = pixels.shape[:2]

        def ramp(n: int) -> np.ndarray:  # from next to the pad (feather / (feather + 1)) down to 0 at feather px in
            return np.clip((feather - np.arange(n)) / (feather + 1), 0, 1)

        weight = np.zeros((height, width))
        for padded_side, ramp_along in ((left, ramp(width)[None, :]), (right, ramp(width)[None, ::-1]),
                                        (top, ramp(height)[:, None]), (bottom, ramp(height)[::-1, None])):
            if padded_side:
                weight = np.maximum(weight, ramp_along)
        mask = np.full(padded.shape[:2], 255, dtype=np.uint8)
        mask[top:top + height, left:left + width] = np.round(weight * 255).astype(np.uint8)
        return {"image": Image.fromarray(padded), "mask": Image.fromarray(mask), "width": padded.shape[1],
                "height": padded.shape[0]}


class InvertMask(_ImageNode):
    name = "InvertMask"
    description = "Swap a mask's painted (white) and kept (black) areas: 255 - value, as a grayscale image."
    image_input = "mask"

    image_description = "the mask, or a list of masks"
    outputs = {"mask": NodeOutput("image")}

    def apply(self, image):
        return {"mask": ImageOps.invert(image.convert("L"))}


class ImageToMask(_ImageNode):
    name = "ImageToMask"
    description = ("A mask from one channel of an image: 'alpha' paints where the image is transparent (an upload "
                   "with its background erased), the others are white where the channel is bright.")
    widgets = {"channel": (Literal["alpha", "luminance", "red", "green", "blue"], "alpha",
                           "alpha: white where transparent (an image without alpha paints nothing); luminance or one "
                           "colour: white where bright")}
    outputs = {"mask": NodeOutput("image")}

    def apply(self, image, channel):
        if channel == "alpha":
            alpha = image.getchannel("A") if "A" in image.getbands() else Image.new("L", image.size, 255)
            return {"mask": ImageOps.invert(alpha)}
        if channel == "luminance":
            return {"mask": image.convert("L")}
        return {"mask": image.convert("RGB").getchannel(channel[0].upper())}


IMAGE_NODES = (ScaleImage, CropImage, PadImage, InvertMask, ImageToMask)
