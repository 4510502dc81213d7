"""What ``save_pretrained`` writes: the index entries and config files of each kind of component (referenced,
unloaded, made from a config, the blocks' own default), the block tree's class names and ``auto_map``, and
JSON files laid out as their classes write them; each read back by ``from_pretrained``."""

import json

import pytest
import torch
from toy_components import Scale, UsesScale

from diffblocks import ComponentSpec, ModularPipeline, ModularPipelineBlocks, SequentialPipelineBlocks
from diffblocks.components.config import ConfigMixin, register_to_config
from diffblocks.modular_pipelines.errors import ConfigError
from diffblocks.presets import stable_diffusion


class Plain:
    """A from_config part without ConfigMixin (no ``config``): its spec's config is what it was made with."""

    def __init__(self, zeta=1.0, alpha=0.0):
        self.zeta, self.alpha = zeta, alpha


class Blur(ConfigMixin, torch.nn.Module):
    """A torch module without weights: saved as its config."""

    @register_to_config
    def __init__(self, radius: int = 1):
        super().__init__()
        self.radius = radius


class Opaque:
    """Neither a config nor ``save_pretrained``: cannot be saved unless it comes from a repo."""


class ScaleSubclass(Scale):
    pass


class UsesParts(ModularPipelineBlocks):
    expected_components = [
        ComponentSpec("plain", Plain, config={"zeta": 1.0, "alpha": 0.0}, default_creation_method="from_config"),
        ComponentSpec("blur", Blur, config={"radius": 1}, default_creation_method="from_config"),
        ComponentSpec("opaque", Opaque),
    ]

    def __call__(self, components, state):
        return components, state


def read(folder, name):
    return json.loads((folder / name).read_text())


def test_a_plain_from_config_part_is_saved_as_its_config_and_made_again(tmp_path):
    pipe = UsesParts().init_pipeline()
    spec = pipe.get_component_spec("plain")
    pipe.update_components(plain=spec.create(zeta=3.0), blur=Blur(radius=3))
    pipe.save_pretrained(tmp_path / "saved")
    index = read(tmp_path / "saved", "modular_model_index.json")
    library = index["plain"][0]
    assert index["plain"][1:] == ["Plain", {"repo": ".", "subfolder": "plain", "type_hint": [library, "Plain"],
                                            "default_creation_method": "from_config", "config_file": "config.json"}]
    text = (tmp_path / "saved" / "plain" / "config.json").read_text()
    assert json.loads(text) == {"_class_name": "Plain", "alpha": 0.0, "zeta": 3.0}
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"  # as ConfigMixin writes configs
    assert read(tmp_path / "saved", "blur/config.json")["radius"] == 3

    loaded = ModularPipeline.from_pretrained(tmp_path / "saved", trust_remote_code=True)  # classes of block.py
    assert (type(loaded.plain).__name__, loaded.plain.zeta, loaded.plain.alpha) == ("Plain", 3.0, 0.0)
    assert (type(loaded.blur).__name__, loaded.blur.radius) == ("Blur", 3)


def test_from_config_parts_as_the_blocks_make_them_are_not_written(tmp_path):
    pipe = UsesParts().init_pipeline()
    pipe.update_components(plain=pipe.get_component_spec("plain").create(), blur=Blur(radius=1))
    pipe.save_pretrained(tmp_path / "saved")
    index = read(tmp_path / "saved", "modular_model_index.json")
    assert "plain" not in index and "blur" not in index
    assert not (tmp_path / "saved" / "plain").exists()


def test_a_part_changed_in_place_is_saved_with_its_change(sd_repo, tmp_path):
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(sd_repo)
    pipe.guider.enabled = False  # recorded in the guider's config, not in the spec it was made from
    pipe.save_pretrained(tmp_path / "saved")
    assert read(tmp_path / "saved", "guider/guider_config.json")["enabled"] is False
    assert ModularPipeline.from_pretrained(tmp_path / "saved").guider.enabled is False


