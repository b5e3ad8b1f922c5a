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
