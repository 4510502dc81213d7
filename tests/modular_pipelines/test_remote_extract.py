"""What :func:`extract_source` writes as ``block.py``: the custom classes with the imports, decorators and
definitions they use, and nothing else of the file (no unused constants, no lines around them); and which
classes and files it refuses."""

import textwrap
import types

import pytest
from toy_components import Plus

from diffblocks import ModularPipelineBlocks, SequentialPipelineBlocks
from diffblocks.modular_pipelines.errors import ConfigError
from diffblocks.modular_pipelines.remote import custom_source, extract_source

SOURCE = '''
from __future__ import annotations

import json
import os.path
from math import *

from diffblocks import ModularPipelineBlocks

TOKEN = "hf_secret_token"
state = "hf_secret_state"


def tag(cls):
    cls.tagged = True
    return cls


LIMIT: int = 3
UNUSED = "hf_secret_above"
@tag
class Root(ModularPipelineBlocks):
    def __call__(self, components, state):
        forget()
        return components, floor(sqrt(LIMIT)) + len(os.path.join("a", state))


def forget():
    global TOKEN
    TOKEN = None


def helper():
    return json


ALIAS = Root


class Outer:
    class Inner(ModularPipelineBlocks):
        pass

    def method(self):
        class Local(ModularPipelineBlocks):
            pass
        return Local
'''


def module_from(tmp_path, text, filename="user_blocks.py"):
    """A module object whose ``__file__`` is ``text`` (only the file is read: nothing of it runs)."""
    path = tmp_path / filename
    path.write_text(text)
    module = types.ModuleType("user_blocks")
    module.__file__ = str(path)
    return module


def test_saved_source_has_what_the_classes_use_and_nothing_else(tmp_path):
    saved = extract_source(module_from(tmp_path, SOURCE), ["Root", "Outer.Inner"])
    for kept in ("from __future__ import annotations\n", "import os.path\n", "from math import *\n",
                 "from diffblocks import ModularPipelineBlocks\n", "def tag(cls)", "@tag\nclass Root(",
                 "LIMIT: int = 3", "def forget()", "class Outer:"):
        assert kept in saved
    for left_out in ("hf_secret", "import json", "def helper", "ALIAS"):
        assert left_out not in saved  # a global assigned but never read, a module variable a parameter shadows
    namespace = {}
    exec(compile(saved, "block.py", "exec"), namespace)
    assert namespace["Root"].tagged and issubclass(namespace["Outer"].Inner, ModularPipelineBlocks)
    assert namespace["Root"]()(None, "b") == (None, 1 + len("a/b"))


@pytest.mark.parametrize("qualname", ["Ghost", "helper", "ALIAS", "Outer.method.<locals>.Local"])
def test_only_classes_defined_at_the_top_level_can_be_saved(tmp_path, qualname):
    with pytest.raises(ConfigError, match=f"cannot save the custom blocks {qualname}: they are not defined at the "
                                          "top level of user_blocks.py"):
        extract_source(module_from(tmp_path, SOURCE), [qualname])


@pytest.mark.parametrize("statement", ["from .helpers import twice", "from . import twice",
                                       "from .helpers import twice, other"])
def test_names_from_a_relative_import_are_refused(tmp_path, statement):
    text = textwrap.dedent(f'''
        {statement}
        from diffblocks import ModularPipelineBlocks

        class Root(ModularPipelineBlocks):
            def __call__(self, components, state):
                return components, twice(state)
    ''')
    with pytest.raises(ConfigError, match="they use twice from a relative import in user_blocks.py"):
        extract_source(module_from(tmp_path, text), ["Root"])


@pytest.mark.parametrize("filename, exists", [("gone.py", False), ("compiled.pyc", True), ("native.so", True)])
def test_a_module_without_a_python_source_file_is_refused(tmp_path, filename, exists):
    module = module_from(tmp_path, "class Root:\n    pass\n", filename)
    if not exists:
        (tmp_path / filename).unlink()
    with pytest.raises(ConfigError, match="their module has no source file"):
        extract_source(module, ["Root"])


class FromThisModule(ModularPipelineBlocks):
    def __call__(self, components, state):
        return components, state


def test_custom_blocks_from_two_modules_are_refused():
    blocks = SequentialPipelineBlocks.from_blocks_dict({"plus": Plus, "mine": FromThisModule})
    with pytest.raises(ConfigError, match="custom blocks come from several modules"):
        custom_source(blocks)
