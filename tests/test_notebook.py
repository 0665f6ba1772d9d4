"""``examples/seed_notebook.ipynb`` runs from top to bottom (on a small slice: 1 epoch of 128 images) and draws
the seed's four plots, so that it cannot rot."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "seed_notebook.ipynb"


@pytest.mark.long  # ~30 s: the whole notebook
def test_the_seed_notebook_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXVAE_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("JAXVAE_NOTEBOOK_TRAIN_EXAMPLES", "128")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's: the notebook trains into a temporary folder
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    run = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    run.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 4  # training loss, reconstructions, latent space, prior samples
