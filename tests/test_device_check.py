"""benchmarks.device_check: the dry run (tiny sizes, CPU) runs every part and writes what the GPU
run will write, without TensorFlow-Datasets; the budget logic skips what does not fit."""

import json
import sys
import time

import numpy as np
import pytest

from benchmarks import device_check as dc
from tests import runs

# Runs the dry run with any import of tensorflow / tensorflow_datasets made to fail (the GPU
# machine has neither), and reports whether tensorflow_datasets was asked for and whether either
# got imported.  (Third-party code may try ``import tensorflow`` and fall back: JAX's persistent
# compilation cache does, through etils.)
BLOCKED_RUN = """
import sys
attempts = []
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            attempts.append(name)
            raise ImportError("blocked on the GPU machine: " + name)
        return None
sys.meta_path.insert(0, Block())
from benchmarks import device_check
device_check.main(sys.argv[1:])
print("TFDS_IMPORT_ATTEMPTS", [a for a in attempts if a.startswith("tensorflow_datasets")],
      any(m.split(".")[0] in ("tensorflow", "tensorflow_datasets") for m in sys.modules))
"""


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check")
    t0 = time.perf_counter()
    p = runs.run([sys.executable, "-c", BLOCKED_RUN, "--dry-run", "--out", str(out)], timeout=600)
    wall = time.perf_counter() - t0
    print(f"dry run: {wall:.1f} s")
    return out, p.stdout, wall


def test_dry_run_needs_no_tensorflow(dry_run):
    _, stdout, _ = dry_run
    assert "TFDS_IMPORT_ATTEMPTS [] False" in stdout, stdout[-2000:]


def test_dry_run_writes_every_part(dry_run):
    out, _, _ = dry_run
    doc = json.loads((out / "device_check.json").read_text())
    assert doc["dry_run"] is True and doc["schema"] == 1 and doc["fast_compile"] is True
    v = doc["versions"]
    for key in ("python", "jax", "jaxlib", "flax", "optax", "backend", "device_kind", "device_count"):
        assert v[key], key
    assert v["backend"] == "cpu"
    assert list(doc["parts"]) == list(dc.PARTS)
    for name, part in doc["parts"].items():
        assert part["status"] in {"ok", "skipped", "failed"}, (name, part["status"])
        if part["status"] != "ok":
            assert part["notes"], name
    # parts 1-4 measure on any backend; parts 5 and 6 need the data (not given here) and experiments.payoff
    for name in dc.PARTS[:4]:
        assert doc["parts"][name]["status"] == "ok", (name, doc["parts"][name]["notes"])
    for name in ("time_to_accuracy", "converged"):
        assert doc["parts"][name]["status"] == "skipped" and "no --data" in doc["parts"][name]["notes"][0]

    sub = doc["parts"]["subnet_phase"]
    # ResNet (here the dry run's tiny PlainCNN) on both grids, then the demo network, each in float32 and bfloat16
    assert [(r["network"], r["dtype"], r["grid"]) for r in sub["rows"]] == [
        *[("resnet32", d, g) for d in ("float32", "bfloat16") for g in dc.GRIDS],
        ("demo", "float32", "nonoverlap"), ("demo", "bfloat16", "nonoverlap")]
    for r in sub["rows"]:
        assert set(r["strategies"]) == {"vmap", "sequential"} and r["global_step_s"] > 0
        assert all(s["step_s"] > 0 for s in r["strategies"].values())
        assert r["time_ratio"] == r["global_step_s"] / r["strategies"][r["strategy"]]["step_s"]
        assert r["flop_ratio"] > 1 and r["global_memory_bytes"] > 0
    assert sub["global_steps"][0]["step_s"] == sub["rows"][0]["global_step_s"]  # measured once per batch
    assert [(g["network"], g["dtype"]) for g in sub["global_steps"]] == [
        ("resnet32", "float32"), ("resnet32", "bfloat16"), ("demo", "float32"), ("demo", "bfloat16")]

    sweep = doc["parts"]["table_3_2"]
    assert sweep["strategy"] == sub["rows"][0]["strategy"]  # the fastest one of part 1
    for r in sweep["rows"]:
        for k in ("global", "subnets-overlap", "subnets-nonoverlap"):
            assert r[k]["s_per_step"] > 0 and r[k]["time_s"] > 0
    assert {e["row"] for e in sweep["entries"]} >= {"global network", "4 sub-networks", "ratio"}
    assert [r["dtype"] for r in sweep["rows"]] == ["float32", "bfloat16"]  # one batch size in the dry run

    mg = doc["parts"]["mgrit"]["rows"]
    assert [r["mode"] for r in mg] == ["one-shot", "tol"]
    assert mg[0]["serial_s"] == mg[1]["serial_s"] > 0  # the serial time is measured once per N
    for r in mg:
        assert r["mgrit_s"] > 0 and r["speedup"] == r["serial_s"] / r["mgrit_s"] and min(r["iterations"]) >= 1
    assert mg[0]["iterations"] == [2, 2] and mg[1]["grad_rel_error"] < 1e-3

    checks = doc["parts"]["backend_paths"]["rows"]
    assert len(checks) == 2 and all(r["passed"] for r in checks)

    md = (out / "device_check.md").read_text()
    for name in dc.PARTS:
        assert f"## {name}: {doc['parts'][name]['status']}" in md
    assert "| N | levels | mode |" in md and "| network | dtype | grid | batch |" in md


