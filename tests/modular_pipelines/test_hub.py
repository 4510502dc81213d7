"""Saving and loading modular repos, custom code, and the Hub path (the network call stood in for)."""

import json

import pytest
from toy_components import Count, CountLoop, Plus, Scale, UsesScale, write_modular_index, write_scale_repo

from diffblocks import ComponentSpec, ModularPipeline, ModularPipelineBlocks, SequentialPipelineBlocks
from diffblocks.modular_pipelines import AutoPipelineBlocks
from diffblocks.modular_pipelines.errors import ConfigError, RemoteCodeError
from diffblocks.modular_pipelines.hub import _located

CUSTOM_BLOCK = '''
from diffblocks import ModularPipelineBlocks, InputParam, OutputParam

class Double(ModularPipelineBlocks):
    inputs = [InputParam("x", required=True)]
    intermediate_outputs = [OutputParam("y")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.y = 2 * block_state.x
        self.set_block_state(state, block_state)
        return components, state
'''


def custom_repo(tmp_path, index=None):
    repo = write_modular_index(tmp_path / "custom", index or {})
    (repo / "block.py").write_text(CUSTOM_BLOCK)
    (repo / "modular_config.json").write_text(json.dumps({"_class_name": "Double", "auto_map": {"ModularPipelineBlocks": "block.Double"}}))
    return repo


def test_remote_code_is_refused_without_the_flag(tmp_path):
    repo = custom_repo(tmp_path)
    with pytest.raises(RemoteCodeError) as err:
        ModularPipeline.from_pretrained(repo)
    assert str(err.value).startswith(f"{repo} defines its blocks in custom code (block.py)")
    assert "trust_remote_code=True" in str(err.value)


def test_load_blocks_refuses_remote_code_unless_told(tmp_path):
    from diffblocks.modular_pipelines.hub import load_blocks

    repo = custom_repo(tmp_path)
    with pytest.raises(RemoteCodeError, match="trust_remote_code=True"):
        load_blocks(repo)  # the default is the safe one
    assert type(load_blocks(repo, trust_remote_code=True)).__name__ == "Double"


def test_remote_code_loads_with_the_flag(tmp_path):
    pipe = ModularPipeline.from_pretrained(custom_repo(tmp_path), trust_remote_code=True)
    assert type(pipe.blocks).__name__ == "Double"
    assert pipe(x=4, output="y") == 8


def test_flag_does_not_extend_to_component_repos(tmp_path):
    # a component repo with code of its own: loading the component never imports it
    weights = write_scale_repo(tmp_path / "weights", 3.0)
    (weights / "scale" / "block.py").write_text("raise SystemExit('component code ran')")
    (weights / "scale" / "modular_config.json").write_text(json.dumps({"auto_map": {"ModularPipelineBlocks": "block.X"}}))
    index = {"scale": [None, None, {"repo": str(weights), "subfolder": "scale"}]}
    pipe = UsesScale().init_pipeline(write_modular_index(tmp_path / "m", index))
    pipe.load_components()
    assert pipe.scale.factor == 3.0


def blocks_with_every_kind():
    auto = AutoPipelineBlocks.from_blocks_dict({"plus": Plus}, trigger_inputs=["x"])
    return SequentialPipelineBlocks.from_blocks_dict({
        "scale": UsesScale, "auto": auto, "loop": CountLoop.from_blocks_dict({"a": Count, "b": Count}),
    })


def test_round_trip_gives_an_equal_pipeline(tmp_path):
    weights = write_scale_repo(tmp_path / "weights", 3.0)
    repo = write_modular_index(tmp_path / "src", {"scale": [None, None, {"repo": str(weights), "subfolder": "scale"}]})
    pipe = blocks_with_every_kind().init_pipeline(repo)
    pipe.load_components()
    pipe.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "modular_model_index.json").read_text())
    assert saved["scale"][2]["repo"] == str(weights) and "offset" not in saved  # from_config parts are not listed

    with pytest.raises(RemoteCodeError):  # the toy blocks are custom code, saved as block.py
        ModularPipeline.from_pretrained(tmp_path / "saved")
    loaded = ModularPipeline.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    loaded.load_components()
    assert repr(loaded.blocks) == repr(pipe.blocks)
    assert {n: loaded.get_component_spec(n).load_id for n in loaded.component_names} == {
        n: pipe.get_component_spec(n).load_id for n in pipe.component_names}
    assert loaded.config == pipe.config
    inputs = dict(x=2.0, num_steps=3)
    expected = pipe(**inputs, output=["y", "z", "count"])
    assert expected == {"y": 6.5, "z": 3.0, "count": 6}
    assert loaded(**inputs, output=["y", "z", "count"]) == expected


