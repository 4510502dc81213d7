"""``trust_remote_code=False`` runs no code from a repo by any path (block trees, transformers' auto_map),
and saving a custom block writes only its classes, never the rest of the user's script."""

import builtins
import json
import subprocess
import sys
import textwrap
import types

import pytest

from diffblocks import ComponentSpec, ModularPipeline, ModularPipelineBlocks, SequentialPipelineBlocks
from diffblocks.modular_pipelines.errors import ComponentLoadError, ConfigError, RemoteCodeError
from diffblocks.modular_pipelines.remote import build_tree, custom_source, extract_source, tree_of
from diffblocks.presets import stable_diffusion

EVIL_MODULE = '''
from pathlib import Path
Path(__file__).with_name("MARKER").write_text("ran")

from diffblocks import ModularPipelineBlocks

class EvilBlock(ModularPipelineBlocks):
    def __call__(self, components, state):
        return components, state
'''


def repo_with_tree(root, tree):
    root.mkdir(parents=True, exist_ok=True)
    (root / "modular_config.json").write_text(json.dumps({"_class_name": "X", "blocks": tree}))
    (root / "modular_model_index.json").write_text("{}")
    return root


@pytest.fixture
def evil_on_path(tmp_path, monkeypatch):
    """A module next to the user's script: its folder is on sys.path, as for a REPL or ``python -m``."""
    (tmp_path / "evil_blocks.py").write_text(EVIL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("evil_blocks", None)


SEQUENTIAL = "diffblocks.modular_pipelines.sequential:SequentialPipelineBlocks"


@pytest.mark.parametrize("ref", [
    "evil_blocks:EvilBlock", "tempfile:mkdtemp", "os:system", "diffblocks.cli:main", "block:Double",
])
@pytest.mark.parametrize("nested", [False, True])
def test_untrusted_tree_names_only_diffblocks_blocks(evil_on_path, monkeypatch, ref, nested):
    import tempfile

    called = []
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: called.append(a))
    tree = {"class": SEQUENTIAL, "sub_blocks": {"x": {"class": ref}}} if nested else {"class": ref}
    repo = repo_with_tree(evil_on_path / "repo", tree)
    with pytest.raises(RemoteCodeError) as err:
        ModularPipeline.from_pretrained(repo)
    message = str(err.value)
    assert f"{repo}/modular_config.json" in message and ref in message and "trust_remote_code=True" in message
    assert not (evil_on_path / "MARKER").exists() and "evil_blocks" not in sys.modules and not called


@pytest.mark.parametrize("ref", ["tempfile:mkdtemp", "diffblocks.modular_pipelines.hub:save_pipeline",
                                 "diffblocks.modular_pipelines.block:run_block"])
def test_even_trusted_a_tree_names_only_block_classes(tmp_path, monkeypatch, ref):
    import tempfile

    called = []
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: called.append(a))
    repo = repo_with_tree(tmp_path / "repo", {"class": SEQUENTIAL, "sub_blocks": {"x": {"class": ref}}})
    with pytest.raises(RemoteCodeError, match=f"'{ref}' does not name a ModularPipelineBlocks subclass"):
        ModularPipeline.from_pretrained(repo, trust_remote_code=True)
    assert not called


def test_trusted_block_py_names_only_block_classes(tmp_path):
    repo = repo_with_tree(tmp_path / "repo", {"class": "block:helper"})
    (repo / "block.py").write_text("def helper():\n    raise SystemExit('called')\n")
    with pytest.raises(RemoteCodeError, match="'block:helper' does not name a ModularPipelineBlocks subclass"):
        ModularPipeline.from_pretrained(repo, trust_remote_code=True)


def test_trusted_tree_may_name_a_block_class_of_another_module(evil_on_path):
    repo = repo_with_tree(evil_on_path / "repo", {"class": "evil_blocks:EvilBlock"})
    pipe = ModularPipeline.from_pretrained(repo, trust_remote_code=True)
    assert type(pipe.blocks).__name__ == "EvilBlock" and (evil_on_path / "MARKER").exists()


def test_diffblocks_presets_need_no_trust(tmp_path):
    blocks = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.AUTO_BLOCKS)
    rebuilt = build_tree(json.loads(json.dumps(tree_of(blocks))))
    assert repr(rebuilt) == repr(blocks)


