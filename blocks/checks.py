"""Input checks shared by the diffusion blocks.

Constraints of one input are declared in its ``type_hint`` (:data:`IMAGE_TYPE`, :data:`MASK_TYPE`,
:data:`FINITE_TENSOR`, ...), so the pipeline checks them before any block runs and the JSON schema shows
them. Checks that need several inputs together (a size against the latents, a count of images against
the prompts) run at the top of the block that reads them, through :func:`conflict`.
"""

from __future__ import annotations

from typing import Annotated, Any, Sequence, Union

import numpy as np
import PIL.Image
import torch

from ..modular_pipelines.block import current_path
from ..modular_pipelines.checks import Finite, non_finite, value_check
from ..components.errors import InputValueError, MissingInputError


def _items(value: Any, at: tuple[int, ...] = ()) -> list[tuple[str, Any]]:
    """Every image in ``value`` (nested lists too) with where it is: ``""``, ``" (item 1)"``, ``" (item [1][0])"``."""
    if isinstance(value, (list, tuple)):
        return [pair for i, item in enumerate(value) for pair in _items(item, (*at, i))]
    if not at:
        return [("", value)]
    return [(f" (item {at[0] if len(at) == 1 else ''.join(f'[{i}]' for i in at)})", value)]


def _channels(image: Any, mask: bool) -> int | None:
    """Channel count as the image processors read the layout (None: a layout they cannot read)."""
    if isinstance(image, np.ndarray):  # HW, HWC, NHWC; masks: HW, HW1, NHW, NHW1
        if image.ndim == 2 or (mask and image.ndim == 3 and image.shape[-1] not in (3, 4)):
            return 1
        return image.shape[-1] if image.ndim in (3, 4) else None
    if image.ndim == 2:  # tensors: CHW, NCHW; masks also HW, NHW
        return 1 if mask else None
    if image.ndim == 3:
        return 1 if mask else image.shape[0]
    return image.shape[1] if image.ndim == 4 else None


def _channel_problem(image: Any, channels: int, mask: bool, latents: bool) -> str | None:
    if mask:
        return None if channels == 1 else (
            f"must be a one-channel mask, not {channels} channels: take one with mask[..., 0] (arrays), "
            "mask[:, :1] (tensors) or PIL's .convert('L')")
    if channels in (1, 3):
        return None
    tensor = isinstance(image, torch.Tensor)
    if channels == 4 and tensor and latents and image.is_floating_point():
        return None  # a float tensor with the VAE's 4 latent channels: latents (a base model's output)
    if channels != 4:
        return f"must have 1 or 3 channels (grayscale or RGB), not {channels}"
    if not tensor:
        return ("must have 1 or 3 channels (grayscale or RGB); a 4-channel array is RGBA or CMYK: drop the alpha "
                "channel with image[..., :3] or convert it with PIL's .convert('RGB')")
    if latents:
        return ("must have 1 or 3 channels, or be float latents; an integer 4-channel tensor is an RGBA image: drop "
                "the alpha channel with image[:, :3]")
    return ("must have 1 or 3 channels (grayscale or RGB); a 4-channel tensor is ambiguous here (RGBA, or latents, "
            "which this input does not take): drop an alpha channel with image[:, :3]; pass latents as `latents` "
            "(initial noise) or to image-to-image's `image`")


def image_problem(value: Any, mask: bool = False, latents: bool = False) -> str | None:
    """Why ``value`` cannot be an image input (None when it can), worded to follow the input's name.

    Args:
        value: a PIL image, an array (HW, HWC, NHWC), a tensor (CHW, NCHW), or a (nested) list of them.
        mask: a mask input: one channel (arrays and tensors may also be NHW).
        latents: a float tensor with 4 channels is taken as latents (image-to-image's ``image``).
    """
    items = _items(value)
    if not items:
        return "must hold at least one image (got an empty list)"
    for where, image in items:
        problem = _one_image_problem(image, mask, latents)
        if problem:
            return problem + where
    return None


