"""One read-only config type for every config-backed object, rebuilt when a value is recorded."""

import pytest
from diffblocks.components.config import FrozenConfig
from diffblocks.components.errors import ReadOnlyConfigError
from diffblocks.components.image_processor import VaeImageProcessor
from diffblocks.components.models import UNet2DConditionModel
from diffblocks.components.schedulers import DDIMScheduler
from diffblocks.guiders import ClassifierFreeGuidance
from diffblocks.presets import embedded_model_path


@pytest.fixture(params=["model", "scheduler", "guider", "image_processor"])
def component(request):
    def model():
        return UNet2DConditionModel.from_pretrained(embedded_model_path(), subfolder="unet")

    return {"model": model, "scheduler": DDIMScheduler, "guider": ClassifierFreeGuidance,
            "image_processor": VaeImageProcessor}[request.param]()


def test_every_config_is_the_one_frozen_type(component):
    config = component.config
    assert type(config) is FrozenConfig and config is component.config  # built once
    key = next(iter(config))
    assert getattr(config, key) is config[key]
    with pytest.raises(ReadOnlyConfigError, match="read-only"):
        config[key] = 1
    with pytest.raises(ReadOnlyConfigError, match="read-only"):
        config.update({key: 1})
    with pytest.raises(AttributeError, match="no key 'nope'"):
        config.nope


def test_recorded_values_show_in_a_new_config(component):
    before = component.config
    component.register_to_config(recorded=3)
    assert component.config.recorded == 3 and "recorded" not in before


def test_a_scheduler_from_another_scheduler_or_its_config_keeps_its_own_defaults_where_the_source_had_defaults():
    from diffblocks.components.schedulers import EulerDiscreteScheduler

    ddim = DDIMScheduler(beta_schedule="scaled_linear", timestep_spacing="trailing")
    for source in (ddim, ddim.config):  # the object itself or its config
        euler = EulerDiscreteScheduler.from_config(source)
        assert (euler.config.beta_schedule, euler.config.timestep_spacing) == ("scaled_linear", "trailing")
    saved = {"timestep_spacing": "leading", "beta_end": 0.5, "_use_default_values": ["timestep_spacing"]}
    euler = EulerDiscreteScheduler.from_config(saved)  # as diffusers: a key that was a default stays this class's
    assert (euler.config.timestep_spacing, euler.config.beta_end) == ("linspace", 0.5)


def test_a_scheduler_from_a_folder_takes_overrides_and_reads_at_the_revision(monkeypatch):
    scheduler = DDIMScheduler.from_pretrained(embedded_model_path(), subfolder="scheduler", timestep_spacing="trailing")
    assert scheduler.config.timestep_spacing == "trailing"
    asked = []
    monkeypatch.setattr(DDIMScheduler, "load_config", classmethod(
        lambda cls, path, subfolder=None, revision=None: asked.append((path, subfolder, revision)) or {}))
    DDIMScheduler.from_pretrained("me/repo", subfolder="scheduler", revision="v2")
    assert asked == [("me/repo", "scheduler", "v2")]
