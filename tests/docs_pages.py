"""The documentation pages and their python examples: README.md (the front page) and docs/*.md.

Each example is found by the page it lives on (and, where a page has several, by its content), so
a test names what it runs; `tests/test_docs.py` checks that these selections cover every ```python
block of every page.
"""

import pathlib
import re

ROOT = pathlib.Path(__file__).parents[1]
_BLOCK = re.compile(r"```python\n(.*?)```", flags=re.S)


def pages():
    """README.md and every docs/*.md, as paths relative to the repository root."""
    return ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]


def text(page):
    return (ROOT / page).read_text()


def python_blocks(page=None):
    """(page, block) for every ```python block, of one page or of all of them."""
    return [(p, b) for p in ([page] if page else pages()) for b in _BLOCK.findall(text(p))]


def functional_api_block():
    """The front page's first python block: the functional API on your own Flax module."""
    return python_blocks("README.md")[0]


def nnx_api_block():
    """The functional API in Flax NNX: the one block on any page that imports flax.nnx and plans."""
    (block,) = [b for b in python_blocks() if "from flax import nnx" in b[1] and "dd.plan_for" in b[1]]
    return block


def nnx_engine_block():
    """Training an NNX model with the engine: the one block on any page that imports flax.nnx and
    registers a model."""
    (block,) = [b for b in python_blocks() if "from flax import nnx" in b[1] and "register_model(" in b[1]]
    return block


def linen_engine_block():
    """Training the front page's MyNet with the engine: the one block on any page that registers a
    subclass of MyNet (it continues the front page's first block)."""
    (block,) = [b for b in python_blocks() if "(MyNet)" in b[1] and "register_model(" in b[1]]
    return block


def engine_block():
    """The training engine's example (`Config` and `run_algorithm1`): the block of docs/engine.md
    that registers no task and joins no multi-process run."""
    (block,) = [b for b in python_blocks("docs/engine.md")
                if "register_task(" not in b[1] and "distributed.initialize(" not in b[1]]
    return block


def own_script_block():
    """Your own script on several processes (docs/engine.md): the one block on any page that calls
    `distributed.initialize`; tests/test_multihost.py runs it as one of two processes."""
    (block,) = [b for b in python_blocks() if "distributed.initialize(" in b[1]]
    return block


def tasks_block():
    """Your own loss (docs/engine.md, "Tasks"): the one block on any page that registers a task."""
    (block,) = [b for b in python_blocks() if "register_task(" in b[1]]
    return block


def inference_block():
    """After training (docs/api.md): the one block there that calls load_trained."""
    (block,) = [b for b in python_blocks("docs/api.md") if "load_trained(" in b[1]]
    return block


def own_problem_blocks():
    """Your own problem (docs/own_problem.md): its blocks, in order (they continue each other)."""
    return python_blocks("docs/own_problem.md")


def layer_parallel_block():
    """The layer-parallel example: the one block on any page that imports dcnn_dd.layer_parallel and
    uses no (layers, data) mesh."""
    (block,) = [b for b in python_blocks() if "dcnn_dd.layer_parallel" in b[1] and "layers_data_mesh(" not in b[1]]
    return block


def layers_data_block():
    """Layer- and data-parallel MGRIT (docs/layer_parallel.md): the one block on any page that calls
    layers_data_mesh; tests/layer_parallel_mesh_checks.py runs it on 8 simulated devices."""
    (block,) = [b for b in python_blocks() if "layers_data_mesh(" in b[1]]
    return block


def cnn_dnn_blocks():
    """The CNN-DNN page's model example and training example (the blocks that import dcnn_dd.cnn_dnn)."""
    blocks = [b for b in python_blocks() if "dcnn_dd.cnn_dnn" in b[1]]
    assert len(blocks) == 2, "the CNN-DNN page has a model example and a training example"
    return blocks


def executed_blocks():
    """Every block some test runs: test_readme.py, test_cnn_dnn.py, test_tasks.py, test_own_problem.py,
    (the inference block) test_quickstart.py, (your own script) test_multihost.py and (layers x data)
    test_layer_parallel_mesh.py run exactly these."""
    return [functional_api_block(), nnx_api_block(), nnx_engine_block(), linen_engine_block(), engine_block(),
            tasks_block(), inference_block(), own_script_block(), *own_problem_blocks(),
            layer_parallel_block(), layers_data_block(), *cnn_dnn_blocks()]


def run_stubbed(monkeypatch, module, name, page_block, result=None) -> list[tuple]:
    """Execute a docs example with ``module.name`` (the training run it calls) replaced by a stub
    that records its arguments and returns ``result``; the recorded calls, each the positional
    arguments followed by the keyword ones as (name, value) pairs (so unpacking a call into its
    expected positional arguments also checks that no keyword was passed)."""
    calls = []
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append((*a, *k.items())) or (result or {}),
                        raising=False)
    page, block = page_block
    exec(compile(block, page, "exec"), {})  # noqa: S102
    return calls
