"""The benchmark scripts run (tiny variant) and write what they promise."""

import json

from benchmarks import compose as bench_compose
from benchmarks import input_pipeline


def test_compose_benchmark_tiny(tmp_path):
    rows = bench_compose.main(["--tiny", "--repeats", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "compose.json").read_text())["rows"]
    assert saved == rows and len(rows) == 1
    r = rows[0]
    assert r["compose_s"] > 0 and r["forward_s"] > 0 and r["compose_over_forward"] == r["compose_s"] / r["forward_s"]


def test_compose_verify_benchmark_tiny(tmp_path):
    rows = bench_compose.main(["--tiny", "--verify", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "compose_verify.json").read_text())["rows"]
    assert saved == rows and len(rows) == 1
    r = rows[0]
    assert r["exact"] and r["plan_verified_s"] > r["plan_s"] > 0 and r["verify_extra_s"] == r["plan_verified_s"] - r["plan_s"]


def test_subnet_speedup_benchmark_tiny(tmp_path):
    from benchmarks import subnet_speedup

    r = subnet_speedup.main(["--tiny", "--repeats", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "subnet_speedup.json").read_text())
    for key in ("time_ratio", "flop_ratio", "efficiency", "strategy", "backend"):
        assert saved[key] == r[key]
    assert set(r["strategies"]) == {"sequential", "vmap", "shard_map"} and r["strategy"] in r["strategies"]
    best = r["strategies"][r["strategy"]]
    assert best["step_s"] == min(s["step_s"] for s in r["strategies"].values())
    # the ratios are the code's own quotients (re-deriving them here would test nothing): only that they are
    # measured, finite, positive numbers
    assert all(0 < r[k] < float("inf") for k in ("global_step_s", "time_ratio", "efficiency"))
    # (2.10): each sub-network has 1/K of the widths (1/K^2 of the MACs per pixel) on 1/K of the
    # pixels, so K of them cost ~1/K^2 of the global network; less where the input channels (3)
    # and the classifier's outputs are not divided
    assert 10 < r["flop_ratio"] <= 16


def test_input_pipeline_benchmark_tiny(tmp_path):
    rows = input_pipeline.main(["--tiny", "--batch-size", "64", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "input_pipeline.json").read_text())["rows"]
    assert saved == rows and [r["case"] for r in rows] == ["fashion"]
    r = rows[0]
    assert r["K"] == 4 and r["batch"] == 64 and r["sub_shape"] == [16, 16]
    for key in ("host_take_transfer_ips", "device_preprocess_ips", "pipeline_ips", "train_step_ips"):
        assert r[key] > 0
    assert r["pipeline_over_step"] == r["pipeline_ips"] / r["train_step_ips"]
