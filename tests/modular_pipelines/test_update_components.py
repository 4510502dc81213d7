"""update_components checks each given object against the type its spec expects, before changing anything."""

import pytest
from transformers import CLIPTokenizer

from diffblocks import ComponentSpec, ModularPipelineBlocks, SequentialPipelineBlocks
from diffblocks.components.image_processor import MaskImageProcessor, VaeImageProcessor
from diffblocks.components.schedulers import DDIMScheduler, EulerDiscreteScheduler
from diffblocks.guiders import ClassifierFreeGuidance, PerturbedAttentionGuidance
from diffblocks.modular_pipelines.errors import ComponentTypeError
from diffblocks.presets import embedded_model_path, stable_diffusion, stable_diffusion_xl


@pytest.fixture(scope="module")
def loaded():
    """The SD 1.5 AUTO_BLOCKS on the embedded model, every component loaded."""
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.AUTO_BLOCKS).init_pipeline(embedded_model_path())
    pipe.load_components()
    return pipe


@pytest.fixture
def pipe(loaded):
    """A fresh pipeline sharing the loaded components (tests change its components freely)."""
    fresh = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.AUTO_BLOCKS).init_pipeline(embedded_model_path())
    fresh.update_components(**{n: c for n, c in loaded.components.items() if c is not None})
    return fresh


def test_a_string_as_unet_is_refused_and_named(pipe):
    unet = pipe.unet
    with pytest.raises(ComponentTypeError) as err:
        pipe.update_components(unet="not a model")
    text = str(err.value)
    assert "component 'unet' expects UNet2DConditionModel (or any torch.nn.Module), got 'not a model' (str)" in text
    assert "Nothing was changed" in text
    assert pipe.unet is unet


def test_a_scheduler_as_vae_is_refused(pipe):
    expected = r"'vae' expects AutoencoderKL \(or any torch.nn.Module\), got DDIMScheduler\(\.\.\.\) \(DDIMScheduler\)"
    with pytest.raises(ComponentTypeError, match=expected):
        pipe.update_components(vae=DDIMScheduler.from_config(pipe.scheduler.config))
    assert pipe.get_component_spec("vae").type_hint.__name__ == "AutoencoderKL"


def test_nothing_changes_when_one_value_is_refused(pipe):
    guider, scheduler = pipe.guider, pipe.scheduler
    euler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ComponentTypeError) as err:
        pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=3.0), scheduler=euler, unet=1,
                               tokenizer=pipe.unet)
    text = str(err.value)
    assert "'unet' expects UNet2DConditionModel" in text and "got 1 (int)" in text
    assert "'tokenizer' expects CLIPTokenizer (or any transformers.PreTrainedTokenizerBase)" in text
    assert "'guider'" not in text and "'scheduler'" not in text  # only the refused ones are listed
    assert pipe.guider is guider and pipe.scheduler is scheduler
    assert pipe.get_component_spec("scheduler").type_hint is DDIMScheduler


def test_another_scheduler_or_guider_class_is_a_fine_swap_and_back(pipe):
    pipe.update_components(scheduler=EulerDiscreteScheduler.from_config(pipe.scheduler.config))
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
    pipe.update_components(scheduler=DDIMScheduler.from_config(pipe.scheduler.config))  # spec is Euler's now
    assert isinstance(pipe.scheduler, DDIMScheduler)
    pipe.update_components(guider=PerturbedAttentionGuidance(perturbed_guidance_layers=[0]))
    pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=5.0))
    assert pipe.guider.guidance_scale == 5.0
    with pytest.raises(ComponentTypeError, match="'guider' expects ClassifierFreeGuidance \\(or any BaseGuidance\\)"):
        pipe.update_components(guider=pipe.scheduler)


def test_subclasses_none_and_specs_are_accepted(pipe):
    pipe.update_components(image_processor=MaskImageProcessor(vae_scale_factor=8))  # a VaeImageProcessor subclass
    assert isinstance(pipe.image_processor, MaskImageProcessor)
    with pytest.raises(ComponentTypeError, match="'mask_processor' expects MaskImageProcessor, got"):
        pipe.update_components(mask_processor=VaeImageProcessor(vae_scale_factor=8))  # not the other way round
    pipe.update_components(unet=None)
    assert pipe.unet is None and "unet" in pipe.null_component_names
    spec = pipe.get_component_spec("guider")
    pipe.update_components(guider=spec)
    assert isinstance(pipe.guider, ClassifierFreeGuidance)


def test_config_values_are_not_type_checked():
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion_xl.TEXT2IMAGE_BLOCKS).init_pipeline()
    pipe.update_components(force_zeros_for_empty_prompt=False)
    assert pipe.force_zeros_for_empty_prompt is False


class UsesThings(ModularPipelineBlocks):
    """A block whose specs use every kind of type hint."""

    expected_components = [
        ComponentSpec("by_name", "DDIMScheduler"),
        ComponentSpec("tokenizer_by_name", "transformers.CLIPTokenizer"),
        ComponentSpec("either", (int, str)),
        ComponentSpec("union", int | CLIPTokenizer),
        ComponentSpec("anything"),
    ]

    def __call__(self, components, state):
        return components, state


