"""Image pre- and post-processing around the VAE: PIL / numpy / tensor in, normalised NCHW tensors out.

:class:`VaeImageProcessor` gives the same pixels as diffusers' class of the same name (same PIL resampling,
same rounding, same nearest-neighbour interpolation for arrays), so encoded latents and decoded images
match a diffusers pipeline. :class:`MaskImageProcessor` is the inpainting mask variant (grayscale, no
normalisation, binarised at 0.5).

Where diffusers hands the VAE something it cannot take, these processors differ: a PIL image of any mode
other than RGB and L (RGBA, P, LA, CMYK, 16-bit, ...) is first converted to RGB (to L for masks), 16-bit
images scaled to 8 bits; a one-channel image comes out with three channels (unless the processor is
grayscale); and arrays or tensors with a channel count no VAE takes (2, 4 as a numpy array, ...) are refused.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence, Union

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from PIL import ImageFilter, ImageOps

from .errors import ConfigError
from .config import ConfigMixin, register_to_config
from .latent_scaling import LATENT_SCALING

PIL_RESAMPLING = {
    "linear": PIL.Image.Resampling.BILINEAR,
    "bilinear": PIL.Image.Resampling.BILINEAR,
    "bicubic": PIL.Image.Resampling.BICUBIC,
    "lanczos": PIL.Image.Resampling.LANCZOS,
    "nearest": PIL.Image.Resampling.NEAREST,
}
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
RESIZE_MODES = ("default", "fill", "crop")

ImageInput = Union[PIL.Image.Image, np.ndarray, torch.Tensor, Sequence[Any]]


def is_valid_image(image: Any) -> bool:
    """A PIL image, or a 2D/3D array or tensor (one image)."""
    if isinstance(image, PIL.Image.Image):
        return True
    return isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim in (2, 3)


def is_valid_image_imagelist(images: Any) -> bool:
    """One image, a 4D batch, or a list of single images."""
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return True
    if is_valid_image(images):
        return True
    return isinstance(images, list) and all(is_valid_image(image) for image in images)


def _first_nonzero(flags: np.ndarray) -> int:
    hits = np.flatnonzero(flags)
    return int(hits[0]) if len(hits) else len(flags)


def _widen(lo: int, hi: int, desired: float, limit: int) -> tuple[int, int]:
    """Grow [lo, hi) to length ``desired`` around its centre, shifted back inside [0, limit]."""
    diff = int(desired - (hi - lo))
    lo -= diff // 2
    hi += diff - diff // 2
    if hi >= limit:
        lo, hi = lo - (hi - limit), limit
    if lo < 0:
        lo, hi = 0, hi - lo
    return lo, min(hi, limit)


def mask_crop_region(mask_image: PIL.Image.Image, width: int, height: int, pad: int = 0) -> tuple[int, int, int, int]:
    """The box ``(x1, y1, x2, y2)`` around the mask's non-zero pixels, padded by ``pad`` and widened to the
    ``width / height`` aspect ratio (inpainting with ``padding_mask_crop``)."""
    mask = np.array(mask_image.convert("L"))
    h, w = mask.shape
    cols, rows = (mask != 0).any(axis=0), (mask != 0).any(axis=1)
    left, right = _first_nonzero(cols), _first_nonzero(cols[::-1])
    top, bottom = _first_nonzero(rows), _first_nonzero(rows[::-1])
    x1, y1 = int(max(left - pad, 0)), int(max(top - pad, 0))
    x2, y2 = int(min(w - right + pad, w)), int(min(h - bottom + pad, h))
    ratio_processing = width / height
    if (x2 - x1) / (y2 - y1) > ratio_processing:
        y1, y2 = _widen(y1, y2, (x2 - x1) / ratio_processing, mask_image.height)
    else:
        x1, x2 = _widen(x1, x2, (y2 - y1) * ratio_processing, mask_image.width)
    return x1, y1, x2, y2


def resize_and_fill(image: PIL.Image.Image, width: int, height: int, resample) -> PIL.Image.Image:
    """Fit inside (width, height) keeping the aspect ratio; fill the borders with stretched edge pixels."""
    ratio, src_ratio = width / height, image.width / image.height
    src_w = width if ratio < src_ratio else image.width * height // image.height
    src_h = height if ratio >= src_ratio else image.height * width // image.width
    resized = image.resize((src_w, src_h), resample=resample)
    res = PIL.Image.new("RGB", (width, height))
    res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio:
        fill = height // 2 - src_h // 2
        if fill > 0:
            res.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
            edge = (0, resized.height, width, resized.height)
            res.paste(resized.resize((width, fill), box=edge), box=(0, fill + src_h))
    elif ratio > src_ratio:
        fill = width // 2 - src_w // 2
        if fill > 0:
            res.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
            edge = (resized.width, 0, resized.width, height)
            res.paste(resized.resize((fill, height), box=edge), box=(fill + src_w, 0))
    return res


def resize_and_crop(image: PIL.Image.Image, width: int, height: int, resample) -> PIL.Image.Image:
    """Cover (width, height) keeping the aspect ratio; crop the overflow around the centre."""
    ratio, src_ratio = width / height, image.width / image.height
    src_w = width if ratio > src_ratio else image.width * height // image.height
    src_h = height if ratio <= src_ratio else image.height * width // image.width
    resized = image.resize((src_w, src_h), resample=resample)
    res = PIL.Image.new("RGB", (width, height))
    res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    return res


def scaled_size(size: tuple[int, int], scale_by: float = 1.0, width: int = 0, height: int = 0,
                multiple_of: int = 8) -> tuple[int, int]:
    """``(width, height)`` for an image of ``size`` enlarged ``scale_by`` times, or brought to ``width`` and / or
    ``height`` (one alone keeps the aspect ratio; 0: not given), each side rounded to the nearest multiple of
    ``multiple_of`` (halves up) and at least ``multiple_of``."""
    old_width, old_height = size
    if width and height:
        sides = (width, height)
    elif width:
        sides = (width, width * old_height / old_width)
    elif height:
        sides = (height * old_width / old_height, height)
    else:
        sides = (old_width * scale_by, old_height * scale_by)
    return tuple(max(multiple_of, math.floor(side / multiple_of + 0.5) * multiple_of) for side in sides)


def scale_latents(latents: torch.Tensor, scale_by: float, method: str = "bilinear") -> torch.Tensor:
    """``latents`` (batch, channels, h, w) enlarged ``scale_by`` times by ``method`` (a ``LATENT_SCALING`` name),
    each side rounded to the nearest whole latent pixel (halves up), as ``scaled_size`` rounds an image's to a
    multiple of the VAE's 8: what image-to-image takes as its image for a hires pass without decoding."""
    width, height = scaled_size((latents.shape[-1], latents.shape[-2]), scale_by, multiple_of=1)
    mode, antialias = LATENT_SCALING[method]
    return torch.nn.functional.interpolate(latents, size=(height, width), mode=mode, antialias=antialias)


