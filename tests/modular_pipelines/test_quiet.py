"""Documented actions are quiet: a README-style session prints nothing and logs nothing at WARNING; real
surprises still warn. Also: a spec of a part made from config shows the whole config."""

import logging
import warnings

import pytest
import torch

from diffblocks import ComponentsManager, SequentialPipelineBlocks
from diffblocks.components.schedulers import EulerDiscreteScheduler
from diffblocks.guiders import PerturbedAttentionGuidance
from diffblocks.presets import embedded_model_path
from diffblocks.presets.stable_diffusion import IMAGE2IMAGE_BLOCKS, TEXT2IMAGE_BLOCKS


def readme_session():
    manager = ComponentsManager()
    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(
        embedded_model_path(), components_manager=manager, collection="digits")
    pipe.load_components()
    pipe.update_components(scheduler=EulerDiscreteScheduler.from_config(pipe.scheduler.config))
    pipe.update_components(guider=pipe.get_component_spec("guider").create(guidance_scale=3.0))
    pipe.update_components(guider=PerturbedAttentionGuidance(guidance_scale=5.0, perturbed_guidance_layers=[0]))
    image2image = SequentialPipelineBlocks.from_blocks_dict(IMAGE2IMAGE_BLOCKS).init_pipeline(
        embedded_model_path(), components_manager=manager, collection="digits")
    image2image.update_components(**pipe.components)
    return pipe, image2image


def test_readme_session_prints_and_warns_nothing(caplog, capfd):
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe, image2image = readme_session()
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no "Loading weights" bars either
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    # python hides DeprecationWarnings of library code; nothing else may be raised
    assert [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)] == []
    # the swaps are still told at INFO, in the design document's words, and only those that change something
    prefix = "ModularPipeline.update_components: "
    told = [r.getMessage().removeprefix(prefix) for r in caplog.records if r.getMessage().startswith(prefix)]
    scheduler_made = "changing the default_creation_method of scheduler from from_pretrained to from_config"
    to_pag = "adding guider with new type: PerturbedAttentionGuidance, previous type: ClassifierFreeGuidance"
    assert told == ["adding scheduler with new type: EulerDiscreteScheduler, previous type: DDIMScheduler",
                    scheduler_made, to_pag,  # the guider of the same class before PAG is not told
                    scheduler_made, to_pag]  # image2image had no scheduler loaded: no "new type" for it
    assert image2image.guider is pipe.guider and image2image.unet is pipe.unet


def test_a_model_of_an_unexpected_class_still_warns(caplog):
    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(embedded_model_path())
    pipe.load_components(names=["unet"])
    with caplog.at_level(logging.WARNING):
        pipe.update_components(unet=torch.nn.Linear(1, 1))
    assert "'unet' is now a Linear, but the blocks expect a UNet2DConditionModel" in caplog.text


def test_transformers_progress_bars_are_only_quiet_inside_our_loads(capfd):
    import transformers

    from diffblocks.components import AutoModel

    # as in a fresh process (the CLI's commands, run in this one by other tests, turn them off for good)
    transformers.utils.logging.enable_progress_bar()
    AutoModel.from_pretrained(embedded_model_path(), subfolder="text_encoder")
    assert "Loading weights" not in capfd.readouterr().err
    transformers.CLIPTextModel.from_pretrained(embedded_model_path(), subfolder="text_encoder")
    err = capfd.readouterr().err
    if transformers.utils.logging.is_progress_bar_enabled() and "Loading weights" not in err:
        pytest.skip("this transformers version shows no loading bar")
    assert "Loading weights" in err


def test_guider_spec_shows_its_whole_config():
    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(embedded_model_path())
    spec = pipe.get_component_spec("guider")
    assert spec.default_creation_method == "from_config"
    assert {"guidance_scale": 7.5, "guidance_rescale": 0.0, "use_original_formulation": False, "start": 0.0,
            "stop": 1.0}.items() <= spec.config.items()
    assert "'guidance_rescale': 0.0" in repr(spec) and "'stop': 1.0" in repr(spec)
    assert spec.create(guidance_scale=10).guidance_rescale == 0.0


def test_a_swap_is_told_when_the_class_changes_and_warns_against_the_declared_class(caplog):
    from diffblocks import ComponentSpec, ModularPipelineBlocks

    class UsesNets(ModularPipelineBlocks):
        expected_components = [ComponentSpec("net", torch.nn.Linear), ComponentSpec("free")]  # "free": no class

        def __call__(self, components, state):
            return components, state

    pipe = UsesNets().init_pipeline()
    with caplog.at_level(logging.INFO):
        pipe.update_components(net=torch.nn.Linear(1, 1), free=torch.nn.Linear(1, 1))  # nothing there before
        pipe.update_components(net=torch.nn.Linear(2, 2))  # the same class again
        assert "type" not in caplog.text and "expect" not in caplog.text
        pipe.update_components(net=torch.nn.Conv1d(1, 1, 1))
        caplog.clear()
        pipe.update_components(net=torch.nn.Conv2d(1, 1, 1), free=torch.nn.Conv1d(1, 1, 1))
    warnings_ = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings_ == [  # against the declared class, not the Conv1d there; without one, against the one there
        "ModularPipeline.update_components: 'net' is now a Conv2d, but the blocks expect a Linear; "
        "the blocks that use it may fail",
        "ModularPipeline.update_components: 'free' is now a Conv1d, but the blocks expect a Linear; "
        "the blocks that use it may fail"]
