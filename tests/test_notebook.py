"""notebooks/quickstart.ipynb, the notebook a researcher opens first, runs: it is executed here with
nbclient in its small mode (DCNN_DD_NOTEBOOK_SMALL=1: 512 training / 256 test images), and its printed
Theorem 2.1 numbers and its figures are checked. The committed notebook carries no outputs."""

import json
import os
import re
import sys

import pytest

from tests.docs_pages import ROOT

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
STRIP = ("python -c \"import nbformat as f; p='notebooks/quickstart.ipynb'; nb=f.read(p, 4); "
         "[(c.update(outputs=[], execution_count=None), c.metadata.pop('execution', None)) for c in nb.cells "
         "if c.cell_type == 'code']; f.write(nb, p)\"")


def test_the_committed_notebook_has_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c["outputs"] or c["execution_count"] is not None or "execution" in c["metadata"])]
    assert not dirty, (f"cells {dirty} of {NOTEBOOK.name} carry outputs, execution counts or timings; "
                       f"strip them: {STRIP}")
    assert "widgets" not in nb["metadata"], "widget state in the notebook's metadata; strip it"


def test_the_notebook_uses_the_public_api_only():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    private = re.findall(r"\b(?:dd|dcnn_dd[\w.]*|data)\.(_\w+)", source) + re.findall(r"import (_\w+)", source)
    assert not private, f"private names in the notebook: {private}"
    assert "from experiments" not in source and "import experiments" not in source


@pytest.fixture(scope="module")
def executed():
    pytest.importorskip("nbclient", reason="nbclient is not installed: pip install -e '.[test]' to run the notebook")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed: pip install -e '.[test]' to run the notebook")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # which python and which dcnn_dd the kernel runs (appended to this in-memory copy only)
    nb.cells.append(nbformat.v4.new_code_cell("import sys, dcnn_dd\nprint('KERNEL', sys.executable, dcnn_dd.__file__)"))
    env = {"DCNN_DD_NOTEBOOK_SMALL": "1", "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
           # this checkout's dcnn_dd, not some other installed copy (the kernel starts in notebooks/)
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    return outputs, text


def test_the_kernel_runs_this_checkout(executed):
    _, text = executed
    m = re.search(r"KERNEL (\S+) (\S+)", text)
    assert m, text[-2000:]
    assert os.path.realpath(m.group(2)).startswith(os.path.realpath(ROOT)), m.group(0)
    assert os.path.realpath(m.group(1)) == os.path.realpath(sys.executable), m.group(0)


def test_the_notebook_runs_in_small_mode_and_shows_theorem_2_1(executed):
    outputs, text = executed
    assert "small size: 512 training / 256 test images" in text
    m = re.search(r"max \|composed logits - sum of sub-network logits\| = (\S+)", text)
    assert m and float(m.group(1)) < 1e-4, text
    m = re.search(r"max \|composed on its field, block k - SNet-k\| = ([^(]+)\(", text)
    assert m, text
    field_diffs = [float(d) for d in m.group(1).split(",")]
    assert len(field_diffs) == 4 and max(field_diffs) < 1e-4, m.group(0)
    assert re.search(r"test accuracy: GNet-T composed 0\.\d+ -> fine-tuned 0\.\d+; GNet-R 0\.\d+", text), text
    assert "params/Dense_0/kernel" in text and "(2.13)" in text, "print(plan) shows every leaf and its rule"
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("CompositionReport" in h and "<table>" in h for h in html), "the plan's report shows as an HTML table"
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 4, f"{len(figures)} figures: sub-images, composed kernel, accuracy vs time, feature maps"
