"""experiments.visualize (Figs. 3.7 / 3.8): Theorem 2.1 (1) on the DogsCatsCNN's feature maps for
perturbed composed sub-networks, the alignment error, and the tiny preset end to end."""


import jax
import numpy as np
import pytest

import dcnn_dd as dd
from dcnn_dd.models.zoo import DogsCatsCNN
from experiments import visualize
from tests import runs

MODEL = DogsCatsCNN(widths=(4, 4, 8, 8, 8, 8, 8, 8, 8, 8), num_classes=3)  # pools after convs 2, 4, 6, 8


def random_stacked(sub, sub_shape, K, seed=3):  # noqa: N803
    """K random sub-networks, stacked: every leaf (kernels and biases) drawn afresh, so nothing is
    at its initial value (numpy: op-by-op ``init`` + perturbation takes seconds on a CPU)."""
    shapes = jax.eval_shape(lambda: sub.init(jax.random.PRNGKey(0), np.zeros((1, *sub_shape), np.float32)))
    rng = np.random.default_rng(seed)

    def leaf(s):
        if len(s.shape) == 1:  # biases
            return rng.normal(0.05, 0.1, size=(K, *s.shape)).astype(np.float32)
        return (rng.normal(size=(K, *s.shape)) * 1.5 / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32)

    return jax.tree.map(leaf, shapes)


@pytest.fixture(scope="module")
def composed():
    """Random sub-networks on 20x20x3 sub-images, composed into the 32x32x3 global network (the
    composition of this GAP network does not depend on where the sub-images lie)."""
    grid = dd.Grid.uniform((32, 32), 2, size=20)  # 2x2, origins 0 and 12, overlapping
    sub = MODEL.subnet(grid.K)
    x = np.random.default_rng(7).normal(size=(2, 32, 32, 3)).astype(np.float32)
    stacked = random_stacked(sub, (20, 20, 3), grid.K)
    plan = dd.plan_for(MODEL, sub, grid, input_shape=(1, 32, 32, 3))
    return grid, sub, x, stacked, jax.jit(lambda s: dd.compose(plan, s))(stacked)


def test_spatial_layers_windows():
    layers = MODEL.spatial_layers()
    assert [n for n, _ in layers] == [f"layer{i}" for i in range(1, 11)]
    strides = [dd.fields.total_stride(w, 2)[0] for _, w in layers]
    assert strides == [1, 1, 2, 2, 4, 4, 8, 8, 16, 16]


def test_feature_maps_agree_on_the_fields(composed):
    grid, sub, x, stacked, g = composed
    assert grid.overlaps and grid.origins[-1] == (12, 12)
    diffs = visualize.feature_map_agreement(MODEL, sub, g, stacked, x, grid, layers=(1, 3, 5))
    assert set(diffs) == {1, 3, 5} and all(len(v) == 4 for v in diffs.values())
    assert max(max(v) for v in diffs.values()) < 1e-4, diffs
    maps = visualize.subdomain_maps(MODEL, sub, g, stacked, x, grid, layers=(1, 3, 5))
    # SAME padding: the field loses a cell per conv at interior borders only (20 -> 19 at layer 1)
    assert maps[1][0][2].size == (19, 19) and maps[1][3][2].start == (13, 13)
    assert maps[5][3][2].start == (6, 6)  # lost cells at the interior border: 13, 14, pool 7, 8, 9, pool 5, 6
    assert np.abs(maps[5][0][1]).max() > 0  # a non-trivial comparison
    # sub-networks paired with the wrong subdomains differ: the check can fail
    other = jax.tree.map(lambda a: a[::-1], stacked)
    assert max(visualize.feature_map_agreement(MODEL, sub, g, other, x, grid, layers=(1, 3, 5))[1]) > 1e-2


def test_unaligned_origins_are_a_clear_error(composed):
    _, sub, x, stacked, g = composed
    grid = dd.Grid.from_origins((32, 32), [(0, 0), (0, 10), (10, 0), (10, 10)], (20, 20))
    assert max(visualize.feature_map_agreement(MODEL, sub, g, stacked, x, grid, layers=(1, 3))[3]) < 1e-4
    with pytest.raises(ValueError, match="origin 10 .* not a multiple of the cumulative stride 4"):
        visualize.feature_map_agreement(MODEL, sub, g, stacked, x, grid, layers=(1, 3, 5))


def test_presets_exist():
    assert set(visualize.PRESETS) == {"paper", "gpu-small", "cpu-smoke", "tiny"}
    p = visualize.PRESETS["paper"]().config
    assert p.dataset == "cats_vs_dogs" and tuple(p.image_size) == (224, 224) and p.grid == {"paper": "food101-4"}
    assert p.model["widths"] == visualize.PAPER_WIDTHS and p.model["pool_every"] == 2 and p.batch_size == 32
    assert visualize.PRESETS["cpu-smoke"]().config.strategy == "sequential"


def test_tiny_preset_end_to_end(tmp_path):
    res = visualize.main(["--preset", "tiny", "--out", str(tmp_path), "--no-progress"])
    data = runs.read_results(tmp_path, "visualize")
    assert data["stand_in"]
    assert data["figures"] == {"3.7": "fig3_7_feature_maps.png", "3.8": "fig3_8_cam.png"}
    for f in data["figures"].values():
        assert (tmp_path / f).stat().st_size > 10000
    fm = {e["row"]: e["value"] for e in data["entries"] if e["table"] == "fig3.7"}
    assert set(fm) == {"layer1", "layer3", "layer5"} and all(e["metric"] == "max_abs_diff" for e in data["entries"]
                                                              if e["table"] == "fig3.7")
    assert max(fm.values()) < 1e-4
    acc = {e["row"]: e["value"] for e in data["entries"] if e["table"] == "fig3.8"}
    assert set(acc) == {"SNet-1", "SNet-2", "SNet-3", "SNet-4", "GNet-T", "GNet-T-trained", "GNet-R",
                        "GNet-R-trained"}
    assert all(0.0 <= a <= 1.0 for a in acc.values())
    assert len(data["tables_md"]) == 2 and data["notes"] and data["meta"]["wall_s"] > 0
    md = (tmp_path / "results.md").read_text()
    assert "fig3_7_feature_maps.png" in md and "layer" in md
    assert res["entries"] == data["entries"]
