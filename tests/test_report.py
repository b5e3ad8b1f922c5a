"""experiments.report and experiments/paper_numbers.json: transcription spot checks and the report
built from synthetic results.json files (no training; fast)."""

import json
import pathlib

import pytest

from experiments import report

KEYS = report.KEYS


@pytest.fixture(scope="module")
def paper():
    return report.load_paper_numbers()


def find(paper, table, **keys):
    hits = report.match({"table": table, **keys}, paper["tables"][table]["entries"])
    assert len(hits) == 1, (table, keys, hits)
    return hits[0]["value"]


# ------------------------------------------------------------------------------ paper numbers
def test_paper_numbers_well_formed(paper):
    assert list(paper["tables"]) == ["2.2", "3.1", "3.2", "3.3", "3.4", "3.5"]
    for tid, table in paper["tables"].items():
        assert table["caption"] and table["entries"]
        seen = set()
        for e in table["entries"]:
            assert e["table"] == tid and e["row"] and e["metric"]
            assert set(e) <= set(KEYS) | {"value", "note", "printed"}
            v = e["value"]
            if "printed" in e:  # the digits as printed agree with the value
                assert float(e["printed"]) == v, e
            assert v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            if e["metric"] in ("acc", "top1", "top5"):
                assert 0 <= v <= 1
            key = tuple(e.get(k) for k in KEYS)
            assert key not in seen, key  # every entry addressable by its key fields
            seen.add(key)


def test_paper_numbers_spot_checks(paper):
    c10 = dict(metric="acc", dataset="cifar10", model="ResNet32")
    assert find(paper, "3.3", row="SNet-1", overlap=True, **c10) == 0.8049
    assert find(paper, "3.3", row="SNet-1", overlap=False, **c10) == 0.6892
    assert find(paper, "3.3", row="GNet-R-trained", metric="acc", dataset="cifar100", model="ResNet110") == 0.7068
    f50 = dict(dataset="food101", model="ResNet50")
    assert find(paper, "3.5", row="GNet-T-4", metric="top1", K=4, **f50) == 0.4909
    assert find(paper, "3.4", row="GNet", metric="params_M", K=1, **f50) == 25.79
    assert find(paper, "3.4", row="GNet", metric="time_s", K=1, devices=4, **f50) == 2227
    assert find(paper, "3.4", row="SNet-8", metric="params_M", K=8, **f50) == 0.43
    r32 = dict(dataset="cifar10", model="ResNet32")
    assert find(paper, "3.2", row="4 sub-networks", metric="time_s", overlap=True, batch_size=32,
                augment=False, **r32) == 620
    assert find(paper, "3.2", row="global network", metric="time_s", batch_size=16384, augment=False, **r32) is None
    g110 = find(paper, "3.1", row="global-net", metric="gflops", dataset="cifar10", model="ResNet110", K=4)
    sub = find(paper, "3.1", row="sub-net", metric="gflops", dataset="cifar10", model="ResNet110", overlap=True, K=4)
    assert sub == 0.207 and g110 == pytest.approx(0.207 * 39.76, abs=0.005)


def test_complexity_reads_the_one_transcription(tmp_path):
    """experiments.complexity's paper counts come from paper_numbers.json (no second copy): an edited
    file changes them; the printed digits (trailing zeros) survive."""
    from experiments import complexity

    assert complexity.PAPER[("2.2", "VGG16", "global", 1, None)] == {"params": "138.35", "gflops": "31.65"}
    assert complexity.PAPER[("3.4", "ResNet101", "subnet", 16, None)]["params"] == "0.20"  # not 0.2
    g56 = complexity.PAPER[("3.1", "ResNet56", "global", 1, None)]
    assert g56["gflops"] is None and g56["inferred"] == [("0.103", "39.61"), ("0.067", "60.90")]
    data = report.load_paper_numbers()
    for e in data["tables"]["2.2"]["entries"]:
        if e["model"] == "VGG16" and e["row"] == "global-net" and e["metric"] == "params_M":
            e["printed"], e["value"] = "138.36", 138.36
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(data))
    assert complexity.load_paper(path)[("2.2", "VGG16", "global", 1, None)]["params"] == "138.36"
    assert not hasattr(complexity, "TABLE_2_2") and "138.35" not in pathlib.Path(complexity.__file__).read_text()


def test_match_needs_every_key_present_in_either():
    p = [{"table": "3.3", "row": "GNet-R-trained", "metric": "acc", "model": "ResNet32", "value": 0.9},
         {"table": "3.3", "row": "SNet-1", "metric": "acc", "model": "ResNet32", "overlap": True, "value": 0.8}]
    assert report.match({"table": "3.3", "row": "GNet-R-trained", "metric": "acc", "model": "ResNet32"}, p) == p[:1]
    assert report.match({"table": "3.3", "row": "SNet-1", "metric": "acc", "model": "ResNet32"}, p) == []
    assert report.match({"table": "3.3", "row": "SNet-1", "metric": "acc", "model": "ResNet32",
                         "overlap": True, "ours": "x", "note": "y"}, p) == p[1:]


