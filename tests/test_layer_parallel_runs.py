"""Layer-parallel MGRIT end to end: on 4 simulated devices (``shard_map`` over ``layers``, in a
subprocess), the experiment's ``tiny`` preset and the benchmark's ``--quick`` variant."""

import json
import sys

from tests import runs


def test_shard_map_over_4_devices_equals_vmap_and_serial():
    p = runs.run([sys.executable, "-m", "tests.layer_parallel_checks"], devices=4)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["devices"] == 4 and r["shard_map_in_program"], r
    assert r["states_shard_vs_vmap"] < 1e-12, r
    assert r["states_shard_vs_serial"] < 1e-10 and r["grads_shard_vs_serial"] < 1e-10, r
    assert r["iterations"][0] == r["iterations"][1] < 40


def test_experiment_tiny(tmp_path):
    from experiments import layer_parallel

    res = layer_parallel.main(["--preset", "tiny", "--out", str(tmp_path), "--no-progress"])
    saved = runs.read_results(tmp_path, "layer_parallel")
    assert saved["meta"]["preset"] == "tiny"
    for name in ("peaks", "fashion"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
        methods = res["problems"][name]["methods"]
        assert set(methods) == {"serial", "exact", "one-shot"}
        # exact layer-parallel: the same gradients as serial, so the same training curve
        for a, b in zip(methods["serial"]["history"], methods["exact"]["history"]):
            assert abs(a["loss"] - b["loss"]) < 1e-4 and abs(a["val_acc"] - b["val_acc"]) <= 1 / 64
        assert methods["one-shot"]["mean_fwd_iters"] == 2 and methods["exact"]["mean_fwd_iters"] >= 1
        assert all(0 <= h["val_acc"] <= 1 and h["wall_s"] > 0 for m in methods.values() for h in m["history"])
    assert "layer-serial vs layer-parallel" in (tmp_path / "results.md").read_text()


def test_benchmark_quick(tmp_path):
    from benchmarks import mgrit

    r = mgrit.main(["--quick", "--repeats", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "mgrit.json").read_text())
    assert saved["rows"] == r["rows"]
    rows = r["rows"]
    assert {(x["n_layers"], x["mode"], x["devices"]) for x in rows} == {
        (32, m, d) for m in ("tol", "one-shot") for d in (1, 4)}
    for x in rows:
        for key in ("n_layers", "levels", "cfactor", "serial_s", "mgrit_s", "speedup", "modeled_speedup",
                    "iterations", "conv_factor", "backend"):
            assert key in x
        # speedup and modeled_speedup are the benchmark's own quotients; the cost model is checked against
        # hand-counted critical paths in tests/test_layer_parallel.py::test_modeled_critical_path
        assert x["serial_s"] > 0 and x["mgrit_s"] > 0 and x["modeled_speedup"] > 0
        assert x["critical_path_steps"] > x["levels"]  # at least one step per level
        if x["mode"] == "tol":
            assert x["grad_rel_error"] < 1e-2 and x["conv_factor"] < 0.5 and x["iterations"][0] >= 2
        else:
            assert x["iterations"] == [2, 2]