def test_unknown_diffblocks_name_is_refused(tmp_path):
    repo = repo_with_tree(tmp_path / "repo", {"class": "diffblocks.blocks.stable_diffusion:NoSuchStep"})
    with pytest.raises(RemoteCodeError, match="NoSuchStep' does not name a ModularPipelineBlocks subclass"):
        ModularPipeline.from_pretrained(repo)


# --- transformers components never ask on the terminal ---------------------------------------------


@pytest.fixture
def auto_map_folder(tmp_path, monkeypatch):
    """A transformers folder whose config ships code that would leave a marker; ``input`` fails the test."""
    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil-net", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"},
    }))
    (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]}}))
    (folder / "evil.py").write_text("from pathlib import Path\nPath(__file__).with_name('MARKER').write_text('ran')\n")
    asked = []

    def no_prompt(*args, **kwargs):
        asked.append(args)
        raise AssertionError("transformers asked on the terminal")

    monkeypatch.setattr(builtins, "input", no_prompt)
    yield folder
    assert not asked, "transformers prompted for trust_remote_code"
    assert not (folder / "MARKER").exists()


@pytest.mark.parametrize("auto_class", ["AutoModel", "AutoTokenizer"])
def test_auto_map_code_is_refused_without_a_prompt(auto_map_folder, auto_class):
    import transformers

    spec = ComponentSpec("encoder", getattr(transformers, auto_class), repo=str(auto_map_folder.parent), subfolder="encoder")
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        spec.load()


class UsesEncoder(ModularPipelineBlocks):
    @property
    def expected_components(self):
        from transformers import AutoModel

        return [ComponentSpec("encoder", AutoModel)]

    def __call__(self, components, state):
        return components, state


def test_pipeline_loading_refuses_auto_map_code_without_a_prompt(auto_map_folder, tmp_path):
    index = {"encoder": ["transformers", "AutoModel", {"repo": str(auto_map_folder.parent), "subfolder": "encoder"}]}
    (tmp_path / "modular_model_index.json").write_text(json.dumps(index))
    pipe = UsesEncoder().init_pipeline(tmp_path)
    with pytest.raises(ComponentLoadError, match="encoder: ValueError"):
        pipe.load_components()


def test_trust_remote_code_reaches_transformers_only_when_given(monkeypatch):
    import transformers

    seen = []
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", classmethod(lambda cls, repo, **kw: seen.append(kw)))
    spec = ComponentSpec("encoder", transformers.AutoModel, repo="/nowhere")
    spec.load()
    spec.load(trust_remote_code=True)
    spec.load(trust_remote_code="yes")
    assert [kw["trust_remote_code"] for kw in seen] == [False, True, False]


# --- block.py holds the custom classes only -----------------------------------------------------------

SCRIPT = '''
"""A user's script: a custom block, a token, and a main section that saves and loads itself."""
import os
import sys

from diffblocks import InputParam, ModularPipeline, ModularPipelineBlocks, OutputParam

HF_TOKEN = "hf_secret"
FACTOR = 2
print("script body ran")


def twice(x):
    return FACTOR * x


class Base(ModularPipelineBlocks):
    inputs = [InputParam("x", required=True)]


class Double(Base):
    intermediate_outputs = [OutputParam("y")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.y = twice(block_state.x)
        self.set_block_state(state, block_state)
        return components, state


def save_and_load(folder):
    Double().init_pipeline().save_pretrained(folder)
    loaded = ModularPipeline.from_pretrained(folder, trust_remote_code=True)
    print("result", loaded(x=21, output="y"))
'''


@pytest.mark.parametrize("guarded", [True, False])
def test_saved_block_py_has_the_classes_but_not_the_script(tmp_path, guarded):
    main = 'if __name__ == "__main__":\n    save_and_load(sys.argv[1])\n' if guarded else "save_and_load(sys.argv[1])\n"
    script = tmp_path / "my_blocks.py"
    script.write_text(SCRIPT + "\n\n" + main)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "saved")], capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("script body ran") == 1 and "result 42" in out.stdout
    saved = (tmp_path / "saved" / "block.py").read_text()
    assert "class Double(Base)" in saved and "class Base(" in saved and saved.index("class Base") < saved.index("class Double")
    assert "def twice" in saved and "FACTOR = 2" in saved
    for absent in ("hf_secret", "HF_TOKEN", "__main__", "script body ran", "save_and_load", "import os", "sys"):
        assert absent not in saved


