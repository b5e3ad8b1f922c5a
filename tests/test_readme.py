"""The README's example runs as written (so the documentation cannot drift from the code)."""

import pathlib
import re


def test_readme_example_runs(capsys):
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "(2.13) first FC" in out and "(2.11) first layer" in out
    diff = float(out.strip().splitlines()[-1])
    assert diff < 1e-4


def test_readme_engine_example_builds_a_valid_run(monkeypatch):
    """The second example (the training engine) with `run` stubbed: its Config must be valid and
    its model and grid must build (the real run is the quickstart, tested end to end)."""
    import dcnn_dd.train as train
    from dcnn_dd.train.config import build_grid, build_model

    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[1]
    calls = []
    monkeypatch.setattr(train, "run", lambda config, run_dir: calls.append((config, run_dir)) or {}, raising=False)
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102
    (config, run_dir), = calls
    assert isinstance(config, train.Config) and run_dir == "results/my_run"
    model = build_model(config.model, 10)
    assert build_grid(config.grid, (28, 28, 1)).K == config.K and model.subnet(config.K).features == (8, 8, 16, 16)


def test_readme_layer_parallel_example_runs(capsys):
    """The layer-parallel section's example: MGRIT gradients equal the serial ones, and 100 one-shot
    steps with 2 + 2 iterations each train the peaks problem."""
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    block, = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "dcnn_dd.layer_parallel" in b]
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102
    diff, last = capsys.readouterr().out.strip().splitlines()[-2:]
    assert float(diff) < 1e-5
    loss, fwd, bwd = last.split()
    assert (int(fwd), int(bwd)) == (2, 2) and float(loss) < 1.0  # log(5) = 1.61 at chance
