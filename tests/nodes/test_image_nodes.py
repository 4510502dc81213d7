"""The image utility nodes: sizes and pixels equal Pillow's and numpy's own operations, lists come back as lists,
a crop past the image names its node and input, and on the embedded model a hires fix and an outpaint through
the nodes equal the same presets called in Python, with the first pass cached when only the scale changes."""

import threading

import numpy as np
import pytest
import torch
from node_workflows import changed, link
from PIL import Image
from tiny_models import build_pipeline, make_image

from diffblocks.components.errors import InputTypeError
from diffblocks.nodes import ArtifactStore, Executor, NodeRunError, catalog, node_type, validate
from diffblocks.nodes.node_type import RunContext
from diffblocks.nodes.sockets import fits
from diffblocks.presets import embedded_model_path, stable_diffusion

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give

STEPS = 4
LOAD = link("load", "components")
METHODS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
           "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def apply(name, image, **widgets):
    """Run node type ``name`` on ``image`` (its image input) with ``widgets``, outside a workflow."""
    node = node_type(name)
    ctx = RunContext("n", None, threading.Event(), lambda event: None)
    return node.run(ctx, {node.image_input: image, **widgets})


def noise(width, height, seed=0, mode="RGB"):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, len(mode)), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels)


# --- ScaleImage -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("widgets, size", [
    ({"scale_by": 2.0, "multiple_of": 1}, (80, 60)),
    ({"scale_by": 0.5, "multiple_of": 1}, (20, 15)),
    ({"width": 100, "multiple_of": 1}, (100, 75)),          # height from the aspect ratio
    ({"height": 15, "multiple_of": 1}, (20, 15)),           # width from the aspect ratio
    ({"width": 50, "height": 20, "multiple_of": 1}, (50, 20)),  # both given: the ratio is not kept
    ({"width": 50, "height": 20, "scale_by": 3.0, "multiple_of": 1}, (50, 20)),  # scale_by only when neither is
    ({}, (40, 32)),                                          # defaults: scale 1, 30 rounded to a multiple of 8
    ({"scale_by": 1.5}, (64, 48)),                           # 60 x 45 -> 64 x 48
    ({"width": 100}, (104, 72)),                             # 100 x 75 -> 104 x 72
])
def test_scale_size_arithmetic(widgets, size):
    assert apply("ScaleImage", noise(40, 30), **widgets)["image"].size == size


@pytest.mark.parametrize("method", sorted(METHODS))
def test_scale_pixels_equal_pillow_resize_with_the_same_filter(method):
    image = noise(40, 30, seed=1)
    scaled = apply("ScaleImage", image, scale_by=1.7, method=method)["image"]
    assert np.array_equal(np.asarray(scaled), np.asarray(image.resize(scaled.size, METHODS[method])))
    assert scaled.size == (72, 48)  # 68 x 51 to multiples of 8 (68 is 8.5 eights: halves round up)


def test_scale_defaults_to_lanczos_and_a_list_comes_back_as_a_list():
    images = [noise(32, 32, seed=s) for s in range(3)]
    scaled = apply("ScaleImage", images, scale_by=2.0)["image"]
    assert isinstance(scaled, list) and len(scaled) == 3
    for before, after in zip(images, scaled):
        assert np.array_equal(np.asarray(after), np.asarray(before.resize((64, 64), Image.Resampling.LANCZOS)))


def test_a_tensor_where_an_image_belongs_names_the_input():
    with pytest.raises(InputTypeError, match="PIL image") as caught:
        apply("ScaleImage", torch.zeros(1, 3, 8, 8))
    assert caught.value.input_name == "image"


# --- CropImage ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("box", [(0, 0, 40, 30), (5, 7, 20, 10), (39, 29, 1, 1), (12, 3, 0, 0)])
def test_crop_equals_pillow_crop(box):
    image = noise(40, 30, seed=2)
    x, y, width, height = box
    cropped = apply("CropImage", image, x=x, y=y, width=width, height=height)["image"]
    right, bottom = x + (width or 40 - x), y + (height or 30 - y)  # 0: up to the edge
    assert np.array_equal(np.asarray(cropped), np.asarray(image.crop((x, y, right, bottom))))


