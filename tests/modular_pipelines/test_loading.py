"""ModularPipeline loading: specs read at init, weights in load_components, failures collected."""

import json
import logging

import pytest
from toy_components import Scale, UsesScale, write_modular_index, write_scale_repo

from diffblocks import ComponentsManager, ComponentSpec, ModularPipeline
from diffblocks.modular_pipelines.errors import (
    ComponentLoadError,
    ComponentNotFoundError,
    MissingFileError,
    UnsupportedComponentError,
)


def modular_repo(tmp_path, factor=3.0, extra=None):
    weights = write_scale_repo(tmp_path / "weights", factor)
    index = {"scale": [None, None, {"repo": str(weights), "subfolder": "scale", "variant": None, "revision": None}]}
    index.update(extra or {})
    return write_modular_index(tmp_path / "modular", index)


def test_specs_are_read_at_init_and_weights_load_later(tmp_path):
    pipe = UsesScale().init_pipeline(modular_repo(tmp_path))
    assert pipe.component_names == ["scale", "offset"]
    assert pipe.null_component_names == ["scale"]
    assert pipe.pretrained_component_names == ["scale"]
    assert pipe.config_component_names == ["offset"]
    assert pipe.scale is None and pipe.offset.factor == 0.5
    assert pipe.get_component_spec("scale").subfolder == "scale"
    pipe.load_components()
    assert pipe.null_component_names == []
    assert pipe(x=2.0, output="y") == 6.5


def test_loaded_component_remembers_its_spec(tmp_path):
    pipe = UsesScale().init_pipeline(modular_repo(tmp_path))
    pipe.load_components()
    spec = ComponentSpec.from_component("scale", pipe.scale)
    assert spec.repo == str(tmp_path / "weights") and spec.load_id.endswith("|scale|null|null")
    assert spec.load().factor == 3.0


def test_get_component_spec_is_a_copy(tmp_path):
    pipe = UsesScale().init_pipeline(modular_repo(tmp_path))
    spec = pipe.get_component_spec("scale")
    spec.repo = "elsewhere"
    assert pipe.get_component_spec("scale").repo != "elsewhere"


def test_update_components_with_objects_specs_and_creation_method_change(tmp_path, caplog):
    pipe = UsesScale().init_pipeline(modular_repo(tmp_path))
    spec = pipe.get_component_spec("offset")
    pipe.update_components(offset=spec.create(factor=1.5))
    assert pipe.offset.factor == 1.5 and pipe.get_component_spec("offset").config["factor"] == 1.5
    spec = pipe.get_component_spec("offset")
    spec.config["factor"] = 10
    pipe.update_components(offset=spec)
    assert pipe.offset.factor == 10
    other = write_scale_repo(tmp_path / "other", 7.0, subfolder="off")
    with caplog.at_level(logging.INFO, logger="diffblocks"):
        pipe.update_components(offset=ComponentSpec("offset", Scale, repo=str(other), subfolder="off"))
    assert "changing the default_creation_method of offset from from_config to from_pretrained" in caplog.text
    assert pipe.offset.factor == 7.0 and pipe.pretrained_component_names == ["scale", "offset"]
    with pytest.raises(ComponentNotFoundError, match="did you mean offset"):
        pipe.update_components(ofset=1)


def test_failed_load_keeps_the_others_and_says_which_failed(tmp_path):
    repo = modular_repo(tmp_path)
    index = json.loads((repo / "modular_model_index.json").read_text())
    index["offset"] = [None, None, {"repo": str(tmp_path / "missing"), "subfolder": "x"}]
    (repo / "modular_model_index.json").write_text(json.dumps(index))
    pipe = UsesScale().init_pipeline(repo)
    with pytest.raises(ComponentLoadError) as err:
        pipe.load_components()
    assert "offset: MissingFileError" in str(err.value) and "loaded: scale" in str(err.value)
    assert pipe.scale.factor == 3.0
    # the first one failing: the ones after it still load
    write_scale_repo(tmp_path / "good", 7.0, subfolder="x")
    index["scale"], index["offset"] = index["offset"], [None, None, {"repo": str(tmp_path / "good"), "subfolder": "x"}]
    (repo / "modular_model_index.json").write_text(json.dumps(index))
    pipe = UsesScale().init_pipeline(repo)
    with pytest.raises(ComponentLoadError) as err:
        pipe.load_components()
    assert "scale: MissingFileError" in str(err.value) and pipe.offset.factor == 7.0


