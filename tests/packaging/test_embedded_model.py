"""The built wheel ships the embedded tiny digits model (package data under diffblocks/presets/tiny_digits)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "presets" / "tiny_digits"


@pytest.mark.slow
def test_wheel_contains_the_embedded_model(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    [wheel] = tmp_path.glob("diffblocks-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    files = [p.relative_to(MODEL).as_posix() for p in MODEL.rglob("*") if p.is_file()]
    expected = {f"diffblocks/presets/tiny_digits/{name}" for name in files}
    assert "diffblocks/presets/tiny_digits/model_index.json" in expected
    assert "diffblocks/presets/tiny_digits/unet/diffusion_pytorch_model.safetensors" in expected
    missing = expected - names
    assert not missing, f"model files missing from the wheel: {sorted(missing)}"
    assert "diffblocks/presets/embedded.py" in names
