"""``diffblocks.components`` exports what ../shared/API.md lists, and importing it loads none of them."""

import subprocess
import sys

import pytest

import diffblocks.components as components

API_NAMES = ["ComponentSpec", "ConfigSpec", "ComponentsManager", "UNet2DConditionModel", "AutoencoderKL",
             "ControlNetModel", "DDIMScheduler", "EulerDiscreteScheduler", "VaeImageProcessor"]


@pytest.mark.parametrize("name", API_NAMES)
def test_documented_names_import_from_components(name):
    exec(f"from diffblocks.components import {name}", {})
    assert name in components.__all__ and name in dir(components)


def test_every_export_resolves_to_its_defining_module():
    from diffblocks.components.models import UNet2DConditionModel
    from diffblocks.components.schedulers import DDIMScheduler

    assert components.UNet2DConditionModel is UNet2DConditionModel and components.DDIMScheduler is DDIMScheduler
    for name in set(components.__all__) - {"SCHEDULERS"}:
        assert getattr(components, name).__name__ == name
    assert components.SCHEDULERS["DDIMScheduler"] is DDIMScheduler


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'UNet3D'"):
        components.UNet3D


def test_importing_components_loads_no_model_module():
    code = ("import sys, diffblocks.components; "
            "print(sorted(m for m in sys.modules if m.startswith('diffblocks.components.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "models" not in out and "schedulers" not in out and "manager" not in out