def test_a_crop_past_the_image_fails_its_node_naming_the_input_and_the_size(tmp_path):
    store = ArtifactStore(tmp_path)
    sha = store.put_image(make_image(0))  # 32 x 32
    workflow = {"nodes": {  # the crop first where the order is free: it fails before any model is loaded
        "picture": {"type": "LoadImage", "inputs": {"image": {"artifact": sha}}},
        "crop": {"type": "CropImage", "inputs": {"image": link("picture", "image"), "x": 8, "width": 30}},
        "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
        "i2i": {"type": "preset:sd15-image2image", "inputs": {
            "components": LOAD, "image": link("crop", "image"), "prompt": "a seven", "seed": 0,
            "num_inference_steps": STEPS}},
    }}
    assert validate(workflow) == []  # the image's size is known only when it runs
    events = []
    with pytest.raises(NodeRunError) as caught:
        Executor(artifacts=store).run(workflow, on_event=events.append)
    assert caught.value.node == "crop" and caught.value.input == "width"
    assert "32x32" in caught.value.message and "x + width = 38 > 32" in caught.value.message
    assert [e for e in events if e["type"] == "job.failed"] == [{"type": "job.failed", "job": events[0]["job"],
                                                                 **caught.value.error_json()}]
    assert [e["node"] for e in events if e["type"] == "node.started"] == ["picture", "crop"]
    with pytest.raises(NodeRunError) as caught:
        Executor(artifacts=store).run(changed(workflow, "crop", x=32, width=0), targets=["crop"])
    assert caught.value.input == "x" and "32x32" in caught.value.message


# --- PadImage and InvertMask ----------------------------------------------------------------------------------

SIDES = {"left": 5, "top": 2, "right": 0, "bottom": 7}


def test_pad_keeps_the_original_at_its_offset_and_continues_the_edge():
    image = noise(20, 10, seed=3)
    out = apply("PadImage", image, **SIDES)
    padded, mask = np.asarray(out["image"]), np.asarray(out["mask"])
    assert out["image"].size == (20 + 5 + 0, 10 + 2 + 7) and out["mask"].size == out["image"].size
    assert (out["width"], out["height"]) == out["image"].size
    assert np.array_equal(padded[2:12, 5:25], np.asarray(image))
    assert np.array_equal(padded, np.pad(np.asarray(image), ((2, 7), (5, 0), (0, 0)), mode="edge"))
    assert out["mask"].mode == "L"
    assert (mask[2:12, 5:25] == 0).all()  # kept: black
    new = np.ones(mask.shape, dtype=bool)
    new[2:12, 5:25] = False
    assert (mask[new] == 255).all()       # to paint: white


@pytest.mark.parametrize("fill", ["black", "gray"])
def test_pad_with_a_constant_fill(fill):
    image = noise(8, 8, seed=4)
    padded = np.asarray(apply("PadImage", image, fill=fill, **SIDES)["image"])
    values = np.unique(np.delete(padded, np.s_[2:10], axis=0))  # the rows of padding only
    assert len(values) == 1 and (values[0] == 0) == (fill == "black") and (0 < values[0] < 255) == (fill == "gray")
    assert np.array_equal(padded[2:10, 5:13], np.asarray(image))


def test_the_feather_ramps_down_into_the_original_from_the_padded_sides_only():
    feather = 6
    mask = np.asarray(apply("PadImage", noise(20, 10), left=4, feather=feather)["mask"]).astype(int)
    row = mask[5]
    assert (row[:4] == 255).all()
    ramp = row[4:4 + feather]
    assert (np.diff(row[3:4 + feather]) < 0).all() and 0 < ramp.min() and ramp.max() < 255
    assert (row[4 + feather:] == 0).all()  # past the feather, and at the right edge, which was not padded
    assert (mask == mask[0]).all()          # only the left side was padded: every row alike
    both = np.asarray(apply("PadImage", noise(20, 10), left=4, right=4, feather=feather)["mask"]).astype(int)
    assert np.array_equal(both[5, 4:24], both[5, 4:24][::-1]) and both[5, 14] == 0


