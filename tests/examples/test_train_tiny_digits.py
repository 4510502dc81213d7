"""The retraining script never overwrites the shipped model unless told to, and says so before training."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_tiny_digits.py"


@pytest.fixture(scope="module")
def train():
    spec = importlib.util.spec_from_file_location("train_tiny_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_folder_needs_replace_shipped(train, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--out", str(train.DEFAULT_OUT)])
    assert exit_info.value.code == 2
    assert "is the shipped model; add --replace-shipped" in capsys.readouterr().err


def test_where_the_model_goes(train):
    assert train.parse_args([]).out == Path("tiny_digits_retrained")
    assert train.parse_args(["--out", "/tmp/digits"]).out == Path("/tmp/digits")
    assert train.parse_args(["--replace-shipped"]).out == train.DEFAULT_OUT