def test_save_with_push_to_hub_uploads_the_folder(tmp_path, monkeypatch):
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["create"] = repo_id

        def upload_folder(self, repo_id, folder_path, path_in_repo=None, commit_message=""):
            from pathlib import Path

            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["repo"] = repo_id

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    pipe = UsesScale().init_pipeline()
    pipe.save_pretrained(tmp_path / "out", push_to_hub=True, repo_id="me/scale-pipe")
    assert calls["create"] == calls["repo"] == "me/scale-pipe"
    assert {"modular_model_index.json", "modular_config.json"} <= set(calls["files"])


def test_changed_from_config_part_is_saved_and_read_back_from_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    weights = write_scale_repo(tmp_path / "weights", 3.0)
    repo = write_modular_index(tmp_path / "src", {"scale": [None, None, {"repo": str(weights), "subfolder": "scale"}]})
    pipe = UsesScale().init_pipeline(repo)
    pipe.update_components(offset=Scale(factor=4.0))
    pipe.save_pretrained(tmp_path / "saved")
    entry = json.loads((tmp_path / "saved" / "modular_model_index.json").read_text())["offset"]
    assert entry[2]["default_creation_method"] == "from_config" and entry[2]["repo"] == "."
    assert json.loads((tmp_path / "saved" / "offset" / "config.json").read_text())["factor"] == 4.0

    def fake_download(repo_id, filename, subfolder=None, revision=None, **kwargs):
        path = tmp_path / "saved" / (subfolder or "") / filename
        if repo_id != "me/scale-pipe" or not path.is_file():
            raise huggingface_hub.errors.EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = ModularPipeline.from_pretrained("me/scale-pipe", trust_remote_code=True)
    assert loaded.offset.factor == 4.0  # "." is the pipeline's own Hub repo
    loaded.load_components()
    assert loaded(x=2.0, output="y") == 10.0


@pytest.mark.parametrize("loading, repo, revision, expected", [
    ({"repo": "owner/unet", "subfolder": "unet", "revision": "r1"}, "owner/pipe", "main", ("owner/unet", "unet", "r1")),
    ({"repo": "owner/unet"}, "owner/pipe", "main", ("owner/unet", "", None)),  # another repo: its own revision
    ({"repo": None}, "owner/pipe", "main", (None, "", None)),
    ({"repo": ".", "subfolder": "unet"}, "owner/pipe", "main", ("owner/pipe", "unet", "main")),  # the index's repo
    ({"repo": ".", "subfolder": "unet", "revision": "r2"}, "owner/pipe", "main", ("owner/pipe", "unet", "r2")),
    ({"repo": "./parts", "subfolder": "vae"}, "owner/pipe", None, ("owner/pipe", "parts/vae", None)),
    ({"repo": "."}, "owner/pipe", None, ("owner/pipe", "", None)),
])
def test_an_index_entry_is_located_relative_to_its_index(loading, repo, revision, expected):
    assert _located(loading, repo, revision) == expected