def test_same_manager_shares_components(tmp_path):
    repo = modular_repo(tmp_path)
    manager = ComponentsManager()
    first = UsesScale().init_pipeline(repo, components_manager=manager, collection="a")
    first.load_components()
    second = ModularPipeline(UsesScale(), repo, components_manager=manager, collection="b")
    second.load_components()
    assert second.scale is first.scale
    scale_id = manager.get_ids("scale")[0]
    assert scale_id in manager.collections["a"] and scale_id in manager.collections["b"]  # each pipeline's tag


def test_missing_index_names_what_was_looked_for(tmp_path):
    with pytest.raises(MissingFileError, match="modular_model_index.json.*model_index.json"):
        UsesScale().init_pipeline(tmp_path)


def test_unsupported_class_lists_supported(tmp_path):
    from diffblocks.components.registry import resolve_class

    with pytest.raises(UnsupportedComponentError, match="diffusers.PNDMScheduler; supported: .*EulerDiscreteScheduler"):
        resolve_class("diffusers", "PNDMScheduler")


def test_a_transformers_processor_keeps_its_spec_out_of_its_saved_config(tmp_path):
    """Image processors write their whole ``__dict__`` into ``preprocessor_config.json`` (and their repr): the
    spec and load id a component remembers must not land there, yet ``from_component`` still finds them."""
    from transformers import CLIPImageProcessorPil

    from diffblocks.components.spec import load_id_of, mark_changed, revision_of

    spec = ComponentSpec(name="feature_extractor", type_hint=CLIPImageProcessorPil, config={"crop_size": 96},
                         default_creation_method="from_config")
    made = spec.create()
    assert "crop_size" in repr(made)
    made.save_pretrained(tmp_path / "fe")
    saved = json.loads((tmp_path / "fe" / "preprocessor_config.json").read_text())
    assert not [key for key in saved if key.startswith("_diffblocks")] and saved["crop_size"]["height"] == 96
    back = ComponentSpec.from_component("fe", made)
    assert (back.name, back.type_hint, back.default_creation_method) == ("fe", CLIPImageProcessorPil, "from_config")

    loaded = ComponentSpec(name="fe", type_hint=CLIPImageProcessorPil, repo=str(tmp_path), subfolder="fe").load()
    assert load_id_of(loaded) == ComponentSpec.from_component("fe", loaded).load_id and load_id_of(made) is None
    mark_changed(loaded)
    assert (revision_of(loaded), revision_of(made)) == (1, 0)
    loaded.save_pretrained(tmp_path / "again")
    assert "_diffblocks" not in (tmp_path / "again" / "preprocessor_config.json").read_text()


def test_load_components_gives_shared_and_per_component_arguments_to_each_loader():
    import torch

    from diffblocks import SequentialPipelineBlocks
    from diffblocks.presets import embedded_model_path, stable_diffusion

    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(
        embedded_model_path())
    pipe.load_components(names=["vae", "unet"], torch_dtype=torch.float16, unet={"torch_dtype": torch.bfloat16})
    assert pipe.vae.dtype == torch.float16 and pipe.unet.dtype == torch.bfloat16  # its own arguments win
    pipe.load_components(names="text_encoder", vae={"torch_dtype": torch.float16})
    assert pipe.text_encoder.dtype == torch.float32  # another's arguments are not given


@pytest.mark.parametrize("value", [None, "fp16"])
def test_load_components_refuses_a_component_argument_that_is_not_a_dict_before_loading(value):
    from diffblocks import SequentialPipelineBlocks
    from diffblocks.components.errors import LoaderArgumentsError
    from diffblocks.presets import embedded_model_path, stable_diffusion

    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(
        embedded_model_path())
    with pytest.raises(LoaderArgumentsError) as caught:
        pipe.load_components(names=["vae", "text_encoder"], text_encoder=value)
    assert str(caught.value) == (
        f"load_components: text_encoder= takes a dict of the arguments for loading 'text_encoder' (e.g. "
        f"text_encoder={{'torch_dtype': torch.float16}}), got {value!r} ({type(value).__name__}); nothing was "
        f"loaded. To set the component itself, use update_components(text_encoder=...)")
    assert pipe.vae is None and pipe.text_encoder is None  # nothing loaded
