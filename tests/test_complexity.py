"""FLOP and parameter counting (dcnn_dd.complexity) and the complexity report (experiments.complexity)."""

import json
import pathlib
import subprocess
import sys

import flax.linen as nn
import pytest

from dcnn_dd.complexity import (
    KERAS, abstract_variables, count_flops, count_params, flop_report, params_and_flops,
)
from dcnn_dd.models.zoo import VGG16
from experiments import complexity as report

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------- (2.10) by hand
class OneConv(nn.Module):
    features: int = 5
    kernel: tuple = (3, 3)
    strides: tuple = (1, 1)
    padding: str = "SAME"
    groups: int = 1
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        return nn.Conv(self.features, self.kernel, self.strides, padding=self.padding,
                       feature_group_count=self.groups, use_bias=self.use_bias)(x)


class OneDense(nn.Module):
    features: int = 7

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features)(x)


@pytest.mark.parametrize(
    "module, shape, expected",
    [
        (OneConv(), (1, 8, 8, 2), 8 * 8 * (2 * 2 * 3 * 3 - 1) * 5),  # H W (2 c_in t1 t2 - 1) c_out
        (OneConv(padding="VALID"), (1, 8, 8, 2), 6 * 6 * (2 * 2 * 9 - 1) * 5),
        (OneConv(strides=(2, 2)), (1, 8, 8, 2), 4 * 4 * (2 * 2 * 9 - 1) * 5),
        (OneConv(kernel=(1, 3), use_bias=False), (1, 4, 6, 3), 4 * 6 * (2 * 3 * 3 - 1) * 5),
        (OneConv(features=6, groups=2), (1, 5, 5, 4), 5 * 5 * (2 * 2 * 9 - 1) * 6),  # c_in per group
        (OneDense(), (1, 10), (2 * 10 - 1) * 7),
        (OneDense(), (1, 3, 10), 3 * (2 * 10 - 1) * 7),  # one output vector per position
    ],
)
def test_flops_formula_by_hand(module, shape, expected):
    assert count_flops(module, shape) == expected
    rep = flop_report(module, shape)
    assert rep.total == expected and len(rep.layers) == 1 and rep.gflops == expected / 1e9
    (layer,) = rep.layers
    # 2 x MACs = (2.10) + one op per output; bias adds one op per output when present
    assert 2 * rep.macs == expected + layer.positions * layer.kernel_shape[-1]
    assert rep.extras["bias"] == (layer.positions * layer.kernel_shape[-1] if layer.use_bias else 0)
    assert rep.xla_style == 2 * rep.macs + rep.extra_total


def test_count_params_conventions():
    v = abstract_variables(OneConv(), (1, 8, 8, 2))
    assert count_params(v) == 3 * 3 * 2 * 5 + 5
    v = abstract_variables(nn.BatchNorm(use_running_average=True), (1, 4, 4, 3))
    assert count_params(v) == 6 and count_params(v, include=KERAS) == 12 and count_params(v, "batch_stats") == 6


class Small(nn.Module):
    """A user module (not from the zoo): setup-defined layers, BN, ReLU, pooling, residual, GAP."""

    def setup(self):
        self.c1 = nn.Conv(8, (3, 3), padding="SAME", use_bias=False)
        self.bn = nn.BatchNorm(use_running_average=True)
        self.c2 = nn.Conv(8, (3, 3), padding="SAME")
        self.head = nn.Dense(3)

    def __call__(self, x):
        h = nn.relu(self.bn(self.c1(x)))
        h = nn.relu(h + self.c2(h))
        h = nn.max_pool(h, (2, 2), (2, 2))
        return self.head(h.mean(axis=(1, 2)))


def test_generic_user_module_and_extras():
    rep = flop_report(Small(), (1, 8, 8, 4))
    c1 = 64 * (2 * 4 * 9 - 1) * 8
    c2 = 64 * (2 * 8 * 9 - 1) * 8
    d = (2 * 8 - 1) * 3
    assert [r.path for r in rep.layers] == ["c1", "c2", "head"]
    assert (rep.conv, rep.dense, rep.total) == (c1 + c2, d, c1 + c2 + d)
    ex = rep.extras
    assert ex["bias"] == 64 * 8 + 3  # c2 and head
    assert ex["batchnorm"] == 3 * 64 * 8  # x - mean, * scale, + shift per element
    assert ex["activation"] == 2 * 64 * 8  # two ReLUs
    assert ex["add"] == 64 * 8  # the residual addition
    assert ex["pooling"] == 16 * 8 * 3  # 2x2 windows: 3 comparisons per output
    assert ex["reduction"] == (16 - 1) * 8
    assert ex["other"] <= 8  # the division of the mean