def to_mode(image: PIL.Image.Image, mode: str) -> PIL.Image.Image:
    """``image`` as ``mode`` ("RGB" or "L"), as image libraries convert: alpha dropped, palettes expanded,
    CMYK to RGB, 16-bit (``I;16``, and ``I`` above 255) scaled to 8 bits rather than clipped."""
    if image.mode == mode:
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or pixels.max() > 255:
            pixels = pixels / 257.0  # 65535 -> 255
        image = PIL.Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8), mode="L")
    return image.convert(mode)


class VaeImageProcessor(ConfigMixin):
    """Convert images to and from the VAE's pixel space.

    Args:
        vae_scale_factor: sizes are rounded down to a multiple of this (the VAE's downsampling factor).
        vae_latent_channels: a tensor input with this many channels is taken as latents and passed through.
        resample: PIL filter for resizing (``lanczos``, ``bicubic``, ``bilinear``/``linear``, ``nearest``).
        do_resize: resize to the default (or requested) height and width.
        do_normalize: map [0, 1] to [-1, 1] in ``preprocess`` and back in ``postprocess``.
        do_binarize: threshold at 0.5 to {0, 1} (masks).
        do_convert_rgb: convert PIL inputs to RGB (diffusers' switch; every non-grayscale processor gives RGB,
            since the VAE takes three channels).
        do_convert_grayscale: convert PIL inputs to one channel ("L").
        reducing_gap: PIL ``reducing_gap`` optimisation for resizing (None: exact resampling).

    Raises:
        ConfigError: both ``do_convert_rgb`` and ``do_convert_grayscale``, or an unknown ``resample``.
    """

    @register_to_config
    def __init__(
        self,
        vae_scale_factor: int = 8,
        vae_latent_channels: int = 4,
        resample: str = "lanczos",
        do_resize: bool = True,
        do_normalize: bool = True,
        do_binarize: bool = False,
        do_convert_rgb: bool = False,
        do_convert_grayscale: bool = False,
        reducing_gap: int | None = None,
    ):
        owner = type(self).__name__
        if do_convert_rgb and do_convert_grayscale:
            raise ConfigError(f"{owner}: do_convert_rgb and do_convert_grayscale cannot both be True")
        if resample not in PIL_RESAMPLING:
            raise ConfigError.bad_value(owner, "resample", f"one of {', '.join(PIL_RESAMPLING)}", resample)

    # --- conversions ---------------------------------------------------------------------------------

    @staticmethod
    def numpy_to_pil(images: np.ndarray) -> list[PIL.Image.Image]:
        """NHWC (or HWC) floats in [0, 1] to PIL images (one channel gives mode "L")."""
        if images.ndim == 3:
            images = images[None, ...]
        images = (images * 255).round().astype("uint8")
        if images.shape[-1] == 1:
            return [PIL.Image.fromarray(image[..., 0]) for image in images]
        return [PIL.Image.fromarray(image) for image in images]

    @staticmethod
    def pil_to_numpy(images: PIL.Image.Image | list[PIL.Image.Image]) -> np.ndarray:
        """PIL image(s) to an NHWC float32 array in [0, 1]."""
        images = images if isinstance(images, list) else [images]
        return np.stack([np.array(image).astype(np.float32) / 255.0 for image in images], axis=0)

    @staticmethod
    def numpy_to_pt(images: np.ndarray) -> torch.Tensor:
        """NHWC (or NHW) array to an NCHW tensor (no copy of the data)."""
        if images.ndim == 3:
            images = images[..., None]
        return torch.from_numpy(images.transpose(0, 3, 1, 2))

    @staticmethod
    def pt_to_numpy(images: torch.Tensor) -> np.ndarray:
        """NCHW tensor to an NHWC float32 array on the CPU."""
        return images.cpu().permute(0, 2, 3, 1).float().numpy()

    @staticmethod
    def normalize(images):
        """[0, 1] to [-1, 1]."""
        return 2.0 * images - 1.0

    @staticmethod
    def denormalize(images):
        """[-1, 1] to [0, 1], clamped."""
        return (images * 0.5 + 0.5).clamp(0, 1)

    @staticmethod
    def convert_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
        return image.convert("RGB")

    @staticmethod
    def convert_to_grayscale(image: PIL.Image.Image) -> PIL.Image.Image:
        return image.convert("L")

    @staticmethod
    def blur(image: PIL.Image.Image, blur_factor: int = 4) -> PIL.Image.Image:
        """Gaussian blur (softens inpainting mask edges)."""
        return image.filter(ImageFilter.GaussianBlur(blur_factor))

    get_crop_region = staticmethod(mask_crop_region)

    # --- resizing ------------------------------------------------------------------------------------

    @property
    def _resample(self):
        return PIL_RESAMPLING[self.config.resample]

    def resize(self, image, height: int, width: int, resize_mode: str = "default"):
        """Resize a PIL image (with ``resample``) or an NCHW tensor / NHWC array (nearest neighbour).

        Raises:
            ConfigError: unknown ``resize_mode``, or ``fill``/``crop`` for a non-PIL input.
        """
        if resize_mode not in RESIZE_MODES:
            raise ConfigError.bad_value(type(self).__name__, "resize_mode", ", ".join(RESIZE_MODES), resize_mode)
        if resize_mode != "default" and not isinstance(image, PIL.Image.Image):
            raise ConfigError(f"resize_mode={resize_mode!r} needs PIL images, got {type(image).__name__}")
        if isinstance(image, PIL.Image.Image):
            if resize_mode == "fill":
                return resize_and_fill(image, width, height, self._resample)
            if resize_mode == "crop":
                return resize_and_crop(image, width, height, self._resample)
            return image.resize((width, height), resample=self._resample, reducing_gap=self.config.reducing_gap)
        if isinstance(image, torch.Tensor):
            return F.interpolate(image, size=(height, width))
        return self.pt_to_numpy(F.interpolate(self.numpy_to_pt(image), size=(height, width)))

    def binarize(self, image: torch.Tensor) -> torch.Tensor:
        """Values below 0.5 to 0, the rest to 1 (in place)."""
        image[image < 0.5] = 0
        image[image >= 0.5] = 1
        return image

    def get_default_height_width(self, image, height: int | None = None, width: int | None = None):
        """``(height, width)``: the given values or the image's, rounded down to a multiple of the scale factor."""
        if isinstance(image, PIL.Image.Image):
            size = (image.height, image.width)
        elif isinstance(image, torch.Tensor):
            size = (image.shape[2], image.shape[3])
        else:
            size = (image.shape[1], image.shape[2])
        height = size[0] if height is None else height
        width = size[1] if width is None else width
        factor = self.config.vae_scale_factor
        return height - height % factor, width - width % factor

    # --- pipeline entry points --------------------------------------------------------------------------

    def preprocess(
        self,
        image: ImageInput,
        height: int | None = None,
        width: int | None = None,
        resize_mode: str = "default",
        crops_coords: tuple[int, int, int, int] | None = None,
    ) -> torch.Tensor:
        """Image(s) to a float NCHW tensor: resized to a multiple of the VAE factor and scaled to [-1, 1].

        Args:
            image: PIL image, HWC/NHWC array in [0, 1], CHW/NCHW tensor in [0, 1], or a list of those.
                A tensor with ``vae_latent_channels`` channels is returned unchanged (already latents).
                The result has three channels (one for a grayscale processor).
            height, width: target size (default: the first image's, rounded down).
            resize_mode: ``default`` (stretch), ``fill`` or ``crop`` (PIL only).
            crops_coords: crop PIL images to this box first.

        Raises:
            ConfigError: an input of an unsupported type, shape or channel count.
        """
        image = self._as_batch_list(image)
        if isinstance(image[0], PIL.Image.Image):
            image = self._preprocess_pil(image, height, width, resize_mode, crops_coords)
        else:
            if isinstance(image[0], np.ndarray):
                batch = np.concatenate(image, axis=0) if image[0].ndim == 4 else np.stack(image, axis=0)
                image = self.numpy_to_pt(batch if self.config.do_convert_grayscale else self._gray_to_rgb(batch))
            else:
                image = torch.cat(image, dim=0) if image[0].ndim == 4 else torch.stack(image, dim=0)
                if self.config.do_convert_grayscale and image.ndim == 3:
                    image = image.unsqueeze(1)
                if image.ndim == 4 and image.shape[1] == self.config.vae_latent_channels:
                    return image
            self._check_channels(image)
            height, width = self.get_default_height_width(image, height, width)
            if self.config.do_resize:
                image = self.resize(image, height, width)
        if not self.config.do_convert_grayscale and image.shape[1] == 1:
            image = image.repeat(1, 3, 1, 1)  # a grayscale tensor to RGB, as PIL's L -> RGB conversion
        return self._normalize_and_binarize(image)

    @staticmethod
    def _gray_to_rgb(batch: np.ndarray) -> np.ndarray:
        """An NHW or NHW1 batch with its one channel repeated three times (NHWC arrays as they are)."""
        if batch.ndim == 3:
            batch = batch[..., None]
        return np.repeat(batch, 3, axis=-1) if batch.shape[-1] == 1 else batch

    def _check_channels(self, image: torch.Tensor) -> None:
        allowed = (1,) if self.config.do_convert_grayscale else (1, 3)
        if image.ndim != 4 or image.shape[1] not in allowed:
            raise ConfigError(
                f"{type(self).__name__}.preprocess takes images with {' or '.join(map(str, allowed))} channel(s) "
                f"(HW, HWC or NHWC arrays, CHW or NCHW tensors); got a batch of shape {tuple(image.shape)} "
                "(drop an alpha channel with image[..., :3] for arrays, image[:, :3] for tensors)"
            )

    def _as_batch_list(self, image) -> list:
        if self.config.do_convert_grayscale and isinstance(image, (torch.Tensor, np.ndarray)) and image.ndim == 3:
            if isinstance(image, torch.Tensor):
                image = image.unsqueeze(1)  # NHW batch of masks
            else:
                image = np.expand_dims(image, axis=0 if image.shape[-1] == 1 else -1)
        if isinstance(image, list) and isinstance(image[0], np.ndarray) and image[0].ndim == 4:
            image = np.concatenate(image, axis=0)
        if isinstance(image, list) and isinstance(image[0], torch.Tensor) and image[0].ndim == 4:
            image = torch.cat(image, dim=0)
        if not is_valid_image_imagelist(image):
            raise ConfigError(
                f"{type(self).__name__}.preprocess takes PIL images, numpy arrays or torch tensors (or lists of "
                f"them); got {type(image).__name__}"
            )
        return image if isinstance(image, list) else [image]

    def _preprocess_pil(self, images, height, width, resize_mode, crops_coords) -> torch.Tensor:
        # modes other than RGB and L are converted before resizing (resampling a palette or alpha would mix
        # in what the conversion drops); RGB and L follow diffusers' order: resize, then convert
        target = "L" if self.config.do_convert_grayscale else "RGB"
        images = [i if i.mode in ("RGB", "L") else to_mode(i, target) for i in images]
        if crops_coords is not None:
            images = [i.crop(crops_coords) for i in images]
        if self.config.do_resize:
            height, width = self.get_default_height_width(images[0], height, width)
            images = [self.resize(i, height, width, resize_mode=resize_mode) for i in images]
        if self.config.do_convert_grayscale:
            images = [self.convert_to_grayscale(i) for i in images]
        else:  # with do_convert_rgb as diffusers; without it only L images change, the VAE needs three channels
            images = [self.convert_to_rgb(i) for i in images]
        return self.numpy_to_pt(self.pil_to_numpy(images))

    def _normalize_and_binarize(self, image: torch.Tensor) -> torch.Tensor:
        do_normalize = self.config.do_normalize
        if do_normalize and image.min() < 0:
            warnings.warn(
                f"image values are in [{image.min()}, {image.max()}]; inputs should be in [0, 1], so they are "
                "taken as already normalised",
                FutureWarning,
                stacklevel=3,
            )
            do_normalize = False
        if do_normalize:
            image = self.normalize(image)
        if self.config.do_binarize:
            image = self.binarize(image)
        return image

    def postprocess(self, image: torch.Tensor, output_type: str = "pil", do_denormalize: list[bool] | None = None):
        """A decoded NCHW tensor to ``pil`` (list of images), ``np`` (NHWC in [0, 1]), ``pt`` or ``latent``.

        Args:
            do_denormalize: per image, whether to map [-1, 1] back to [0, 1] (default: ``do_normalize``).

        Raises:
            ConfigError: ``image`` is not a tensor, or an unknown ``output_type``.
        """
        if not isinstance(image, torch.Tensor):
            raise ConfigError(f"{type(self).__name__}.postprocess takes a torch tensor, got {type(image).__name__}")
        if output_type not in OUTPUT_TYPES:
            raise ConfigError.bad_value(type(self).__name__, "output_type", ", ".join(OUTPUT_TYPES), output_type)
        if output_type == "latent":
            return image
        if do_denormalize is None:
            image = self.denormalize(image) if self.config.do_normalize else image
        else:
            image = torch.stack([self.denormalize(im) if d else im for im, d in zip(image, do_denormalize)])
        if output_type == "pt":
            return image
        image = self.pt_to_numpy(image)
        return image if output_type == "np" else self.numpy_to_pil(image)

    def apply_overlay(
        self,
        mask: PIL.Image.Image,
        init_image: PIL.Image.Image,
        image: PIL.Image.Image,
        crop_coords: tuple[int, int, int, int] | None = None,
    ) -> PIL.Image.Image:
        """Paste the unmasked part of ``init_image`` over the generated ``image`` (inpainting).

        With ``crop_coords``, ``image`` was generated for that box and is first placed back into it.
        """
        width, height = init_image.width, init_image.height
        masked = PIL.Image.new("RGBa", (width, height))
        masked.paste(init_image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
        masked = masked.convert("RGBA")
        if crop_coords is not None:
            x, y, x2, y2 = crop_coords
            base = PIL.Image.new("RGBA", (width, height))
            base.paste(self.resize(image, height=y2 - y, width=x2 - x, resize_mode="crop"), (x, y))
            image = base.convert("RGB")
        image = image.convert("RGBA")
        image.alpha_composite(masked)
        return image.convert("RGB")


class MaskImageProcessor(VaeImageProcessor):
    """:class:`VaeImageProcessor` with inpainting-mask defaults: grayscale, not normalised, binarised at 0.5."""

    @register_to_config
    def __init__(
        self,
        vae_scale_factor: int = 8,
        vae_latent_channels: int = 4,
        resample: str = "lanczos",
        do_resize: bool = True,
        do_normalize: bool = False,
        do_binarize: bool = True,
        do_convert_rgb: bool = False,
        do_convert_grayscale: bool = True,
        reducing_gap: int | None = None,
    ):
        super().__init__(
            vae_scale_factor,
            vae_latent_channels,
            resample,
            do_resize,
            do_normalize,
            do_binarize,
            do_convert_rgb,
            do_convert_grayscale,
            reducing_gap,
        )
