"""Guider configs: JSON round trips, from_config, class dispatch and push_to_hub (upload monkeypatched)."""

import dataclasses
import json

import pytest

import diffblocks.guiders as gd
from diffblocks.modular_pipelines.errors import ConfigError, GuiderError

NEEDS = {
    "PerturbedAttentionGuidance": {"perturbed_guidance_layers": [2, 9]},
    "SkipLayerGuidance": {"skip_layer_guidance_layers": 7},
    "SmoothedEnergyGuidance": {"seg_guidance_config": {"indices": [0], "fqn": "transformer_blocks"}},
    "AutoGuidance": {"auto_guidance_layers": [1], "dropout": 0.1},
    "FrequencyDecoupledGuidance": {"guidance_scales": (8.0, 4.0), "start": [0.0, 0.1]},
    "AdaptiveProjectedGuidance": {"adaptive_projected_guidance_norm_dim": (1, 2)},
}


def _pag():
    configs = [
        gd.LayerSkipConfig(indices=[2, 9], fqn="mid_block.attentions.0.transformer_blocks", skip_attention=False,
                           skip_attention_scores=True, skip_ff=False),
        gd.LayerSkipConfig(indices=0, fqn="up_blocks.1.attentions.0.transformer_blocks", skip_attention=False,
                           skip_attention_scores=True, skip_ff=False),
    ]
    return gd.PerturbedAttentionGuidance(guidance_scale=5.0, perturbed_guidance_scale=2.5, perturbed_guidance_config=configs)


def test_exports():
    assert set(gd.GUIDERS) == {
        "ClassifierFreeGuidance", "ClassifierFreeZeroStarGuidance", "AdaptiveProjectedGuidance",
        "AdaptiveProjectedMixGuidance", "TangentialClassifierFreeGuidance", "FrequencyDecoupledGuidance",
        "MagnitudeAwareGuidance", "PerturbedAttentionGuidance", "SkipLayerGuidance", "SmoothedEnergyGuidance",
        "AutoGuidance",
    }
    for name, cls in gd.GUIDERS.items():
        assert cls.config_name == "guider_config.json"
        assert "https://" in cls.__doc__, name


def test_pag_round_trip(tmp_path):
    guider = _pag()
    path = guider.save_pretrained(tmp_path)
    assert path == tmp_path / "guider_config.json"
    data = json.loads(path.read_text())
    assert data["_class_name"] == "PerturbedAttentionGuidance"
    assert data["perturbed_guidance_config"][0] == {
        "indices": [2, 9], "fqn": "mid_block.attentions.0.transformer_blocks", "skip_attention": False,
        "skip_attention_scores": True, "skip_ff": False, "dropout": 1.0,
    }
    loaded = gd.PerturbedAttentionGuidance.from_pretrained(tmp_path)
    assert type(loaded) is gd.PerturbedAttentionGuidance
    assert dict(loaded.config) == dict(guider.config)
    assert loaded.perturbations == guider.perturbations
    assert type(gd.BaseGuidance.from_pretrained(tmp_path)) is gd.PerturbedAttentionGuidance


def test_pag_forces_identity_attention_without_touching_the_given_config():
    given = gd.LayerSkipConfig(indices=[1], fqn="transformer_blocks")
    with pytest.warns(UserWarning, match="perturbs attention scores only"):
        guider = gd.PerturbedAttentionGuidance(perturbed_guidance_config=given)
    assert given.skip_attention and not given.skip_attention_scores
    (config,) = guider.perturbations
    assert config == dataclasses.replace(given, skip_attention=False, skip_attention_scores=True, skip_ff=False)
    assert guider.config["perturbed_guidance_config"] == config


@pytest.mark.parametrize("name", sorted(gd.GUIDERS))
def test_from_config_and_json_round_trip(name, tmp_path):
    cls = gd.GUIDERS[name]
    guider = cls(**NEEDS.get(name, {}))
    assert dict(cls.from_config(guider.config).config) == dict(guider.config)
    assert dict(guider.new().config) == dict(guider.config)
    guider.save_pretrained(tmp_path / "sub")
    loaded = gd.BaseGuidance.from_pretrained(tmp_path, subfolder="sub")
    assert type(loaded) is cls
    assert dict(loaded.config) == dict(guider.config)


def test_override_on_load(tmp_path):
    gd.ClassifierFreeGuidance(guidance_scale=3.0).save_pretrained(tmp_path)
    assert gd.ClassifierFreeGuidance.from_pretrained(tmp_path, guidance_scale=9.0).guidance_scale == 9.0


def test_loading_the_wrong_class_is_an_error(tmp_path):
    _pag().save_pretrained(tmp_path)
    with pytest.raises(GuiderError, match="holds a PerturbedAttentionGuidance, not a ClassifierFreeGuidance"):
        gd.ClassifierFreeGuidance.from_pretrained(tmp_path)


