"""The README's Python API example runs as written, and what it imports is documented with shapes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import jaxvae

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.long  # ~30 s: the README's example as a user runs it
def test_the_readme_example_runs(tmp_path):
    pytest.importorskip("torch", reason="the example moves the weights into torch_ref: pip install -e '.[dev]'")
    text = README.read_text()
    match = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "the README lost its API example"
    script = tmp_path / "example.py"
    script.write_text(match.group(1))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loss = float(re.search(r"loss after 60 steps: ([\d.]+)", result.stdout).group(1))
    assert loss < 120  # it trained: the first steps' loss is ~180 (sums of squared pixel errors)
    assert "log p(x) of 20 test digits:" in result.stdout


def test_every_export_has_a_docstring():
    for name in jaxvae.__all__:
        if name != "__version__":
            assert (getattr(jaxvae, name).__doc__ or "").strip(), name
