import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dcnn_dd as dd
from dcnn_dd.models import PlainCNN


def test_activation_field_by_hand():
    # 3x3 valid conv then 2x2/2 pool: box [4, 12) -> conv field [4, 10) -> pool field [2, 5)
    ws = [dd.Window(3), dd.Window(2, 2)]
    f = dd.activation_field(ws, (16,), dd.Box((4,), (8,)))
    assert f == [dd.Box((4,), (6,)), dd.Box((2,), (3,))]
    # same padding: the field touching the image border keeps it (padding is not input)
    f = dd.activation_field([dd.Window(3, 1, "SAME")], (16,), dd.Box((0,), (8,)))
    assert f == [dd.Box((0,), (7,))]


@given(st.integers(0, 3), st.sampled_from(["VALID", "SAME"]), st.integers(0, 4), st.integers(4, 10))
def test_exact_fields_match_measured_dependence(seed, padding, start, size):
    model = PlainCNN(features=(3, 3, 3), pool_after=(1,), fc=(), padding=padding, head="gap")
    x = jax.random.normal(jax.random.PRNGKey(seed), (2, 18, 18, 1))
    variables = model.init(jax.random.PRNGKey(seed), x)
    box = dd.Box((start, start + 1), (size, size + 2))
    for name, windows in model.spatial_layers():
        def layer(inp, name=name):
            return model.apply(variables, inp, mutable=["intermediates"])[1]["intermediates"][name][0]
        exact = dd.activation_field(windows, (18, 18), box)[-1]
        measured, _ = dd.probe_activation_field(layer, x, box, trials=3, seed=seed)
        if exact.empty:
            assert measured.empty
        else:
            assert measured == exact, (name, exact, measured)


def test_flatten_fields_windows_and_stride_agree_and_misalignment_is_an_error():
    model = PlainCNN(features=(4, 4, 8, 8), pool_after=(1, 3))
    grid = dd.Grid.uniform((28, 28), 2, size=16)  # origins 0, 12; total stride 4
    by_windows = dd.flatten_fields(grid, (4, 4), (1, 1), windows=model.windows())
    by_stride = dd.flatten_fields(grid, (4, 4), (1, 1))  # stride inferred: (28-16)/(4-1) = 4
    assert by_windows == by_stride
    assert [f.start for f in by_windows] == [(0, 0), (0, 3), (3, 0), (3, 3)]
    bad = dd.Grid.from_origins((30, 30), [(0, 0), (0, 14), (14, 0), (14, 14)], (16, 16))
    with pytest.raises(ValueError, match="not aligned with the network's total stride"):
        dd.flatten_fields(bad, (4, 4), (1, 1), stride=4)
    with pytest.raises(ValueError, match="does not have the sub-network's feature shape"):
        dd.flatten_fields(bad, (4, 4), (1, 1), windows=model.windows())
    loose = dd.flatten_fields(bad, (4, 4), (1, 1), stride=4, strict=False)
    assert [f.start for f in loose] == [(0, 0), (0, 3), (3, 0), (3, 3)]
    assert dd.total_stride(model.windows(), 2) == (4, 4)
    np.testing.assert_equal(len(loose), 4)
