"""examples/quickstart.ipynb runs top to bottom in a fresh kernel (nbclient), as CI runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the dev extra installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra installs nbclient")
    pytest.importorskip("ipykernel", reason="the dev extra installs ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # "python3" is ipykernel's own kernel: jupyter_client starts it with this interpreter (sys.executable)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 4  # the two groundings, the word maps, the benchmark chart
    assert (tmp_path / "runs" / "quickstart" / "summary.json").is_file()
    last = [o for o in notebook.cells[9].outputs if o.output_type == "execute_result"]
    assert last and "'ldm-frozen', 'cnr'" in last[0]["data"]["text/plain"]