def test_a_part_equal_to_its_class_default_is_still_saved_when_the_blocks_load_it(tmp_path):
    pipe = UsesScale().init_pipeline()
    pipe.update_components(scale=Scale(factor=2.0))  # the class default, but 'scale' is a from_pretrained part
    pipe.save_pretrained(tmp_path / "saved")
    loaded = ModularPipeline.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    assert loaded.scale is not None and loaded.scale.factor == 2.0
    assert loaded(x=3.0, output="y") == 6.5


def test_a_subclass_with_the_default_config_is_saved_as_itself(tmp_path):
    pipe = UsesScale().init_pipeline()
    pipe.update_components(offset=ScaleSubclass(factor=0.5))
    pipe.save_pretrained(tmp_path / "saved")
    entry = read(tmp_path / "saved", "modular_model_index.json")["offset"]
    assert entry[1] == "ScaleSubclass" and entry[2]["type_hint"][1] == "ScaleSubclass"
    assert read(tmp_path / "saved", "offset/config.json") == {"_class_name": "ScaleSubclass", "factor": 0.5}


def test_an_unloaded_part_is_listed_without_a_class(tmp_path):
    UsesScale().init_pipeline().save_pretrained(tmp_path / "saved")
    entry = read(tmp_path / "saved", "modular_model_index.json")["scale"]
    assert entry == [None, None, {"repo": None, "subfolder": None, "variant": None, "revision": None,
                                  "type_hint": ["toy_components", "Scale"]}]


def test_a_part_that_cannot_be_saved_is_named(tmp_path):
    pipe = UsesParts().init_pipeline()
    pipe.update_components(opaque=Opaque())
    with pytest.raises(ConfigError) as err:
        pipe.save_pretrained(tmp_path / "saved")
    assert str(err.value).startswith("cannot save component 'opaque' (Opaque): it has no repo to point to and no "
                                     "save_pretrained to write it with; give it as a ComponentSpec")


@pytest.mark.parametrize("root_is_custom", [True, False])
def test_block_tree_names_and_auto_map(tmp_path, root_is_custom):
    blocks = UsesScale() if root_is_custom else SequentialPipelineBlocks.from_blocks_dict({"scale": UsesScale})
    folder = tmp_path / "new" / "nested" / "saved"  # parent folders are made
    blocks.init_pipeline().save_pretrained(folder)
    config, index = read(folder, "modular_config.json"), read(folder, "modular_model_index.json")
    name = type(blocks).__name__
    assert config["_class_name"] == index["_class_name"] == name
    # auto_map names the root class only when block.py defines it (what diffusers imports from it)
    assert config.get("auto_map") == ({"ModularPipelineBlocks": "block.UsesScale"} if root_is_custom else None)
    assert "class UsesScale(" in (folder / "block.py").read_text()
    for filename in ("modular_config.json", "modular_model_index.json"):  # indented, in the order written
        text = (folder / filename).read_text()
        assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert list(index)[:2] == ["_class_name", "_diffblocks_version"]
    loaded = ModularPipeline.from_pretrained(folder, trust_remote_code=True)
    assert type(loaded.blocks).__name__ == name


def test_a_part_made_from_a_spec_with_a_repo_is_saved_as_made(tmp_path):
    from toy_components import write_modular_index, write_scale_repo

    weights = write_scale_repo(tmp_path / "weights", 3.0)
    repo = write_modular_index(tmp_path / "src", {"scale": [None, None, {"repo": str(weights), "subfolder": "scale"}]})
    pipe = UsesScale().init_pipeline(repo)
    pipe.update_components(scale=pipe.get_component_spec("scale").create(factor=5.0))  # made, not loaded
    pipe.save_pretrained(tmp_path / "saved")
    assert read(tmp_path / "saved", "modular_model_index.json")["scale"][2]["default_creation_method"] == "from_config"
    assert ModularPipeline.from_pretrained(tmp_path / "saved", trust_remote_code=True).scale.factor == 5.0
