"""experiments.cifar end to end at its test scale (the ``tiny`` preset of the cpu-smoke experiment).

Asserts the structure of the outputs and what holds at any scale: in the theorem-exact control
(valid padding, flatten + FC head) the composed network reproduces the sum of the sub-networks'
logits (Theorem 2.1), classifies right every sample all sub-networks classify right with no
larger cost (Theorem 2.2), and is at least as accurate as the best sub-network.  The ResNet's
deviation (GAP, same padding, BatchNorm) is measured and reported, not asserted.
"""


import pytest

from experiments import cifar
from tests import runs


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar")
    results = cifar.main(["--preset", "tiny", "--out", str(out), "--no-progress", "--batch-sizes", "32"])
    return out, results


def test_outputs_and_schema(result):
    out, r = result
    on_disk = runs.read_results(out, "cifar")
    assert "Fashion-MNIST" in on_disk["stand_in"]
    for fig in on_disk["figures"].values():
        assert (out / fig).stat().st_size > 1000
    md = (out / "results.md").read_text()
    assert "Table 3.2" in md and "Table 3.3" in md and "theorem-exact control" in md
    tables = {e["table"] for e in on_disk["entries"]}
    assert {"3.1", "3.2", "3.3", "3.3-exact", "fig3.1"} <= tables
    # Table 3.3: 4 SNets, GNet-T, GNet-T-trained for both layouts; GNet-R-trained once
    t33 = [e for e in on_disk["entries"] if e["table"] == "3.3" and e["metric"] == "acc"]
    for overlap in (True, False):
        rows = {e["row"] for e in t33 if e.get("overlap") is overlap}
        assert rows == {"SNet-1", "SNet-2", "SNet-3", "SNet-4", "GNet-T", "GNet-T-trained"}
    assert [e["row"] for e in t33 if "overlap" not in e] == ["GNet-R-trained"]
    assert all(0 <= e["value"] <= 1 for e in t33)
    # Table 3.2: global and sub-network times, their ratio and memory for each layout
    t32 = [e for e in on_disk["entries"] if e["table"] == "3.2"]
    assert {(e["row"], e["metric"]) for e in t32} >= {("global network", "time_s"), ("4 sub-networks", "time_s"),
                                                     ("ratio", "ratio"), ("global network", "memory_MB")}
    assert all(e["value"] > 0 for e in t32)
    assert {e["batch_size"] for e in t32} == {32}  # --batch-sizes replaced the tiny preset's sweep (64)
    # Table 3.1: the sub-network has about 1/K^2 of the parameters (K = 4)
    ratio = [e["value"] for e in on_disk["entries"] if e["table"] == "3.1" and e["row"] == "ratio"
             and e["metric"] == "params_M"]
    assert ratio and all(8 < v < 17 for v in ratio)


def test_theorem_exact_control(result):
    _, r = result
    s = r["cases"]["fashion_mnist_idx-plain-exact"]["summary"]
    assert s["theorem_2_1_max_abs_diff"] < 1e-4  # Theorem 2.1 (2.16): logits = sum of sub-network logits
    t22 = s["theorem_2_2"]
    assert t22["intersection_holds"] and t22["cost_bound_holds"]  # Theorem 2.2
    assert t22["all_subnets_correct"] > 0  # else the two lines above hold vacuously
    assert t22["composed_correct_of_those"] == t22["all_subnets_correct"]
    assert s["gnet_t_init_acc"] >= max(s["snet_acc"])  # at least as accurate as the best sub-network


def test_resnet_deviation_is_measured_and_reported(result):
    _, r = result
    for name in ("fashion_mnist_idx-resnet8-overlap", "fashion_mnist_idx-resnet8-nonoverlap"):
        s = r["cases"][name]["summary"]
        assert s["theorem_2_1_max_abs_diff"] > 1e-3  # GAP / same padding / BatchNorm: not the exact sum
        deviates = s["gnet_t_init_acc"] < max(s["snet_acc"])
        assert deviates == any(n.startswith(f"DEVIATION {name}: GNet-T before training") for n in r["notes"])


@pytest.mark.parametrize("bad", ["32,x", "0", ""])
def test_bad_batch_sizes_are_a_usage_error(bad, capsys):
    with pytest.raises(SystemExit) as e:
        cifar.main(["--preset", "tiny", "--batch-sizes", bad])
    assert e.value.code == 2 and "batch sizes" in capsys.readouterr().err
