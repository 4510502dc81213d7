"""A modular repo holding only ``modular_model_index.json`` named after a diffusers modular pipeline
(``StableDiffusionXLModularPipeline``) gets the family's AUTO_BLOCKS, as a standard repo does."""

import json

import pytest
import torch

from diffblocks import ModularPipeline, SequentialPipelineBlocks
from diffblocks.modular_pipelines.errors import ConfigError


def modular_index_for(standard_repo, target, class_name):
    """A modular index, as diffusers writes it, whose entries point at the parts of ``standard_repo``."""
    standard = json.loads((standard_repo / "model_index.json").read_text())
    index = {"_class_name": class_name, "_diffusers_version": "0.35.0"}
    for name, value in standard.items():
        if name.startswith("_") or not isinstance(value, list) or value[1] is None:
            continue
        index[name] = [value[0], value[1], {"repo": str(standard_repo), "subfolder": name, "variant": None,
                                            "revision": None, "type_hint": list(value)}]
    target.mkdir()
    (target / "modular_model_index.json").write_text(json.dumps(index))
    return target


@pytest.mark.parametrize("fixture, class_name, preset", [
    ("sdxl_repo", "StableDiffusionXLModularPipeline", "stable_diffusion_xl"),
    ("sd_repo", "StableDiffusionModularPipeline", "stable_diffusion"),
])
def test_modular_pipeline_names_map_to_the_family_preset(request, tmp_path, fixture, class_name, preset):
    import importlib

    standard = request.getfixturevalue(fixture)
    repo = modular_index_for(standard, tmp_path / "modular", class_name)
    pipe = ModularPipeline.from_pretrained(repo)
    auto = getattr(importlib.import_module(f"diffblocks.presets.{preset}"), "AUTO_BLOCKS")
    assert repr(pipe.blocks) == repr(SequentialPipelineBlocks.from_blocks_dict(auto))
    assert pipe.get_component_spec("unet").load_id == f"{standard}|unet|null|null"

    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    reference = ModularPipeline.from_pretrained(standard)
    reference.load_components()
    reference.set_progress_bar_config(disable=True)
    run = dict(prompt="a pear", num_inference_steps=2, output_type="pt", output="images")
    ours = pipe(generator=torch.Generator().manual_seed(0), **run)
    expected = reference(generator=torch.Generator().manual_seed(0), **run)
    assert torch.equal(ours, expected)


def test_unknown_modular_pipeline_name_lists_the_supported_ones(tmp_path):
    repo = tmp_path / "m"
    repo.mkdir()
    (repo / "modular_model_index.json").write_text(json.dumps({"_class_name": "FluxModularPipeline"}))
    with pytest.raises(ConfigError) as err:
        ModularPipeline.from_pretrained(repo)
    assert "FluxModularPipeline" in str(err.value) and "StableDiffusionXLModularPipeline" in str(err.value)


def test_index_entries_typed_automodel_load_the_class_their_config_names(tmp_path):
    from diffblocks.components import AutoModel
    from diffblocks.components.models import UNet2DConditionModel
    from diffblocks.presets import embedded_model_path
    from diffblocks.presets.stable_diffusion import TEXT2IMAGE_BLOCKS

    repo = tmp_path / "m"
    repo.mkdir()
    entry = {"repo": str(embedded_model_path()), "subfolder": "unet", "type_hint": ["diffusers", "AutoModel"]}
    (repo / "modular_model_index.json").write_text(json.dumps({"unet": [None, None, entry]}))
    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(repo)
    assert pipe.get_component_spec("unet").type_hint is AutoModel
    pipe.load_components(names=["unet"])
    assert isinstance(pipe.unet, UNet2DConditionModel)
    pipe.update_components(unet=pipe.unet)  # a spec typed AutoModel admits the model it loaded
    pipe.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "modular_model_index.json").read_text())
    assert saved["unet"][:2] == ["diffusers", "UNet2DConditionModel"]