def _one_image_problem(image: Any, mask: bool, latents: bool) -> str | None:
    if isinstance(image, PIL.Image.Image):  # every mode converts; only a float ("F") image can hold NaN
        return non_finite(np.asarray(image)) if image.mode == "F" else None
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        return f"must be PIL images, numpy arrays or torch tensors, not {type(image).__name__}"
    channels = _channels(image, mask)
    if channels is None:
        layouts = "HW, NHW, HW1 or N1HW" if mask else "HWC or NHWC (arrays), CHW or NCHW (tensors)"
        return f"must be an image of layout {layouts}, not of shape {tuple(image.shape)}"
    return _channel_problem(image, channels, mask, latents) or non_finite(image)


ImageLike = Union[PIL.Image.Image, np.ndarray, torch.Tensor, list]

IMAGE_TYPE = Annotated[ImageLike, value_check("1 or 3 channels, finite", image_problem)]
"""An image input: PIL (any mode; converted to RGB), or arrays / tensors with 1 or 3 channels, finite."""

IMAGE_OR_LATENTS_TYPE = Annotated[ImageLike, value_check(
    "1 or 3 channels, or 4-channel float latents; finite", lambda v: image_problem(v, latents=True))]
"""An image, or VAE latents as a float tensor with 4 channels (e.g. a base model's ``output_type="latent"``)."""

MASK_TYPE = Annotated[ImageLike, value_check("1 channel, finite", lambda v: image_problem(v, mask=True))]
"""A mask input: PIL (converted to L), or one-channel arrays / tensors, finite."""

FINITE_TENSOR = Annotated[torch.Tensor, Finite]
"""A tensor without NaN or inf (latents, precomputed embeddings)."""

FINITE_LIST = Annotated[list, Finite]
"""A list of tensors without NaN or inf (e.g. one IP-Adapter embedding per adapter)."""

FINITE_FLOAT = Annotated[float, Finite]
"""A float that is neither NaN nor inf (an int is taken too)."""


# --- checks of several inputs together ------------------------------------------------------------


def conflict(block, names: Sequence[str], problem: str) -> InputValueError:
    """The error for inputs of ``block`` (the one running) that do not fit together."""
    return InputValueError.conflict(names, current_path(), type(block).__name__, problem)


def invalid(block, name: str, problem: str, value: Any) -> InputValueError:
    """The error for one input of ``block`` whose value the block cannot use (``problem``: "must ...")."""
    return InputValueError.invalid(name, current_path(), type(block).__name__, problem, value)


def missing_one_of(block, names: Sequence[str]) -> MissingInputError:
    """The error for ``block`` (the one running) needing one of the inputs ``names`` and given none."""
    return MissingInputError.one_of(names, current_path(), type(block).__name__)


def check_multiple(block, height: int, width: int, factor: int) -> None:
    """Pixel sizes the VAE can make: multiples of its scale factor (as diffusers' check_inputs)."""
    for name, value in (("height", height), ("width", width)):
        if value % factor:
            raise invalid(block, name, f"must be a multiple of {factor} (the VAE's scale factor)", value)


def batch_text(batch_size: int, per_prompt: int) -> str:
    """``"a batch of 6 (3 prompts x 2 num_images_per_prompt)"``."""
    prompts = f"{batch_size} prompt{'s' if batch_size != 1 else ''}"
    return f"a batch of {batch_size * per_prompt} ({prompts} x {per_prompt} num_images_per_prompt)"


def check_rows(block, name: str, rows: int, batch_size: int, per_prompt: int, what: str = "images") -> None:
    """``rows`` of ``name`` must be 1 or divide the batch (they are repeated to it), as diffusers allows."""
    batch = batch_size * per_prompt
    if 0 < rows <= batch and batch % rows == 0:
        return
    raise conflict(block, [name, "prompt"], f"'{name}' has {rows} {what} for {batch_text(batch_size, per_prompt)}; "
                   f"give 1 or a number that divides {batch}")


def check_latents(block, latents: torch.Tensor, shape: Sequence[int], against: Sequence[str], sizes: str) -> None:
    """Given ``latents`` must have the ``shape`` the block would draw; ``against`` names the inputs it comes from."""
    if tuple(latents.shape) == tuple(shape):
        return
    raise conflict(block, ["latents", *against],
                   f"latents of shape {tuple(latents.shape)}, but {sizes} need shape {tuple(shape)}")
