"""Blocks name transformers classes lazily: importing a preset imports no transformers; reading a spec's
``type_hint`` gives the class; printing blocks still shows the class name."""

import subprocess
import sys

import pytest

from diffblocks.components.spec import ComponentSpec, LazyClass
from diffblocks.modular_pipelines.errors import ComponentLoadError


@pytest.mark.parametrize("preset", ["stable_diffusion", "stable_diffusion_xl"])
def test_importing_and_printing_a_preset_imports_no_transformers(preset):
    code = (f"import sys\nfrom diffblocks import SequentialPipelineBlocks\n"
            f"from diffblocks.presets.{preset} import AUTO_BLOCKS, IP_ADAPTER_BLOCKS\n"
            f"text = repr(SequentialPipelineBlocks.from_blocks_dict(AUTO_BLOCKS))\n"
            f"text += repr(SequentialPipelineBlocks.from_blocks_dict(IP_ADAPTER_BLOCKS))\n"
            f"print('transformers' in sys.modules, 'CLIPTextModel' in text, 'CLIPVisionModelWithProjection' in text)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]


def test_a_lazy_type_resolves_when_read_and_stays_lazy_in_copies():
    spec = ComponentSpec("text_encoder", LazyClass("transformers", "NoSuchClass", "CLIPTextModel"))
    copied = spec.copy()
    assert spec.type_label == "NoSuchClass" and isinstance(copied.__dict__["_type_hint"], LazyClass)
    from transformers import CLIPTextModel

    assert spec.type_hint is CLIPTextModel and copied.type_hint is CLIPTextModel
    assert spec.type_label == "CLIPTextModel"


def test_a_lazy_type_that_does_not_exist_says_so():
    with pytest.raises(ComponentLoadError, match="transformers has none of NoSuchA, NoSuchB"):
        ComponentSpec("x", LazyClass("transformers", "NoSuchA", "NoSuchB")).type_hint