def test_reads_a_config_saved_by_diffusers(tmp_path):
    import diffusers

    ref = diffusers.PerturbedAttentionGuidance(
        guidance_scale=5.0,
        perturbed_guidance_config=diffusers.LayerSkipConfig(
            indices=[2, 9], fqn="mid_block.attentions.0.transformer_blocks", skip_attention=False,
            skip_attention_scores=True, skip_ff=False,
        ),
    )
    ref.save_pretrained(tmp_path)
    loaded = gd.BaseGuidance.from_pretrained(tmp_path)
    assert isinstance(loaded, gd.PerturbedAttentionGuidance)
    assert loaded.perturbations == (
        gd.LayerSkipConfig((2, 9), "mid_block.attentions.0.transformer_blocks", False, True, False, 1.0),
    )


def test_push_to_hub_uploads_the_saved_folder(monkeypatch):
    import huggingface_hub

    calls = {}

    def create_repo(repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs)

    def upload_folder(**kwargs):
        files = sorted(p.name for p in __import__("pathlib").Path(kwargs["folder_path"]).iterdir())
        config = json.loads((__import__("pathlib").Path(kwargs["folder_path"]) / "guider_config.json").read_text())
        calls["upload"] = (kwargs, files, config)
        return "commit"

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    assert _pag().push_to_hub("me/guiders", subfolder="pag_guider") == "commit"
    kwargs, files, config = calls["upload"]
    assert calls["create"][0] == "me/guiders" and calls["create"][1]["exist_ok"] is True
    assert kwargs["repo_id"] == "me/guiders" and kwargs["path_in_repo"] == "pag_guider"
    assert files == ["guider_config.json"]
    assert config["_class_name"] == "PerturbedAttentionGuidance"
    assert kwargs["commit_message"] == "Upload PerturbedAttentionGuidance" and kwargs["create_pr"] is False
    assert (kwargs["token"], kwargs["revision"], calls["create"][1]["token"], calls["create"][1]["private"]) == (
        None, None, None, None)

    _pag().push_to_hub("me/guiders", commit_message="tune", private=True, token="t", revision="dev", create_pr=True)
    kwargs = calls["upload"][0]
    assert calls["create"][1] == {"token": "t", "private": True, "exist_ok": True}
    assert (kwargs["commit_message"], kwargs["token"], kwargs["revision"], kwargs["create_pr"]) == ("tune", "t", "dev", True)
    assert kwargs["path_in_repo"] is None