@pytest.mark.parametrize("name, good, bad", [
    ("by_name", lambda p: EulerDiscreteScheduler(), VaeImageProcessor()),
    ("tokenizer_by_name", lambda p: p.tokenizer, DDIMScheduler()),
    ("either", lambda p: "text", 1.5),
    ("union", lambda p: 3, "text"),
    ("union", lambda p: p.tokenizer, 1.5),
])
def test_string_tuple_and_union_hints(loaded, name, good, bad):
    pipe = UsesThings().init_pipeline()
    good = good(loaded)
    pipe.update_components(**{name: good})
    assert pipe.components[name] is good
    with pytest.raises(ComponentTypeError, match=f"'{name}' expects"):
        pipe.update_components(**{name: bad})
    pipe.update_components(anything=object())


@pytest.mark.parametrize("name, bad, expected", [
    ("either", 1.5, "'either' expects int or str, got 1.5 (float)."),
    ("union", "text", "'union' expects int or CLIPTokenizer (or any transformers.PreTrainedTokenizerBase), got 'text' (str)."),
    ("by_name", VaeImageProcessor(), "'by_name' expects DDIMScheduler, got VaeImageProcessor(...) (VaeImageProcessor)."),
])
def test_the_refusal_names_each_accepted_type(name, bad, expected):
    with pytest.raises(ComponentTypeError) as err:
        UsesThings().init_pipeline().update_components(**{name: bad})
    assert f"update_components: component {expected} Nothing was changed" in str(err.value)


def test_a_class_named_by_a_string_is_looked_up_in_diffusers_then_transformers():
    import torch

    from diffblocks.modular_pipelines.components_mixin import fits

    # not the named class, but of its kind (any torch module may stand in for a model)
    assert fits("CLIPVisionModelWithProjection", torch.nn.Linear(1, 1))  # a transformers class
    assert fits("AutoencoderKL", torch.nn.Linear(1, 1))  # a diffusers class
    assert not fits("CLIPVisionModelWithProjection", "text") and not fits("NoSuchClass", torch.nn.Linear(1, 1))


def test_a_class_named_by_a_string_fits_an_object_of_that_name_or_a_subclass_before_any_lookup():
    from diffblocks.modular_pipelines.components_mixin import fits

    class Tokenizer:  # in no library: only the names in its class hierarchy can match
        pass

    class Special(Tokenizer):
        pass

    assert fits("Tokenizer", Tokenizer()) and fits("Special", Special()) and fits("Tokenizer", Special())
    assert fits("some.module.path.Tokenizer", Tokenizer())  # a dotted path: its last part is the name
    assert not fits("Special", Tokenizer()) and not fits("Tokenizer.Special", Tokenizer())


def test_config_values_and_components_are_checked_and_changed_in_one_call_in_any_order():
    from diffblocks import ConfigSpec

    class Configured(ModularPipelineBlocks):
        expected_components = [ComponentSpec("scheduler", DDIMScheduler, default_creation_method="from_config"),
                               ComponentSpec("guider", ClassifierFreeGuidance, default_creation_method="from_config")]
        expected_configs = [ConfigSpec("size", 64)]

        def __call__(self, components, state):
            return components, state

    pipe = Configured().init_pipeline()
    euler = EulerDiscreteScheduler()
    with pytest.raises(ComponentTypeError, match="'guider' expects"):  # a config value first: still checked
        pipe.update_components(size=32, scheduler=euler, guider=euler)
    assert pipe.size == 64 and pipe.scheduler is not euler
    pipe.update_components(size=32, scheduler=euler)  # a config value first: the component is set too
    assert pipe.size == 32 and pipe.scheduler is euler
    made = ComponentSpec("another_name", ClassifierFreeGuidance, config={"guidance_scale": 2.0},
                         default_creation_method="from_config")
    pipe.update_components(guider=made)  # a spec is made under the component's name, not its own
    assert pipe.guider.guidance_scale == 2.0 and pipe.get_component_spec("guider").name == "guider"


def test_a_typing_construct_as_a_hint_is_not_checked():
    import typing

    from diffblocks.modular_pipelines.components_mixin import fits

    assert fits(list[int], [1]) and fits(typing.Callable, print) and fits(dict[str, int], "unchecked")


def test_the_progress_bar_wraps_an_iterable_as_tqdm_does(pipe):
    pipe.set_progress_bar_config(disable=True)
    assert list(pipe.progress_bar(range(3))) == [0, 1, 2]
    assert pipe.progress_bar(total=5).total == 5


def test_a_pipeline_not_yet_initialised_has_no_component_attributes():
    import copy

    from diffblocks import ModularPipeline

    blank = ModularPipeline.__new__(ModularPipeline)  # as copy and pickle make one, before any state is set
    assert not hasattr(blank, "unet") and not hasattr(blank, "guidance_scale")
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(
        embedded_model_path())
    assert copy.copy(pipe).get_component_spec("unet") == pipe.get_component_spec("unet")  # copy asks first
