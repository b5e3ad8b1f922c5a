import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import dcnn_dd as dd


def test_paper_layouts():
    g = dd.paper_grid("cifar")
    assert (g.K, g.sub_shape, g.origins) == (4, (16, 16), ((0, 0), (0, 16), (16, 0), (16, 16)))
    assert g.is_complete and not g.overlaps
    g = dd.paper_grid("cifar-overlap")
    assert (g.K, g.sub_shape, g.origins[-1]) == (4, (20, 20), (12, 12)) and g.overlaps
    g = dd.paper_grid("food101-4")
    assert (g.K, g.sub_shape, g.origins[-1]) == (4, (140, 140), (84, 84))
    g = dd.paper_grid("food101-8")
    assert (g.K, g.sub_shape) == (8, (140, 80)) and (g.coverage() >= 1).all()
    g = dd.paper_grid("food101-16")
    assert (g.K, g.sub_shape, g.crop) == (16, (70, 70), (24, 24))
    cov = g.coverage()
    assert (cov[24:200, 24:200] >= 1).all() and cov[:24].sum() == 0 and cov[200:].sum() == 0
    assert g.origins[0] == (24, 24) and g.origins[-1] == (130, 130)
    with pytest.raises(ValueError, match="unknown layout"):
        dd.paper_grid("imagenet")


def test_decompose_input_shapes_values_and_jit():
    g = dd.Grid.uniform((28, 28), 2, size=16)
    x = jnp.arange(2 * 28 * 28 * 3, dtype=jnp.float32).reshape(2, 28, 28, 3)
    subs = jax.jit(dd.decompose_input, static_argnums=1)(x, g)
    assert subs.shape == (4, 2, 16, 16, 3)
    for k, b in enumerate(g.boxes):
        np.testing.assert_array_equal(subs[k], x[:, b.start[0]:b.stop[0], b.start[1]:b.stop[1]])


def test_1d_and_3d():
    g1 = dd.Grid.uniform(20, 4)
    assert dd.decompose_input(jnp.ones((3, 20, 2)), g1).shape == (4, 3, 5, 2)
    g3 = dd.Grid.uniform((8, 8, 8), 2, overlap=2)
    assert g3.K == 8 and g3.sub_shape == (5, 5, 5)
    assert dd.decompose_input(jnp.ones((1, 8, 8, 8, 1)), g3).shape == (8, 1, 5, 5, 5, 1)


def test_assemble_inverts_a_complete_grid_and_refuses_overlap():
    g = dd.Grid.uniform((8, 12), (2, 3))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 12, 1))
    np.testing.assert_array_equal(dd.assemble(dd.decompose_input(x, g), g), x)
    with pytest.raises(ValueError, match="non-overlapping"):
        dd.assemble(jnp.ones((4, 1, 5, 5, 1)), dd.Grid.uniform((8, 8), 2, overlap=2))


@given(st.integers(1, 3), st.integers(1, 4), st.integers(0, 3), st.integers(0, 2), st.integers(8, 40))
def test_uniform_grids_cover_the_cropped_domain(ndim, parts, overlap, crop, length):
    shape = (length,) * ndim
    inner_length = length - 2 * crop
    size = -(-(inner_length + (parts - 1) * overlap) // parts)  # the sub-image size Grid.uniform computes
    assume(parts <= inner_length and overlap < size)  # the valid combinations (invalid ones: test_bad_grids)
    g = dd.Grid.uniform(shape, parts, overlap=overlap, crop=crop)  # a valid combination must not raise
    assert g.sub_shape == (size,) * ndim
    cov = g.coverage()
    inner = tuple(slice(crop, length - crop) for _ in range(ndim))
    assert (cov[inner] >= 1).all()
    assert cov.sum() == g.K * int(np.prod(g.sub_shape))
    assert g.K == parts**ndim
    if overlap == 0 and parts > 1:
        assert g.is_complete or crop > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=(8, 8), parts=9), "larger than"),
        (dict(shape=(8, 8), parts=2, size=0), "size 0"),
        (dict(shape=(8, 8), parts=2, overlap=8), "overlap=8 .* >= the sub-image size"),
        (dict(shape=(9, 9), parts=2), "not divisible"),
        (dict(shape=(8, 8), parts=2, size=3), "cannot cover"),
        (dict(shape=(8, 8), parts=2, size=4, overlap=1), "either size= or overlap="),
        (dict(shape=(8, 8), parts=(2, 2, 2)), "3 entries"),
        (dict(shape=(8, 8), parts=2, crop=4), "crop=4"),
    ],
)
def test_bad_grids(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dd.Grid.uniform(kwargs.pop("shape"), kwargs.pop("parts"), **kwargs)


def test_bad_inputs_and_alignment():
    g = dd.Grid.uniform((28, 28), 2, size=16)
    with pytest.raises(ValueError, match="wrong input rank"):
        dd.decompose_input(jnp.ones((28, 28, 1)), g)
    with pytest.raises(ValueError, match="does not match"):
        dd.decompose_input(jnp.ones((1, 32, 32, 1)), g)
    g.check_aligned(4)
    with pytest.raises(ValueError, match="origin 12 .* not aligned with the network's total stride 8"):
        g.check_aligned(8)
    with pytest.raises(ValueError, match="does not fit"):
        dd.Grid.from_origins((8, 8), [(0, 0), (6, 6)], (4, 4))
