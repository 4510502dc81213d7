"""The family Auto blocks, each declared once as ``choices = {name: (block, trigger)}``: what they pick, and that
saved repos still find them by ``module:qualname``."""

import importlib
import inspect

import pytest

from diffblocks.blocks import stable_diffusion, stable_diffusion_xl
from diffblocks.modular_pipelines import AutoPipelineBlocks
from diffblocks.modular_pipelines.errors import BlockDeclarationError

AUTO_CLASSES = sorted(
    {cls for family in (stable_diffusion, stable_diffusion_xl) for _, cls in inspect.getmembers(family, inspect.isclass)
     if issubclass(cls, AutoPipelineBlocks)}, key=lambda cls: cls.__name__)

# branch -> trigger of every family Auto block, as they were declared before ``choices`` (None: the default)
IMAGE_WORKFLOWS = {"inpaint": "mask_image", "img2img": "image", "text2img": None}
EXPECTED = {
    "AutoControlNetDenoiseStep": {"controlnet_denoise": "control_image", "denoise": None},
    "AutoControlNetInputStep": {"controlnet_input": "control_image"},
    "AutoDecodeStep": {"inpaint": "padding_mask_crop", "decode": None},
    "AutoDenoiseStep": {"controlnet": "control_image", "inpaint": "mask_image", "denoise": None},
    "AutoInpaintControlNetDenoiseStep": {"inpaint": "mask_image", "controlnet_denoise": None},
    "AutoIPAdapterStep": {"ip_adapter": "ip_adapter_image", "from_embeds": "ip_adapter_embeds"},
    "AutoPrepareAdditionalConditioningStep": {"img2img": "image", "text2img": None},
    "AutoPrepareLatentsStep": IMAGE_WORKFLOWS,
    "AutoSetTimestepsStep": IMAGE_WORKFLOWS,
    "AutoVaeEncoderStep": {"inpaint": "mask_image", "img2img": "image"},
}


def test_every_family_auto_block_is_covered():
    names = {cls.__name__.removeprefix("StableDiffusionXL").removeprefix("StableDiffusion") for cls in AUTO_CLASSES}
    assert names == set(EXPECTED) and len(AUTO_CLASSES) == 19


@pytest.mark.parametrize("cls", AUTO_CLASSES, ids=lambda cls: cls.__name__)
def test_choices_give_the_branches_and_triggers(cls):
    short = cls.__name__.removeprefix("StableDiffusionXL").removeprefix("StableDiffusion")
    block = cls()
    assert block.trigger_map == EXPECTED[short] == {name: trigger for name, (_, trigger) in cls.choices.items()}
    assert [type(b) for b in block.sub_blocks.values()] == [b for b, _ in cls.choices.values()]
    xl = cls.__name__.startswith("StableDiffusionXL")
    assert all(type(b).__name__.startswith("StableDiffusionXL") == xl for b in block.sub_blocks.values())
    module = importlib.import_module(cls.__module__)  # how a saved repo finds it: "module:qualname"
    package = "stable_diffusion_xl" if xl else "stable_diffusion"
    assert getattr(module, cls.__qualname__) is cls and cls.__module__.startswith(f"diffblocks.blocks.{package}.")


def test_the_design_doc_names_stay_importable_where_they_were():
    from diffblocks.blocks.stable_diffusion_xl.controlnet import StableDiffusionXLAutoControlNetInputStep
    from diffblocks.blocks.stable_diffusion_xl.encoders import StableDiffusionXLAutoIPAdapterStep

    assert StableDiffusionXLAutoIPAdapterStep().select({"ip_adapter_embeds": [1]})[0] == "from_embeds"
    assert StableDiffusionXLAutoControlNetInputStep().select({}) is None  # no default: skipped


def test_a_choice_that_is_not_a_block_and_trigger_pair_is_refused():
    with pytest.raises(BlockDeclarationError, match=r"Bad: choices must map each branch name to a \(block, trigger"):
        class Bad(AutoPipelineBlocks):
            choices = {"only": stable_diffusion.StableDiffusionDecodeStep}


def test_two_default_branches_are_refused():
    class TwoDefaults(AutoPipelineBlocks):
        choices = {"a": (stable_diffusion.StableDiffusionDecodeStep, None),
                   "b": (stable_diffusion.StableDiffusionDecodeStep, None)}

    with pytest.raises(BlockDeclarationError, match=r"TwoDefaults: needs one trigger input per branch \(2\), with at "
                                                    r"most one None"):
        TwoDefaults()


@pytest.mark.parametrize("family, prefix", [("stable_diffusion", "StableDiffusion"),
                                            ("stable_diffusion_xl", "StableDiffusionXL"), ("flux", "Flux")])
def test_a_tree_saved_when_the_auto_denoise_step_lived_in_denoise_py_rebuilds_as_it_was(family, prefix):
    """The Auto denoise step moved to controlnet.py when it gained the ControlNet branch. A repo saved before names
    it in denoise.py with its two branches: it rebuilds, untrusted, with those two branches and their triggers."""
    import json

    from diffblocks.modular_pipelines.remote import build_tree, tree_of

    auto = getattr(importlib.import_module(f"diffblocks.blocks.{family}"), f"{prefix}AutoDenoiseStep")
    tree = tree_of(auto())
    assert tree["class"] == f"diffblocks.blocks.{family}.controlnet:{prefix}AutoDenoiseStep"
    tree["class"] = f"diffblocks.blocks.{family}.denoise:{prefix}AutoDenoiseStep"
    tree["sub_blocks"].pop("controlnet")
    tree["triggers"] = ["mask_image", None]
    rebuilt = build_tree(json.loads(json.dumps(tree)))
    assert type(rebuilt) is auto and rebuilt.trigger_map == {"inpaint": "mask_image", "denoise": None}
    assert type(rebuilt.select({"mask_image": object()})[1]).__name__ == f"{prefix}InpaintDenoiseStep"
