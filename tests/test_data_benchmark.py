"""benchmarks/input_pipeline.py runs (tiny variant) and writes what it prints."""

import json

from benchmarks import input_pipeline


def test_input_pipeline_benchmark_tiny(tmp_path):
    rows = input_pipeline.main(["--tiny", "--batch-size", "64", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "input_pipeline.json").read_text())["rows"]
    assert saved == rows and [r["case"] for r in rows] == ["fashion"]
    r = rows[0]
    assert r["K"] == 4 and r["batch"] == 64 and r["sub_shape"] == [16, 16]
    for key in ("host_take_transfer_ips", "device_preprocess_ips", "pipeline_ips", "train_step_ips"):
        assert r[key] > 0
    assert r["pipeline_over_step"] == r["pipeline_ips"] / r["train_step_ips"]
