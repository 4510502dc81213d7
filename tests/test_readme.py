"""Every Python snippet in README.md runs as written, on its own (a fresh namespace each), in a scratch folder."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 8


def draws_images(snippet: str) -> bool:
    """The snippets that run the embedded model for many steps (tens of seconds each on a CPU)."""
    return "embedded_model_path" in snippet and re.search(r"\(prompt=", snippet) is not None


@pytest.mark.parametrize("index", [pytest.param(i, marks=pytest.mark.slow) if draws_images(snippet) else i
                                   for i, snippet in enumerate(SNIPPETS)])
def test_snippet_runs_on_its_own(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = compile(SNIPPETS[index], f"README.md python snippet {index + 1}", "exec")
    exec(code, {"__name__": f"readme_snippet_{index + 1}"})
