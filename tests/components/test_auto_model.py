"""AutoModel: the class of a component read from its own config, as the design document loads components."""

import json

import pytest
import torch
import transformers

from diffblocks.components import AutoModel, ComponentSpec, ComponentsManager
from diffblocks.components.models import AutoencoderKL, UNet2DConditionModel
from diffblocks.components.schedulers import DDIMScheduler
from diffblocks.modular_pipelines.errors import ComponentLoadError, NotInstantiableError, UnsupportedComponentError
from diffblocks.presets import embedded_model_path


@pytest.mark.parametrize("subfolder, cls", [
    ("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", transformers.CLIPTextModel),
    ("scheduler", DDIMScheduler),
])
def test_loads_the_class_the_config_names(subfolder, cls):
    component = AutoModel.from_pretrained(embedded_model_path(), subfolder=subfolder)
    assert type(component) is cls
    direct = ComponentSpec(subfolder, cls, repo=str(embedded_model_path()), subfolder=subfolder).load()
    if isinstance(component, torch.nn.Module):
        assert all(torch.equal(a, b) for a, b in zip(component.state_dict().values(), direct.state_dict().values()))
    else:
        assert dict(component.config) == dict(direct.config)
    assert ComponentSpec.from_component(subfolder, component).load_id == f"{embedded_model_path()}|{subfolder}|null|null"


def test_torch_dtype_reaches_models_and_is_ignored_for_schedulers():
    unet = AutoModel.from_pretrained(embedded_model_path(), subfolder="unet", torch_dtype=torch.float16)
    text_encoder = AutoModel.from_pretrained(embedded_model_path(), subfolder="text_encoder", torch_dtype=torch.float16)
    assert unet.dtype == torch.float16 and text_encoder.dtype == torch.float16
    assert isinstance(AutoModel.from_pretrained(embedded_model_path(), subfolder="scheduler", torch_dtype=torch.float16),
                      DDIMScheduler)


def test_as_a_spec_type_hint_it_loads_and_admits_the_loaded_class():
    spec = ComponentSpec("unet", AutoModel, repo=str(embedded_model_path()), subfolder="unet")
    unet = spec.load(torch_dtype=torch.float16)
    assert isinstance(unet, UNet2DConditionModel) and unet.dtype == torch.float16
    assert isinstance(unet, AutoModel) and not isinstance("text", AutoModel)
    # the manager spots a second load of the same files, whichever way it was loaded
    manager = ComponentsManager()
    manager.add("unet", unet)
    with pytest.warns(UserWarning, match="duplicate load_id"):
        manager.add("unet", AutoModel.from_pretrained(embedded_model_path(), subfolder="unet"))


def test_transformers_config_without_a_known_architecture_uses_transformers_automodel(tmp_path):
    source = embedded_model_path() / "text_encoder"
    target = tmp_path / "text_encoder"
    target.mkdir()
    config = json.loads((source / "config.json").read_text())
    config["architectures"] = ["NoSuchArchitecture"]
    (target / "config.json").write_text(json.dumps(config))
    for weights in source.glob("*.safetensors"):
        (target / weights.name).write_bytes(weights.read_bytes())
    assert isinstance(AutoModel.from_pretrained(tmp_path, subfolder="text_encoder"), transformers.CLIPTextModel)


def test_a_folder_whose_config_names_no_class_is_a_clear_error(tmp_path):
    with pytest.raises(ComponentLoadError) as err:
        AutoModel.from_pretrained(embedded_model_path(), subfolder="tokenizer")
    assert "cannot tell which class component 'tokenizer' is" in str(err.value)
    assert "config.json, scheduler_config.json" in str(err.value)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"_class_name": "NotAModel"}))
    with pytest.raises(UnsupportedComponentError, match="NotAModel"):
        AutoModel.from_pretrained(tmp_path, subfolder="odd")


def test_is_not_instantiated():
    with pytest.raises(NotInstantiableError, match="AutoModel.from_pretrained"):
        AutoModel()