def test_an_index_entry_in_a_local_folder_is_an_absolute_path_without_revision(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipe").mkdir()
    assert _located({"repo": "./unet", "revision": "r1"}, "pipe", "main") == (str(tmp_path / "pipe"), "unet", None)


def test_push_passes_its_arguments_to_the_hub(tmp_path, monkeypatch):
    calls = []

    class FakeApi:  # huggingface_hub's defaults: exist_ok=False, so a second push would fail without it
        def __init__(self, token=None):
            calls.append(("api", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, path_in_repo=None, commit_message=None):
            calls.append(("upload", repo_id, folder_path, path_in_repo, commit_message))

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    pipe = UsesScale().init_pipeline()
    pipe.save_pretrained(tmp_path / "scale-pipe", push_to_hub=True, token="hf_abc", private=True,
                         commit_message="first version", subfolder="v1")
    assert calls == [("api", "hf_abc"), ("create", "scale-pipe", True, True),  # the folder's name as repo id
                     ("upload", "scale-pipe", str(tmp_path / "scale-pipe"), "v1", "first version")]
    calls.clear()
    pipe.save_pretrained(tmp_path / "out", push_to_hub=True, repo_id="me/pipe")
    assert calls == [("api", None), ("create", "me/pipe", None, True),
                     ("upload", "me/pipe", str(tmp_path / "out"), None, "Upload with diffblocks")]
    calls.clear()
    pipe.push_to_hub("me/direct", token="hf_x", commit_message="straight up")  # saved in a temporary folder
    assert [c[:2] for c in calls] == [("api", "hf_x"), ("create", "me/direct"), ("upload", "me/direct")]
    assert calls[2][3:] == (None, "straight up")


def serve_hub(monkeypatch, folders):
    """Stand in for the Hub: ``{(repo_id, revision): folder}``; returns the (repo, file, revision) asked for."""
    import huggingface_hub
    from huggingface_hub import constants

    asked = []

    def fake_download(repo_id, filename, subfolder=None, revision=None, **kwargs):
        asked.append((repo_id, f"{subfolder}/{filename}" if subfolder else filename, revision))
        folder = folders.get((repo_id, revision))
        path = folder / (subfolder or "") / filename if folder is not None else None
        if path is None or not path.is_file():
            raise huggingface_hub.errors.EntryNotFoundError(f"{filename} not in {repo_id}@{revision}")
        return str(path)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no reachability probe: the fake is the Hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    return asked


def test_entries_of_a_hub_index_are_read_at_its_revision(tmp_path, monkeypatch):
    from diffblocks.modular_pipelines.hub import read_pipeline_specs

    v2 = write_modular_index(tmp_path / "v2", {
        "scale": [None, "Scale", {"repo": ".", "subfolder": "scale", "variant": "fp16"}],
        "offset": [None, "Scale", {"repo": ".", "subfolder": "offset", "default_creation_method": "from_config"}],
    })
    Scale(factor=7.0).save_pretrained(v2 / "offset")
    asked = serve_hub(monkeypatch, {("me/pipe", "v2"): v2})
    declared = {s.name: s for s in UsesScale().expected_components}
    specs, _ = read_pipeline_specs("me/pipe", declared, revision="v2")
    scale = specs["scale"]
    assert (scale.repo, scale.subfolder, scale.revision, scale.variant) == ("me/pipe", "scale", "v2", "fp16")
    assert specs["offset"].config == {"factor": 7.0} and specs["offset"].default_creation_method == "from_config"
    assert ("me/pipe", "offset/config.json", "v2") in asked and {rev for _, _, rev in asked} == {"v2"}


def test_block_py_is_read_at_the_revision_asked_for(tmp_path, monkeypatch):
    folders = {}
    for revision, factor in (("main", 1), ("v2", 2)):
        folders["me/custom", revision] = folder = write_modular_index(tmp_path / revision, {})
        (folder / "modular_config.json").write_text(json.dumps({"auto_map": {"ModularPipelineBlocks": "block.Double"}}))
        (folder / "block.py").write_text(CUSTOM_BLOCK.replace("2 * block_state.x", f"{factor} * block_state.x"))
    asked = serve_hub(monkeypatch, folders)
    pipe = ModularPipeline.from_pretrained("me/custom", trust_remote_code=True, revision="v2")
    assert ("me/custom", "block.py", "v2") in asked and ("me/custom", "modular_config.json", "v2") in asked
    assert {rev for _, _, rev in asked} == {"v2"}  # nothing read from the default branch
    assert pipe(x=4, output="y") == 8


def test_from_pretrained_reads_the_index_at_the_revision_asked_for(tmp_path, monkeypatch):
    from diffblocks.modular_pipelines import hub

    v2 = write_modular_index(tmp_path / "v2", {"scale": [None, "Scale", {"repo": ".", "subfolder": "scale"}]})
    asked = serve_hub(monkeypatch, {("me/pipe", "v2"): v2})  # nothing at the default branch
    monkeypatch.setattr(hub, "load_blocks", lambda repo, trust_remote_code, revision: UsesScale())
    pipe = ModularPipeline.from_pretrained("me/pipe", revision="v2")
    assert ("me/pipe", "modular_model_index.json", "v2") in asked and {rev for _, _, rev in asked} == {"v2"}
    assert (pipe._specs["scale"].repo, pipe._specs["scale"].revision) == ("me/pipe", "v2")


def test_a_standard_repo_is_read_at_the_revision_asked_for(tmp_path, monkeypatch):
    from diffblocks.modular_pipelines.hub import load_blocks

    folders = {}
    for revision, class_name in (("main", "NoSuchPipeline"), ("v2", "DDPMPipeline")):
        folders["me/std", revision] = folder = tmp_path / revision
        folder.mkdir()
        (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    asked = serve_hub(monkeypatch, folders)
    blocks = load_blocks("me/std", revision="v2")
    assert "denoise" in blocks.sub_blocks and {rev for _, _, rev in asked} == {"v2"}
    with pytest.raises(ConfigError, match=r"^me/std is a NoSuchPipeline repo, which has no diffblocks preset; supported: "
                                          r"DDPMPipeline, "):
        load_blocks("me/std", revision="main")


def test_a_standard_index_names_the_class_to_load_and_an_unknown_one_keeps_the_declared(tmp_path):
    import shutil

    from diffblocks.components.schedulers import DDIMScheduler, EulerDiscreteScheduler
    from diffblocks.presets import embedded_model_path, stable_diffusion

    repo = shutil.copytree(embedded_model_path(), tmp_path / "repo")
    index = json.loads((repo / "model_index.json").read_text())
    blocks = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS)
    for scheduler, expected in ((["diffusers", "EulerDiscreteScheduler"], EulerDiscreteScheduler),
                                (["diffusers", "NoSuchScheduler"], DDIMScheduler)):  # what the blocks declare
        (repo / "model_index.json").write_text(json.dumps({**index, "scheduler": scheduler}))
        assert blocks.init_pipeline(repo).get_component_spec("scheduler").type_hint is expected


# --- from_config entries: which file, which class -------------------------------------------------


class ScaleWithOwnFile(Scale):
    config_name = "scale_config.json"


class Plain:
    """A from_config part without ConfigMixin: no config_name, no from_config."""

    def __init__(self, factor=0.5):
        self.factor = factor


class UsesParts(ModularPipelineBlocks):
    expected_components = [
        ComponentSpec("own", ScaleWithOwnFile, config={"factor": 0.5}, default_creation_method="from_config"),
        ComponentSpec("plain", Plain, config={"factor": 0.5}, default_creation_method="from_config"),
    ]

    def __call__(self, components, state):
        return components, state


def parts_repo(root, own_entry=None, own_class="ScaleWithOwnFile"):
    entry = {"repo": ".", "subfolder": "own", "default_creation_method": "from_config", **(own_entry or {})}
    repo = write_modular_index(root, {
        "own": [None, own_class, entry],
        "plain": [None, "Plain", {"repo": ".", "subfolder": "plain", "default_creation_method": "from_config"}],
    })
    for name, text in (("own/scale_config.json", '{"factor": 3.0}'), ("own/config.json", '{"factor": 98.0}'),
                       ("own/chosen.json", '{"factor": 5.0}'), ("outside.json", '{"factor": 99.0}'),
                       ("plain/config.json", '{"_class_name": "Plain", "factor": 4.0}')):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    return repo


def test_from_config_entries_read_the_file_their_class_writes(tmp_path):
    pipe = UsesParts().init_pipeline(parts_repo(tmp_path / "repo"))
    assert (type(pipe.own), pipe.own.factor) == (ScaleWithOwnFile, 3.0)  # scale_config.json, not config.json
    assert (type(pipe.plain), pipe.plain.factor) == (Plain, 4.0)  # a class without config_name: config.json


def test_from_config_entry_reads_the_config_file_it_names(tmp_path):
    pipe = UsesParts().init_pipeline(parts_repo(tmp_path / "repo", {"config_file": "chosen.json"}))
    assert pipe.own.factor == 5.0


@pytest.mark.parametrize("config_file", ["../outside.json", "own/chosen.json", 7])
def test_config_file_must_be_a_plain_file_name(tmp_path, config_file):
    from diffblocks.modular_pipelines.errors import ConfigError

    repo = parts_repo(tmp_path / "repo", {"config_file": config_file})
    with pytest.raises(ConfigError, match="entry 'own': config 'config_file' expects a file name"):
        UsesParts().init_pipeline(repo)


def test_from_config_entry_of_an_unknown_class_is_refused(tmp_path):
    from diffblocks.components.errors import UnsupportedComponentError

    with pytest.raises(UnsupportedComponentError, match="Mystery"):
        UsesParts().init_pipeline(parts_repo(tmp_path / "repo", own_class="Mystery"))