def test_vgg16_flops_by_hand():
    """(2.10) summed over Table 2.1's layers at 224x224."""
    convs = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128), (56, 128, 256), (56, 256, 256),
             (56, 256, 256), (28, 256, 512), (28, 512, 512), (28, 512, 512), (14, 512, 512), (14, 512, 512),
             (14, 512, 512)]
    fcs = [(7 * 7 * 512, 4096), (4096, 4096), (4096, 1000)]
    expected = sum(h * h * (2 * ci * 9 - 1) * co for h, ci, co in convs) + sum((2 * i - 1) * o for i, o in fcs)
    params, rep = params_and_flops(VGG16(), (1, 224, 224, 3))
    assert rep.total == expected and params == 138_357_544
    assert round(rep.gflops, 2) == 30.93


def test_batch_dimension_scales():
    assert count_flops(OneConv(), (3, 8, 8, 2)) == 3 * count_flops(OneConv(), (1, 8, 8, 2))


# ------------------------------------------------------------------------ the report
def test_printed_match_and_inferred_values():
    assert report.printed_match(138_357_544, "138.35") == "truncated"
    assert report.printed_match(25_557_032, "25.56") == "rounded"
    assert report.printed_match(7_442_698, "7.44") == "rounded+truncated"
    assert report.printed_match(25_636_712, "25.79") is None
    g, src = report.paper_gflops(report.PAPER[("3.1", "ResNet56", "global", 1, None)])
    assert g == pytest.approx(4.08, abs=0.005) and src.startswith("inferred")
    g, src = report.paper_gflops(report.PAPER[("3.1", "ResNet110", "global", 1, None)])
    assert g == pytest.approx(8.23, abs=0.005)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """``python -m experiments.complexity --out <tmp>`` in a fresh interpreter (as a user runs it;
    also faster than in-process, where JAX records the deep pytest stack on every traced op)."""
    out = tmp_path_factory.mktemp("results")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.complexity", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| 3.4 | ResNet101 | subnet | 16 |" in proc.stdout  # the markdown table is printed
    return out


def test_report_end_to_end(written):
    data = json.loads((written / "complexity.json").read_text())
    rows = data["rows"]
    assert len(rows) == 6 + 9 + 8
    for r in rows:
        assert {"network", "role", "partitions", "input", "params", "gflops", "table", "paper_params",
                "paper_gflops", "params_match"} <= set(r)
        assert r["role"] in ("global", "subnet") and isinstance(r["partitions"], int)
        assert isinstance(r["params"], int) and isinstance(r["gflops"], float) and r["gflops"] > 0
        assert len(r["input"]) == 2 and all(isinstance(n, int) for n in r["input"])
        assert r["params_match"] is not None, r  # every count agrees with the paper's printed precision
    tables = {(r["table"], r["network"], r["role"], r["partitions"], r.get("overlap")): r for r in rows}
    assert set(tables) == set(report.PAPER)
    # Table 2.2 and the VGG16 sub-network of Table 2.1 / Fig. 2.1
    assert tables[("2.2", "VGG16", "subnet", 4, None)]["input"] == [112, 112]
    assert tables[("2.2", "VGG16", "subnet", 4, None)]["params"] == 4_176_056
    # Table 3.1: overlap 20x20, no overlap 16x16, sub-network parameters independent of it
    sub = [r for r in rows if r["table"] == "3.1" and r["role"] == "subnet"]
    assert {tuple(r["input"]) for r in sub if r["overlap"]} == {(20, 20)}
    assert {tuple(r["input"]) for r in sub if not r["overlap"]} == {(16, 16)}
    # Table 3.4, Keras convention: exact counts (paper 25.79M / 1.66M / 0.43M / 0.12M, 44.86M / ...)
    t34 = {(r["network"], r["partitions"]): r for r in rows if r["table"] == "3.4"}
    assert [t34[("ResNet50", k)]["params"] for k in (1, 4, 8, 16)] == [25_789_413, 1_658_181, 430_037, 115_293]
    assert [t34[("ResNet101", k)]["params"] for k in (1, 4, 8, 16)] == [44_859_877, 2_874_565, 742_293, 197_437]
    assert t34[("ResNet50", 8)]["input"] == [140, 80] and t34[("ResNet50", 16)]["input"] == [70, 70]
    # TF-profiler-style counting reproduces Table 3.4's global GFLOPs within 0.5%
    for net in ("ResNet50", "ResNet101"):
        assert abs(t34[(net, 1)]["xla_style_rel_diff"]) < 0.005
    md = (written / "complexity.md").read_text()
    for t in ("Table 2.2", "Table 3.1", "Table 3.4", "Why the numbers differ", "214", "truncated"):
        assert t in md
    assert data["seconds"] < 60