def test_pad_and_invert_take_lists():
    images = [noise(8, 8, seed=s) for s in range(2)]
    out = apply("PadImage", images, top=4)
    assert [i.size for i in out["image"]] == [(8, 12)] * 2 and [m.size for m in out["mask"]] == [(8, 12)] * 2
    assert (out["width"], out["height"]) == (8, 12)  # one size for the batch, for a preset's width and height
    inverted = apply("InvertMask", out["mask"])["mask"]
    assert isinstance(inverted, list) and all(m.mode == "L" for m in inverted)
    for mask, back in zip(out["mask"], inverted):
        assert np.array_equal(np.asarray(back), 255 - np.asarray(mask))


def test_invert_mask_makes_a_grayscale_mask_of_any_image():
    image = noise(9, 5, seed=5)
    inverted = apply("InvertMask", image)["mask"]
    assert inverted.mode == "L" and np.array_equal(np.asarray(inverted), 255 - np.asarray(image.convert("L")))


def test_image_to_mask_paints_where_the_upload_is_transparent(tmp_path):
    """An RGBA upload with its background erased: ``alpha`` is white there (to paint), black where opaque; through
    the artifact store and LoadImage, as a page's upload comes."""
    pixels = np.asarray(noise(12, 8, seed=6, mode="RGBA")).copy()
    pixels[..., 3] = 255
    pixels[:, :5, 3] = 0  # the left part erased
    store = ArtifactStore(tmp_path)
    sha = store.put_image(Image.fromarray(pixels, "RGBA"))
    workflow = {"nodes": {"up": {"type": "LoadImage", "inputs": {"image": {"artifact": sha}}},
                          "mask": {"type": "ImageToMask", "inputs": {"image": link("up", "image")}}}}
    mask = np.asarray(Executor(artifacts=store).run(workflow)["mask"]["mask"])
    assert mask.dtype == np.uint8 and (mask[:, :5] == 255).all() and (mask[:, 5:] == 0).all()
    opaque = noise(12, 8, seed=7)
    assert (np.asarray(apply("ImageToMask", opaque)["mask"]) == 0).all()  # no alpha: nothing to paint
    assert np.array_equal(np.asarray(apply("ImageToMask", opaque, channel="luminance")["mask"]),
                          np.asarray(opaque.convert("L")))
    assert np.array_equal(np.asarray(apply("ImageToMask", opaque, channel="green")["mask"]), np.asarray(opaque)[..., 1])


# --- catalog and validation -----------------------------------------------------------------------------------

NAMES = ("ScaleImage", "CropImage", "PadImage", "InvertMask", "ImageToMask")


def test_the_catalog_lists_the_image_nodes_with_the_wire_shape():
    wire = catalog()
    for name in NAMES:
        entry = wire[name]
        assert set(entry) == {"inputs", "outputs", "category", "description"} and entry["category"] == "image"
        assert entry["description"]
        for spec in entry["inputs"].values():
            assert set(spec) == {"schema", "required", "socket"}
        assert all(o == {"socket": "image"} for name, o in entry["outputs"].items() if name not in ("width", "height"))
    scale = wire["ScaleImage"]["inputs"]
    assert scale["image"]["socket"] == "image" and scale["image"]["required"] is True
    assert scale["method"]["schema"]["enum"] == ["nearest", "bilinear", "bicubic", "lanczos"]
    assert scale["method"]["schema"]["default"] == "lanczos" and scale["multiple_of"]["schema"]["default"] == 8
    assert wire["PadImage"]["outputs"] == {"image": {"socket": "image"}, "mask": {"socket": "image"},
                                           "width": {"socket": "integer"}, "height": {"socket": "integer"}}
    width = wire["preset:sd15-inpaint"]["inputs"]["width"]
    assert fits("integer", width["socket"], width["schema"])  # the padded size wires into the inpaint preset's
    assert wire["PadImage"]["inputs"]["fill"]["schema"]["enum"][0] == "edge"
    mask_image = wire["preset:sd15-inpaint"]["inputs"]["mask_image"]
    assert fits(wire["PadImage"]["outputs"]["mask"]["socket"], mask_image["socket"], mask_image["schema"])


def hires(scale_by=2.0):
    return {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
        "t2i": {"type": "preset:sd15-text2image", "inputs": {
            "components": LOAD, "prompt": "a seven", "seed": 1, "num_inference_steps": STEPS}},
        "scale": {"type": "ScaleImage", "inputs": {"image": link("t2i", "images"), "scale_by": scale_by,
                                                   "method": "lanczos"}},
        "i2i": {"type": "preset:sd15-image2image", "inputs": {
            "components": LOAD, "image": link("scale", "image"), "prompt": "a seven", "seed": 2, "strength": 0.5,
            "num_inference_steps": STEPS}},
    }}