# ----------------------------------------------------------------------------------- the report
def write_cifar(root, entries=None):
    d = root / "cifar"
    d.mkdir(parents=True)
    (d / "fig3_1_times.png").write_bytes(b"\x89PNG")
    res = {
        "experiment": "cifar", "preset": "cpu-smoke",
        "meta": {"date": "2026-11-23T12:00:00", "backend": "cpu", "device_kind": "cpu", "devices": 1,
                 "processes": 1, "jax": "0.10.2", "command": "python -m experiments.cifar --preset cpu-smoke",
                 "wall_s": 123.4},
        "stand_in": "Fashion-MNIST 28x28, ResNet-8 standing in for CIFAR-10 ResNet32",
        "entries": entries if entries is not None else [
            {"table": "3.3", "row": "SNet-1", "metric": "acc", "dataset": "cifar10", "model": "ResNet32",
             "overlap": True, "value": 0.7123, "ours": "ResNet-8 on Fashion-MNIST"},
            {"table": "3.2", "row": "global network", "metric": "time_s", "dataset": "cifar10",
             "model": "ResNet32", "batch_size": 32, "augment": False, "value": 12.34},
            {"table": "3.3", "row": "SNet-9", "metric": "acc", "dataset": "cifar10", "model": "ResNet32",
             "overlap": True, "value": None},
        ],
        "figures": {"3.1": "fig3_1_times.png", "3.2": "fig3_2_accuracy.png"},
        "notes": ["deviation: sub-networks slower than the paper's; likely cause: CPU"],
    }
    (d / "results.json").write_text(json.dumps(res))
    return d


def test_report_joins_ours_with_paper(tmp_path):
    write_cifar(tmp_path)
    text = report.build_report(tmp_path)
    assert "cpu-smoke" in text and "`python -m experiments.cifar --preset cpu-smoke`" in text and "123.4 s" in text
    ours_line = next(l for l in text.splitlines() if "71.23%" in l)
    assert "80.49%" in ours_line and "SNet-1" in ours_line and "cifar/cpu-smoke" in ours_line
    time_line = next(l for l in text.splitlines() if "12.3 s" in l)
    assert "1395.0 s" in time_line
    snet2 = [l for l in text.splitlines() if "| SNet-2 |" in l]
    assert snet2 and all("| missing |" in l for l in snet2)
    unmatched = next(l for l in text.splitlines() if "SNet-9" in l)
    assert "not measured" in unmatched and "| - |" in unmatched
    for name in ("partitions", "visualize"):
        assert f"MISSING `{name}`" in text and f"python -m experiments.{name} --preset cpu-smoke" in text
    assert "MISSING `cifar`" not in text
    assert "no results yet" in text.split("## Table 3.4")[1]  # partitions tables: paper numbers only
    assert "![Figure 3.1](cifar/fig3_1_times.png)" in text
    assert "Figure 3.2: missing" in text and "![Figure 3.2]" not in text
    assert "Fashion-MNIST 28x28" in text and "- deviation: sub-networks slower" in text
    assert "71.23% (stand-in)" in ours_line  # a stand-in's value filed under the paper's keys is marked


def test_values_of_a_paper_setting_run_are_not_marked(tmp_path):
    d = write_cifar(tmp_path)
    res = json.loads((d / "results.json").read_text())
    res["preset"], res["stand_in"] = "paper", None
    (d / "results.json").write_text(json.dumps(res))
    line = next(l for l in report.build_report(tmp_path).splitlines() if "71.23%" in l)
    assert "stand-in" not in line


def test_unreadable_results_reported(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    (tmp_path / "nokeys").mkdir()
    (tmp_path / "nokeys" / "results.json").write_text(json.dumps({"experiment": "nokeys"}))
    text = report.build_report(tmp_path)
    assert "UNREADABLE" in text and "broken" in text and "JSONDecodeError" in text
    assert "nokeys" in text and "entries" in text
    assert "71.23%" in text  # the readable experiment is still reported


def test_unknown_table_listed(tmp_path):
    write_cifar(tmp_path, entries=[
        {"table": "fig3.7-diff", "row": "layer 1", "metric": "max_abs_diff", "value": 3e-7},
        {"table": "cnn_dnn-1", "row": "GNet-T", "metric": "acc", "dataset": "mnist", "value": 0.98},
    ])
    text = report.build_report(tmp_path)
    others = text.split("## Tables not in the paper")[1]
    assert "### fig3.7-diff" in others and "3e-07" in others
    assert "### cnn_dnn-1" in others and "98.00%" in others
    assert "no results yet" in text.split("## Table 3.3")[1].split("## Table 3.4")[0]


def test_main_writes_file(tmp_path):
    write_cifar(tmp_path / "res")
    out = tmp_path / "elsewhere" / "REPORT.md"
    assert report.main(["--results", str(tmp_path / "res"), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Results report")
    assert "![Figure 3.1](../res/cifar/fig3_1_times.png)" in text
    assert report.main(["--results", str(tmp_path / "empty")]) == 0
    assert "No results found" in (tmp_path / "empty" / "REPORT.md").read_text()
