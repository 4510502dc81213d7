"""Parity of diffblocks' VaeImageProcessor / MaskImageProcessor with diffusers' VaeImageProcessor.

Tolerance: exact equality (``torch.equal`` / ``np.array_equal`` / identical PIL bytes) for every output;
both sides run the same PIL resampling and the same float32 arithmetic.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

diffusers_ip = pytest.importorskip("diffusers.image_processor")

from diffblocks.components.image_processor import MaskImageProcessor, VaeImageProcessor  # noqa: E402
from diffblocks.modular_pipelines.errors import ConfigError  # noqa: E402

Reference = diffusers_ip.VaeImageProcessor
MASK_CONFIG = {"do_normalize": False, "do_binarize": True, "do_convert_grayscale": True}


def rgb_image(width=45, height=37, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (height, width, channels) if channels else (height, width)
    return PIL.Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=None if channels else "L")


def mask_image(width=45, height=37):
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[8:20, 12:30] = 255
    mask[25:30, 3:9] = 128
    return PIL.Image.fromarray(mask)


def assert_same(ours, theirs):
    if isinstance(theirs, torch.Tensor):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    elif isinstance(theirs, np.ndarray):
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same(a, b)
    else:  # PIL
        assert ours.mode == theirs.mode and ours.size == theirs.size and ours.tobytes() == theirs.tobytes()


def both(config=None):
    return VaeImageProcessor(**(config or {})), Reference(**(config or {}))


def make_input(kind, seed=0):
    image = rgb_image(seed=seed)
    array = np.asarray(image).astype(np.float32) / 255.0
    return {
        "pil": image,
        "pil_list": [image, rgb_image(seed=seed + 1)],
        "np_hwc": array,
        "np_nhwc": array[None].repeat(2, 0),
        "np_list": [array, array[::-1].copy()],
        "pt_chw": torch.from_numpy(array).permute(2, 0, 1).contiguous(),
        "pt_nchw": torch.from_numpy(array).permute(2, 0, 1)[None].repeat(2, 1, 1, 1),
        "pt_list": [torch.from_numpy(array).permute(2, 0, 1).contiguous()] * 2,
        "pt_normalized": torch.from_numpy(array).permute(2, 0, 1)[None] * 2 - 1,
    }[kind]


KINDS = ["pil", "pil_list", "np_hwc", "np_nhwc", "np_list", "pt_chw", "pt_nchw", "pt_list", "pt_normalized"]


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("size", [(None, None), (64, 48), (33, 70)], ids=["default", "64x48", "odd-33x70"])
@pytest.mark.parametrize("kind", KINDS)
def test_preprocess_matches_diffusers(kind, size):
    ours, theirs = both()
    height, width = size
    assert_same(
        ours.preprocess(make_input(kind), height=height, width=width),
        theirs.preprocess(make_input(kind), height=height, width=width),
    )


@pytest.mark.parametrize("resample", ["lanczos", "bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("resize_mode", ["default", "fill", "crop"])
def test_pil_resize_modes_and_filters(resample, resize_mode):
    ours, theirs = both({"resample": resample, "vae_scale_factor": 16})
    for w, h in ((40, 72), (72, 40)):
        assert_same(
            ours.preprocess(rgb_image(), height=h, width=w, resize_mode=resize_mode),
            theirs.preprocess(rgb_image(), height=h, width=w, resize_mode=resize_mode),
        )


def test_preprocess_options():
    for config, image in (
        ({"do_convert_rgb": True}, rgb_image()),
        ({"do_convert_rgb": True}, rgb_image(mode="L")),
        ({"do_convert_grayscale": True}, rgb_image()),
        ({"do_resize": False}, rgb_image()),
    ):
        ours, theirs = both(config)
        assert_same(ours.preprocess(image), theirs.preprocess(image))
    ours, theirs = both()
    box = (3, 5, 40, 30)
    assert_same(ours.preprocess(rgb_image(), crops_coords=box), theirs.preprocess(rgb_image(), crops_coords=box))
    latents = torch.randn(1, 4, 8, 8)
    assert ours.preprocess(latents) is not None and torch.equal(ours.preprocess(latents), latents)


# --- where we differ from diffusers on purpose: what no VAE takes is converted or refused -----------------


def pil_modes():
    rgb = rgb_image(seed=4)
    sixteen = PIL.Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257))
    return {
        "RGBA": (rgb_image(seed=4, mode="RGBA"), lambda im: im.convert("RGB")),
        "P": (rgb.convert("P"), lambda im: im.convert("RGB")),
        "LA": (rgb.convert("LA"), lambda im: im.convert("RGB")),
        "CMYK": (rgb.convert("CMYK"), lambda im: im.convert("RGB")),
        "I;16": (sixteen, lambda im: rgb.convert("L").convert("RGB")),  # scaled to 8 bits, not clipped
    }


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "CMYK", "I;16"])
@pytest.mark.parametrize("config", [{}, {"do_convert_rgb": True}], ids=["default", "convert_rgb"])
def test_other_pil_modes_are_converted_to_rgb_before_resizing(mode, config):
    image, as_rgb = pil_modes()[mode]
    ours = VaeImageProcessor(**config)
    result = ours.preprocess(image, height=24, width=40)
    assert result.shape == (1, 3, 24, 40)
    assert torch.equal(result, Reference(**config).preprocess(as_rgb(image), height=24, width=40))


def test_grayscale_image_gives_three_equal_channels():
    gray = rgb_image(mode="L")
    result = VaeImageProcessor().preprocess(gray, height=24, width=40)
    assert result.shape == (1, 3, 24, 40)
    assert torch.equal(result, Reference(do_convert_rgb=True).preprocess(gray, height=24, width=40))
    array = np.asarray(gray).astype(np.float32)[..., None] / 255.0
    assert VaeImageProcessor().preprocess(array).shape[1] == 3


def test_mask_processor_converts_other_modes_to_l():
    mask = mask_image()
    ours = MaskImageProcessor().preprocess(mask.convert("RGBA"), height=64, width=48)
    assert torch.equal(ours, Reference(**MASK_CONFIG).preprocess(mask.convert("RGBA").convert("L"), height=64, width=48))


@pytest.mark.parametrize("image", [np.zeros((16, 16, 4), np.float32), np.zeros((2, 16, 16, 2), np.float32),
                                   torch.zeros(1, 2, 16, 16), torch.zeros(16, 16)],
                         ids=["np-rgba", "np-2ch", "pt-2ch", "pt-hw"])
def test_channel_counts_no_vae_takes_are_refused(image):
    with pytest.raises(ConfigError, match=r"takes images with 1 or 3 channel\(s\).*got a batch of shape"):
        VaeImageProcessor().preprocess(image)


@pytest.mark.parametrize("kind", ["pil", "np_hw", "np_hw1", "pt_hw", "pt_nhw", "pt_n1hw"])
def test_mask_processor_matches_diffusers(kind):
    ours, theirs = MaskImageProcessor(), Reference(**MASK_CONFIG)
    assert dict(ours.config) == {**dict(VaeImageProcessor().config), **MASK_CONFIG}
    array = np.asarray(mask_image()).astype(np.float32) / 255.0
    make = {
        "pil": lambda: mask_image(),
        "np_hw": lambda: array.copy(),
        "np_hw1": lambda: array[..., None].copy(),
        "pt_hw": lambda: torch.from_numpy(array.copy())[None],
        "pt_nhw": lambda: torch.from_numpy(np.stack([array, array[::-1].copy()])),
        "pt_n1hw": lambda: torch.from_numpy(array.copy())[None, None],
    }[kind]
    result = ours.preprocess(make(), height=64, width=48)
    assert_same(result, theirs.preprocess(make(), height=64, width=48))
    assert result.shape[1] == 1 and set(result.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("output_type", ["pil", "np", "pt", "latent"])
def test_postprocess_matches_diffusers(output_type):
    ours, theirs = both()
    decoded = torch.randn(2, 3, 24, 16, generator=torch.Generator().manual_seed(0)) * 1.2
    assert_same(
        ours.postprocess(decoded, output_type=output_type), theirs.postprocess(decoded, output_type=output_type)
    )
    per_image = [True, False]
    assert_same(
        ours.postprocess(decoded, output_type=output_type, do_denormalize=per_image),
        theirs.postprocess(decoded, output_type=output_type, do_denormalize=per_image),
    )
    gray = torch.rand(1, 1, 8, 8)
    assert_same(ours.postprocess(gray, output_type=output_type), theirs.postprocess(gray, output_type=output_type))


def test_static_conversions_match():
    ours, theirs = both()
    image = rgb_image()
    array = theirs.pil_to_numpy([image, image])
    assert_same(ours.pil_to_numpy([image, image]), array)
    assert_same(ours.numpy_to_pt(array), theirs.numpy_to_pt(array))
    assert_same(ours.pt_to_numpy(theirs.numpy_to_pt(array)), array)
    assert_same(ours.numpy_to_pil(array), theirs.numpy_to_pil(array))
    assert_same(ours.numpy_to_pil(array[0, ..., :1]), theirs.numpy_to_pil(array[0, ..., :1]))
    assert ours.get_default_height_width(image) == theirs.get_default_height_width(image) == (32, 40)


def test_inpaint_helpers_match():
    ours, theirs = both()
    init, generated, mask = rgb_image(seed=1), rgb_image(seed=2), mask_image()
    assert_same(ours.apply_overlay(mask, init, generated), theirs.apply_overlay(mask, init, generated))
    for width, height, pad in ((64, 64, 0), (32, 64, 4), (96, 32, 2)):
        box = ours.get_crop_region(mask, width, height, pad=pad)
        assert box == theirs.get_crop_region(mask, width, height, pad=pad)
        small = rgb_image(width=24, height=18, seed=3)
        assert_same(
            ours.apply_overlay(mask, init, small, crop_coords=box),
            theirs.apply_overlay(mask, init, small, crop_coords=box),
        )
    assert_same(ours.blur(mask, 3), theirs.blur(mask, 3))


def test_config_round_trip_and_errors(tmp_path):
    processor = VaeImageProcessor(vae_scale_factor=16, resample="bicubic")
    assert processor.config.vae_scale_factor == 16
    processor.save_config(tmp_path)
    loaded = VaeImageProcessor.from_config(VaeImageProcessor.load_config(tmp_path))
    assert dict(loaded.config) == dict(processor.config)
    assert VaeImageProcessor.from_config(Reference(vae_scale_factor=4).config).config.vae_scale_factor == 4
    with pytest.raises(ConfigError, match="cannot both be True"):
        VaeImageProcessor(do_convert_rgb=True, do_convert_grayscale=True)
    with pytest.raises(ConfigError, match="output_type"):
        processor.postprocess(torch.zeros(1, 3, 8, 8), output_type="jpeg")
    with pytest.raises(ConfigError, match="preprocess takes"):
        processor.preprocess("not an image")
    with pytest.raises(ConfigError, match="needs PIL images"):
        processor.resize(torch.zeros(1, 3, 8, 8), 16, 16, resize_mode="fill")
