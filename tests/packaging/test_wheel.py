"""The built wheel holds every subpackage of the repository (the root is the package `diffblocks`)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = {"tests", "benchmarks", "examples", "build", "dist", ".venv", ".git"}


def source_packages():
    found = {"diffblocks"}
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts and (rel.parts[0] in SKIP or rel.parts[0].startswith(".")):
            continue
        if rel.parts:
            found.add(".".join(("diffblocks",) + rel.parts))
    return found


@pytest.mark.slow
def test_wheel_contains_every_subpackage(tmp_path):
    # setuptools reuses ROOT/build, where a module deleted from the tree would linger and ship
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    [wheel] = tmp_path.glob("diffblocks-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {"/".join(n.split("/")[:-1]).replace("/", ".") for n in names if n.endswith("__init__.py")}
    missing = source_packages() - packages
    assert not missing, f"subpackages missing from the wheel: {sorted(missing)}"
    assert not any(n.startswith("diffblocks/tests/") for n in names)
    assert any(n.endswith("diffblocks/modular_pipelines/block.py") for n in names)
    if (ROOT / "server" / "catalog.json").is_file():  # built by make setup: a wheel's first server start uses it
        assert "diffblocks/server/catalog.json" in names
    shipped = {f"diffblocks/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "components" / "family_configs").rglob("*")
               if p.is_file()}
    assert shipped and shipped <= set(names), f"family configs missing from the wheel: {sorted(shipped - set(names))}"
    vocab = "diffblocks/components/family_configs/sdxl/tokenizer_2/vocab.json"  # a link in the tree: its content here
    assert zipfile.ZipFile(wheel).read(vocab) == (ROOT / "presets" / "tiny_digits" / "tokenizer" / "vocab.json").read_bytes()
    stale = [n for n in names if n.startswith("diffblocks/") and n.endswith(".py")
             and not (ROOT / n.removeprefix("diffblocks/")).is_file()]
    assert not stale, f"modules in the wheel that the tree no longer has: {stale}"
