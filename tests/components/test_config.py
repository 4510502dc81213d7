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