def test_imports_are_narrowed_to_the_names_used(tmp_path, monkeypatch):
    (tmp_path / "narrow_blocks.py").write_text(textwrap.dedent('''
        import json, math
        from diffblocks import InputParam, ModularPipelineBlocks, OutputParam, ComponentSpec

        class Root(ModularPipelineBlocks):
            inputs = [InputParam("x")]

            def __call__(self, components, state):
                return components, math.sqrt(state)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    import narrow_blocks

    try:
        saved = custom_source(narrow_blocks.Root())
    finally:
        sys.modules.pop("narrow_blocks", None)
    assert "import math\n" in saved and "json" not in saved
    assert "from diffblocks import InputParam, ModularPipelineBlocks\n" in saved


def test_blocks_without_a_source_file_cannot_be_saved():
    module = types.ModuleType("typed_in_a_repl")
    exec("from diffblocks import ModularPipelineBlocks\nclass Typed(ModularPipelineBlocks):\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        with pytest.raises(ConfigError, match="cannot save the custom blocks Typed: their module has no source file.*"
                                              "top level of a .py file"):
            module.Typed().init_pipeline().save_pretrained("/nonexistent/never-written")
    finally:
        sys.modules.pop(module.__name__, None)


def test_blocks_defined_inside_a_function_cannot_be_saved(tmp_path):
    class Local(ModularPipelineBlocks):
        def __call__(self, components, state):
            return components, state

    with pytest.raises(ConfigError, match="Local: they are not defined at the top level of test_remote_code.py"):
        extract_source(sys.modules[Local.__module__], [Local.__qualname__])


def test_unknown_diffblocks_module_is_refused(tmp_path):
    repo = repo_with_tree(tmp_path / "repo", {"class": "diffblocks.blocks.no_such_module:Step"})
    with pytest.raises(RemoteCodeError, match="no_such_module:Step' does not name a ModularPipelineBlocks subclass"):
        ModularPipeline.from_pretrained(repo)


# --- errors name the file; references that name no class import nothing ---------------------------


@pytest.mark.parametrize("tree", [
    {"class": 5}, {"sub_blocks": {}}, "not a node",
    {"class": SEQUENTIAL, "sub_blocks": {"x": {"class": 5}}},
    {"class": SEQUENTIAL, "sub_blocks": {"x": {"class": SEQUENTIAL, "sub_blocks": {"y": ["nope"]}}}},
])
def test_malformed_tree_is_a_config_error_naming_the_file(tmp_path, tree):
    repo = repo_with_tree(tmp_path / "repo", tree)
    with pytest.raises(ConfigError, match="every block node needs a 'class' string") as err:
        ModularPipeline.from_pretrained(repo)
    assert str(err.value).startswith(f"{repo}/modular_config.json: ")


@pytest.mark.parametrize("nested", [False, True])
def test_unknown_block_class_error_names_the_file(tmp_path, nested):
    ref = "diffblocks.blocks.stable_diffusion:NoSuchStep"
    tree = {"class": SEQUENTIAL, "sub_blocks": {"a": {"class": SEQUENTIAL, "sub_blocks": {"b": {"class": ref}}}}} \
        if nested else {"class": ref}
    repo = repo_with_tree(tmp_path / "repo", tree)
    with pytest.raises(RemoteCodeError) as err:
        ModularPipeline.from_pretrained(repo)
    assert str(err.value).startswith(f"{repo}/modular_config.json: '{ref}' does not name a ModularPipelineBlocks")


def test_build_tree_is_untrusted_unless_told(evil_on_path):
    with pytest.raises(RemoteCodeError, match="trust_remote_code=True"):
        build_tree({"class": "evil_blocks:EvilBlock"})
    assert not (evil_on_path / "MARKER").exists() and "evil_blocks" not in sys.modules


def test_trusted_reference_without_a_class_imports_nothing(evil_on_path):
    repo = repo_with_tree(evil_on_path / "repo", {"class": "evil_blocks"})
    with pytest.raises(RemoteCodeError, match="'evil_blocks' does not name a ModularPipelineBlocks subclass"):
        ModularPipeline.from_pretrained(repo, trust_remote_code=True)
    assert not (evil_on_path / "MARKER").exists() and "evil_blocks" not in sys.modules


@pytest.mark.parametrize("ref", ["os:path:join", "block:Missing", "block:Outer.missing"])
def test_trusted_reference_to_nothing_is_refused_as_not_a_block(tmp_path, ref):
    repo = repo_with_tree(tmp_path / "repo", {"class": ref})
    (repo / "block.py").write_text("class Outer:\n    pass\n")
    with pytest.raises(RemoteCodeError) as err:
        ModularPipeline.from_pretrained(repo, trust_remote_code=True)
    assert str(err.value).startswith(f"{repo}/modular_config.json: '{ref}' does not name a ModularPipelineBlocks")


def test_a_nested_class_of_block_py_is_found_by_its_qualname(tmp_path):
    repo = repo_with_tree(tmp_path / "repo", {"class": "block:Outer.Inner"})
    (repo / "block.py").write_text(
        "from diffblocks import ModularPipelineBlocks\n\nclass Outer:\n    class Inner(ModularPipelineBlocks):\n"
        "        def __call__(self, components, state):\n            return components, state\n")
    pipe = ModularPipeline.from_pretrained(repo, trust_remote_code=True)
    assert type(pipe.blocks).__qualname__ == "Outer.Inner"


def test_auto_map_naming_no_block_class_names_the_file(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "modular_model_index.json").write_text("{}")
    (repo / "modular_config.json").write_text(json.dumps({"auto_map": {"ModularPipelineBlocks": "block.helper"}}))
    (repo / "block.py").write_text("def helper():\n    raise SystemExit('called')\n")
    with pytest.raises(RemoteCodeError, match=f"{repo}/modular_config.json: 'block:helper' does not name"):
        ModularPipeline.from_pretrained(repo, trust_remote_code=True)


# --- block.py modules: one module per file, nothing left behind by a failing one --------------------

MULTIPLY = '''
from diffblocks import InputParam, ModularPipelineBlocks, OutputParam

class Multiply(ModularPipelineBlocks):
    inputs = [InputParam("x", required=True)]
    intermediate_outputs = [OutputParam("y")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.y = FACTOR * block_state.x
        self.set_block_state(state, block_state)
        return components, state
'''


def multiply_repo(root, factor):
    root.mkdir(parents=True)
    (root / "modular_model_index.json").write_text("{}")
    (root / "modular_config.json").write_text(json.dumps({"auto_map": {"ModularPipelineBlocks": "block.Multiply"}}))
    (root / "block.py").write_text(f"FACTOR = {factor}\n" + MULTIPLY)
    return root


def test_two_repos_block_py_stay_apart_and_resave_from_their_own_file(tmp_path):
    double = ModularPipeline.from_pretrained(multiply_repo(tmp_path / "double", 2), trust_remote_code=True)
    triple = ModularPipeline.from_pretrained(multiply_repo(tmp_path / "triple", 3), trust_remote_code=True)
    assert (double(x=5, output="y"), triple(x=5, output="y")) == (10, 15)
    assert type(double.blocks).__module__ != type(triple.blocks).__module__
    double.save_pretrained(tmp_path / "resaved")  # block.py is written from the file the class came from
    assert "FACTOR = 2" in (tmp_path / "resaved" / "block.py").read_text()
    again = ModularPipeline.from_pretrained(tmp_path / "resaved", trust_remote_code=True)
    assert again(x=5, output="y") == 10


def test_block_py_that_fails_raises_its_error_and_leaves_no_module(tmp_path):
    repo = multiply_repo(tmp_path / "broken", 2)
    (repo / "block.py").write_text("raise ZeroDivisionError('block.py failed')\n")
    before = {name for name in sys.modules if name.startswith("diffblocks_remote_")}
    with pytest.raises(ZeroDivisionError, match="block.py failed"):
        ModularPipeline.from_pretrained(repo, trust_remote_code=True)
    assert {name for name in sys.modules if name.startswith("diffblocks_remote_")} == before