def test_budgets_split_the_total_and_take_overrides():
    b = dc.budgets(dc.DEFAULT_BUDGET_S, {})
    assert b == {k: float(v) for k, v in dc.BUDGET_SHARES.items()} and sum(b.values()) == dc.DEFAULT_BUDGET_S
    half = dc.budgets(240, {"mgrit": 7})
    assert half["mgrit"] == 7 and half["subnet_phase"] == dc.BUDGET_SHARES["subnet_phase"] / 2


def test_a_measurement_that_does_not_fit_is_skipped_with_a_note():
    class Saves:
        n = 0

        def save(self):
            self.n += 1

    ran = []
    part = {"name": "p", "notes": [], "errors": [], "rows": []}
    items = [(lb, lambda lb=lb: (ran.append(lb), time.sleep(0.3))) for lb in ("a", "b", "c")]
    report = Saves()
    dc.measure_each(part, dc.Clock(0.5), report, items)
    # "a" took 0.3 s with 0.2 s left: "b" would not fit, so neither it nor "c" starts
    assert ran == ["a"] and report.n == 1
    assert part["notes"] == [part["notes"][0]] and "skipped" in part["notes"][0] and part["notes"][0].endswith(": b, c")

    def boom():
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory")

    part = {"name": "p", "notes": [], "errors": [], "rows": []}
    dc.measure_each(part, dc.Clock(60), report, [("x", boom), ("y", lambda: part["rows"].append(1))])
    assert part["errors"] == ["x"] and part["rows"] == [1] and "RESOURCE_EXHAUSTED" in part["notes"][0]


def test_a_spent_part_budget_skips_the_part(tmp_path):
    doc = dc.main(["--dry-run", "--out", str(tmp_path), "--parts", "mgrit,time_to_accuracy",
                   "--part-budget", "mgrit=0", "--data", str(tmp_path / "nowhere")])
    parts = doc["parts"]
    assert parts["mgrit"]["status"] == "skipped" and parts["mgrit"]["rows"] == []
    assert "budget of 0 s spent" in parts["mgrit"]["notes"][0] and "N=32 one-shot" in parts["mgrit"]["notes"][0]
    assert parts["subnet_phase"]["notes"] == ["not selected (--parts)"]
    tta = parts["time_to_accuracy"]
    assert tta["status"] == "skipped" and "not in" in tta["notes"][0]  # no IDX files in that folder
    assert json.loads((tmp_path / "device_check.json").read_text())["parts"]["mgrit"]["status"] == "skipped"
    import jax

    assert not jax.config.read("jax_disable_most_optimizations")  # the dry run's setting does not leak out


def test_synthetic_cifar_source():
    from dcnn_dd.data import load, load_synthetic

    train = load("synthetic_cifar", "train")
    assert len(train) == 50000 and train.image_shape == (32, 32, 3) and train.num_classes == 10
    assert len(load("synthetic_cifar", "test")) == 10000
    a, la = train.take(np.arange(4))
    b, lb = load_synthetic.__wrapped__("synthetic_cifar", "train").take(np.arange(4))  # not the cached one
    assert a.dtype == np.uint8 and (a == b).all() and (la == lb).all()
    with pytest.raises(ValueError, match="split"):
        load("synthetic_cifar", "validation")


def test_payoff_parts_run_the_protocols(tmp_path):
    """Parts 5 and 6 wired to experiments.payoff on the real data, exact network, one seed: the
    short protocol (tiny preset) and the converged one (converged-tiny, the dry run's form of
    converged-gpu), each in a subprocess, their results copied in and tabulated."""
    import os

    data = os.environ.get("DCNN_DD_DATA", "/usr/share/datasets/fashion-mnist")
    doc = dc.main(["--dry-run", "--out", str(tmp_path), "--parts", "time_to_accuracy,converged", "--data", data,
                   "--part-budget", "time_to_accuracy=600", "--part-budget", "converged=600"])
    tta = doc["parts"]["time_to_accuracy"]
    assert tta["status"] == "ok", tta["notes"]
    assert "--networks exact" in tta["command"] and "--preset tiny" in tta["command"]
    assert "--variants base" in tta["command"]  # the dry run: one variant (the device run: the preset's all)
    rows = tta["rows"]
    assert rows and {(r["network"], r["variant"]) for r in rows} == {("exact", "base")}
    assert all(len(r["gnet_t_first_hit_s"]) == 1 and "ratio_mean" in r for r in rows)
    assert (tmp_path / "payoff" / "results.json").exists()

    conv = doc["parts"]["converged"]
    assert conv["status"] == "ok", conv["notes"]
    assert "--preset converged-tiny" in conv["command"] and "--variants restart" in conv["command"]
    assert conv["result"]["protocol"] == "converged" and conv["result"]["seeds"] == [0]
    assert [(r["network"], r["variant"]) for r in conv["rows"]] == [("exact", "restart")]
    r = conv["rows"][0]
    assert len(r["gnet_t_first_hit_s"]) == 1 and 0 < r["gnet_t_final"]["per_seed"][0] <= 1
    assert "converged payoff, exact restart, seed 0: GNet-T" in " ".join(dc.verdicts({**doc, "dry_run": False}))
    md = (tmp_path / "device_check.md").read_text()
    assert "## converged: ok" in md and "| exact | restart | 1 |" in md
    assert (tmp_path / "converged" / "results.json").exists()
