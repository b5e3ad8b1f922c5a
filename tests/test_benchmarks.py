"""The benchmark scripts run (tiny variant) and write what they promise."""

import json

from benchmarks import compose as bench_compose


def test_compose_benchmark_tiny(tmp_path):
    rows = bench_compose.main(["--tiny", "--repeats", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "compose.json").read_text())["rows"]
    assert saved == rows and len(rows) == 1
    r = rows[0]
    assert r["compose_s"] > 0 and r["forward_s"] > 0 and r["compose_over_forward"] == r["compose_s"] / r["forward_s"]