def test_layer_skip_config_value_object():
    config = gd.LayerSkipConfig(3)
    assert config.indices == (3,)
    assert gd.LayerSkipConfig.from_dict(config.to_dict()) == config
    assert hash(config) == hash(gd.LayerSkipConfig([3]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.fqn = "blocks"
    with pytest.raises(ConfigError, match="cannot both be True"):
        gd.LayerSkipConfig(0, skip_attention=True, skip_attention_scores=True)
    with pytest.raises(ConfigError, match="needs dropout=1.0"):
        gd.LayerSkipConfig(0, skip_attention=False, skip_attention_scores=True, dropout=0.5)
    with pytest.raises(ConfigError, match="indices"):
        gd.LayerSkipConfig([])
    with pytest.raises(ConfigError, match="unknown keys bogus"):
        gd.LayerSkipConfig.from_dict({"indices": [0], "bogus": 1})


def test_layer_skip_config_from_dict_skips_metadata_and_names_every_problem():
    # diffusers writes _-prefixed metadata into these dicts
    written = {"indices": [2], "fqn": "blocks", "_query_proj_identifiers": ["to_q"], "_class_name": "x"}
    assert gd.LayerSkipConfig.from_dict(written) == gd.LayerSkipConfig(2, fqn="blocks")
    with pytest.raises(ConfigError) as err:
        gd.LayerSkipConfig.from_dict([1])
    assert str(err.value) == "LayerSkipConfig: config 'from_dict' expects a mapping, got [1]"
    with pytest.raises(ConfigError) as err:
        gd.LayerSkipConfig.from_dict({"indices": [0], "zz": 1, "bogus": 2})
    fields = ", ".join(sorted(f.name for f in dataclasses.fields(gd.LayerSkipConfig)))
    assert str(err.value) == f"LayerSkipConfig: unknown keys bogus, zz; it takes {fields}"


@pytest.mark.parametrize("make,message", [
    (lambda: gd.ClassifierFreeGuidance(start=1.0), "config 'start' expects a fraction in \\[0, 1\\)"),
    (lambda: gd.ClassifierFreeGuidance(start=0.5, stop=0.2), "config 'stop'"),
    (lambda: gd.PerturbedAttentionGuidance(), "pass perturbed_guidance_layers"),
    (lambda: gd.SkipLayerGuidance(skip_layer_guidance_layers=1, skip_layer_config=gd.LayerSkipConfig(1)), "only one of"),
    (lambda: gd.SkipLayerGuidance(skip_layer_guidance_layers=1, skip_layer_guidance_start=0.5, skip_layer_guidance_stop=0.2),
     "skip_layer_guidance_stop"),
    (lambda: gd.AutoGuidance(auto_guidance_layers=[1]), "dropout is required"),
    (lambda: gd.FrequencyDecoupledGuidance(guidance_scales=[1.0, 2.0], start=[0.0]), "one per guidance scale"),
])
def test_bad_configs_are_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


# --- config checks name the class and key ---------------------------------------------------------------


@pytest.mark.parametrize("make,message", [
    (lambda: gd.LayerSkipConfig([1.5]), "LayerSkipConfig: config 'indices' expects a non-empty int or list of ints, got [1.5]"),
    (lambda: gd.LayerSkipConfig([0, True]), "LayerSkipConfig: config 'indices' expects a non-empty int or list of ints"),
    (lambda: gd.LayerSkipConfig(0, fqn=""), "LayerSkipConfig: config 'fqn' expects a dotted module name or 'auto'"),
    (lambda: gd.LayerSkipConfig(0, fqn=3), "LayerSkipConfig: config 'fqn' expects a dotted module name or 'auto'"),
    (lambda: gd.LayerSkipConfig(0, dropout=1.5), "LayerSkipConfig: config 'dropout' expects a probability in [0, 1]"),
    (lambda: gd.SmoothedEnergyGuidanceConfig([True]), "SmoothedEnergyGuidanceConfig: config 'indices' expects"),
    (lambda: gd.SmoothedEnergyGuidanceConfig(0, fqn=""), "SmoothedEnergyGuidanceConfig: config 'fqn' expects"),
    (lambda: gd.SmoothedEnergyGuidanceConfig(0, blur_sigma=0.0), "SmoothedEnergyGuidanceConfig: config 'blur_sigma' expects a finite positive number"),
    (lambda: gd.SmoothedEnergyGuidanceConfig(0, blur_sigma=float("inf")), "SmoothedEnergyGuidanceConfig: config 'blur_sigma' expects a finite positive number"),
    (lambda: gd.SkipLayerGuidance(skip_layer_config=3), "SkipLayerGuidance: config 'skip_layer_config' expects a LayerSkipConfig, a dict, or a list of them, got 3"),
    (lambda: gd.SkipLayerGuidance(skip_layer_guidance_layers=[]), "SkipLayerGuidance: config 'indices' expects a non-empty int or list of ints"),
    (lambda: gd.PerturbedAttentionGuidance(perturbed_guidance_layers=[0], perturbed_guidance_start=1.5),
     "PerturbedAttentionGuidance: config 'perturbed_guidance_start' expects a fraction in [0, 1)"),
])
def test_config_errors_name_the_class_and_key(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert str(err.value).startswith(message)


# --- which class a saved config loads as ------------------------------------------------------------------


def _saved(tmp_path, class_name):
    gd.ClassifierFreeGuidance(guidance_scale=3.0).save_pretrained(tmp_path)
    path = tmp_path / "guider_config.json"
    config = json.loads(path.read_text())
    if class_name is None:
        del config["_class_name"]
    else:
        config["_class_name"] = class_name
    path.write_text(json.dumps(config))
    return tmp_path


def test_a_config_without_class_name_loads_as_the_class_asked_for(tmp_path):
    folder = _saved(tmp_path, None)
    assert gd.ClassifierFreeGuidance.from_pretrained(folder).guidance_scale == 3.0
    with pytest.raises(GuiderError) as err:
        gd.BaseGuidance.from_pretrained(folder)
    assert str(err.value).startswith(f"{folder} holds a guider without _class_name, not a BaseGuidance")


def test_an_unknown_class_name_lists_the_known_guiders(tmp_path):
    folder = _saved(tmp_path, "NoSuchGuidance")
    with pytest.raises(GuiderError) as err:
        gd.BaseGuidance.from_pretrained(folder)
    assert str(err.value).startswith(f"{folder}: unknown guider class 'NoSuchGuidance'; known guiders: ")
    assert "AdaptiveProjectedGuidance, AdaptiveProjectedMixGuidance, AutoGuidance, ClassifierFreeGuidance" in str(err.value)
    assert "_CFGLike" not in str(err.value) and "_PerturbedGuidance" not in str(err.value)
    with pytest.raises(GuiderError) as err:
        gd.ClassifierFreeGuidance.from_pretrained(folder)
    assert str(err.value).startswith(f"{folder} holds a NoSuchGuidance, not a ClassifierFreeGuidance")


def test_from_pretrained_asks_the_hub_for_the_revision(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    gd.ClassifierFreeGuidance(guidance_scale=2.0).save_pretrained(tmp_path)
    asked = []

    def download(repo, filename, subfolder=None, revision=None, **kwargs):
        asked.append((repo, filename, subfolder, revision))
        return str(tmp_path / filename)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    guider = gd.BaseGuidance.from_pretrained("someone/guiders", subfolder="cfg", revision="v2")
    assert isinstance(guider, gd.ClassifierFreeGuidance) and guider.guidance_scale == 2.0
    assert asked == [("someone/guiders", "guider_config.json", "cfg", "v2")]