@pytest.mark.parametrize("inputs, name, phrase", [
    ({"method": "cubic"}, "method", "must be 'nearest', 'bilinear', 'bicubic' or 'lanczos', got 'cubic'"),
    ({"scale_by": 0}, "scale_by", "must be greater than 0"),
    ({"multiple_of": 0}, "multiple_of", "must be greater than or equal to 1"),
    ({"width": 2.5}, "width", "integer"),
])
def test_validation_refuses_a_bad_widget_naming_node_and_input(inputs, name, phrase):
    problems = validate(changed(hires(), "scale", **inputs))
    assert len(problems) == 1 and problems[0]["node"] == "scale" and problems[0]["input"] == name
    assert phrase in problems[0]["message"]


# --- on the embedded model ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def executor():
    return Executor(preview_every=0)


@pytest.fixture(scope="module")
def pipes():
    return {name: build_pipeline(getattr(stable_diffusion, f"{name.upper()}_BLOCKS"), embedded_model_path())
            for name in ("text2image", "image2image", "inpaint")}


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_hires_fix_equals_the_presets_called_with_the_same_resize_and_reuses_the_first_pass(executor, pipes):
    events = []
    outputs = executor.run(hires(), on_event=events.append)
    first = pipes["text2image"](prompt="a seven", num_inference_steps=STEPS, generator=seeded(1), output="images")
    size = (first[0].width * 2, first[0].height * 2)
    upscaled = [image.resize(size, Image.Resampling.LANCZOS) for image in first]
    expected = pipes["image2image"](prompt="a seven", image=upscaled, strength=0.5, num_inference_steps=STEPS,
                                    generator=seeded(2), output="images")
    final = outputs["i2i"]["images"]
    assert [image.size for image in final] == [size] and size[0] % 8 == 0
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(final, expected))

    events.clear()
    again = executor.run(hires(scale_by=1.5), on_event=events.append)
    assert {e["node"] for e in events if e["type"] == "node.started"} == {"scale", "i2i"}
    assert {"load", "t2i"} <= {e["node"] for e in events if e["type"] == "node.cached"}
    assert again["i2i"]["images"][0].size == (48, 48)  # 32 x 1.5


def test_outpaint_pad_into_the_inpaint_preset_equals_the_preset_called_in_python(executor, pipes):
    workflow = {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
        "t2i": {"type": "preset:sd15-text2image", "inputs": {
            "components": LOAD, "prompt": "a seven", "seed": 1, "num_inference_steps": STEPS}},
        "pad": {"type": "PadImage", "inputs": {"image": link("t2i", "images"), "left": 16, "right": 16}},
        # the inpaint preset paints at its width and height (the model's size unless given), not the image's
        "paint": {"type": "preset:sd15-inpaint", "inputs": {
            "components": LOAD, "image": link("pad", "image"), "mask_image": link("pad", "mask"),
            "prompt": "a seven", "seed": 3, "num_inference_steps": STEPS, "width": link("pad", "width"),
            "height": link("pad", "height")}},
    }}
    assert validate(workflow) == []
    painted = executor.run(workflow)["paint"]["images"]

    first = pipes["text2image"](prompt="a seven", num_inference_steps=STEPS, generator=seeded(1), output="images")
    original = np.asarray(first[0])
    padded = np.pad(original, ((0, 0), (16, 16), (0, 0)), mode="edge")
    mask = np.full(padded.shape[:2], 255, dtype=np.uint8)
    mask[:, 16:48] = 0
    expected = pipes["inpaint"](prompt="a seven", image=[Image.fromarray(padded)], mask_image=[Image.fromarray(mask)],
                                num_inference_steps=STEPS, generator=seeded(3), width=64, height=32, output="images")
    result = np.asarray(painted[0])
    assert painted[0].size == (64, 32) and np.array_equal(result, np.asarray(expected[0]))
    assert not np.array_equal(result[:, :16], padded[:, :16]) and not np.array_equal(result[:, 48:], padded[:, 48:])
