"""plan_for proves its plan (issue 14): user-written modules, only the public API.

Each case that used to compose silently wrong now raises (should be exact, is not) or warns with
the measured deviation (inexact by nature); exact cases stay exact and silent.
"""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dcnn_dd as dd

K = 4


class Stride4Net(nn.Module):
    """VALID convs, two 2x2 poolings (total stride 4), flatten, FC: the theorems' setting."""

    width: int = 8
    hidden: int = 16
    head: str = "flatten"

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID")(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = x.mean(axis=(1, 2)) if self.head == "gap" else x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(10)(x)


class WithLayer(nn.Module):
    """conv -> <layer under test> -> conv -> flatten -> head, VALID padding."""

    width: int = 8
    kind: str = "layernorm"
    groups: int = 2

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID")(x))
        if self.kind == "layernorm":
            x = nn.LayerNorm()(x)
        elif self.kind == "groupnorm":
            x = nn.GroupNorm(num_groups=self.groups)(x)
        elif self.kind == "grouped":
            x = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID", feature_group_count=self.groups)(x))
        x = nn.relu(nn.Conv(self.width, (3, 3), strides=2, padding="VALID")(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(10)(x)


class Undivided(nn.Module):
    """Three convs; ``middle`` is the width of the middle one (the user forgot to divide it)."""

    width: int = 8
    middle: int = 8

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID")(x))
        x = nn.relu(nn.Conv(self.middle, (3, 3), padding="VALID")(x))
        x = nn.relu(nn.Conv(self.width, (3, 3), strides=2, padding="VALID")(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(10)(x)


class HiddenDense(nn.Module):
    width: int = 8
    hidden: int = 16

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID")(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
        return nn.Dense(10, name="head")(x)


class Block(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        y = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID")(x))
        return nn.relu(nn.Conv(self.width, (1, 1))(y) + y)


class Nested(nn.Module):
    """Nested blocks, BatchNorm (inference), avg-pool, a strided conv: exact."""

    width: int = 8

    @nn.compact
    def __call__(self, x, train=False):
        x = Block(self.width)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = Block(2 * self.width)(x)
        x = nn.relu(nn.Conv(2 * self.width, (3, 3), strides=2, padding="VALID")(x))
        return nn.Dense(3)(x.reshape((x.shape[0], -1)))


class SamePad(nn.Module):
    width: int = 8

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="SAME")(x))
        x = nn.relu(nn.Conv(self.width, (3, 3), strides=2, padding="SAME")(x))
        return nn.Dense(10)(x.reshape((x.shape[0], -1)))


def _grid(size):
    return dd.Grid.uniform((28, 28), 2, size=size)


def _plan(net, sub, grid=None, **kw):
    grid = grid or _grid(16)
    return dd.plan_for(net, sub, grid, input_shape=(1, *grid.shape, 1), **kw)


def _silent(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


# ------------------------------------------------------------------ exact cases stay exact and silent
@pytest.mark.parametrize("net,sub,size", [
    (Stride4Net(8, 16), Stride4Net(2, 4), 16),                  # origins 0, 12: aligned with stride 4
    (Nested(8), Nested(2), 16),
    (WithLayer(8, "grouped", 8), WithLayer(2, "grouped", 2), 16),  # feature_group_count = K x the sub's
])
def test_exact_plans_are_verified_silently(net, sub, size):
    plan = _silent(lambda: _plan(net, sub, _grid(size)))
    rep = plan.verification
    assert rep.exact and rep.first_deviation is None and not rep.causes
    assert rep.output_deviation < 1e-4 * max(rep.output_scale, 1)
    compared = [r for r in rep.rows if r.max_abs is not None]
    assert len(compared) >= 3 and any(r.compared.startswith("field") for r in compared)
    text = str(rep)
    assert "exact on 2 random inputs" in text and "Conv_0" in text
    assert "<table>" in rep._repr_html_()


def test_check_composition_is_public_and_reports_every_layer():
    grid = _grid(16)
    rep = dd.check_composition(Stride4Net(8, 16), Stride4Net(2, 4), grid, input_shape=(1, 28, 28, 1), samples=3)
    assert isinstance(rep, dd.CompositionReport) and rep.samples == 3
    names = [r.layer for r in rep.rows]
    assert names[:2] == ["Conv_0", "Conv_1"] and names[-1] == "(output)"
    assert rep.total_stride == (4, 4)  # traced, not guessed
    assert all(r.ok for r in rep.rows if r.max_abs is not None)


def test_total_stride_is_traced_not_guessed():
    from dcnn_dd.tracing import trace_geometry

    net = Stride4Net(8, 16)
    x = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)
    v = jax.eval_shape(lambda a: net.init(jax.random.PRNGKey(0), a), x)
    geo = trace_geometry(net.apply, v, x, 2)
    assert geo.total_stride == (4, 4) and geo.padded_windows == 0 and geo.spatial_reductions == 0
    assert geo.flatten == {"params/Dense_0/kernel": ((4, 4), False)}


# ------------------------------------------------------------------ misaligned grids
@pytest.mark.parametrize("size", [14, 15, 17, 18, 19])  # second origin 14, 13, 11, 10, 9
def test_misaligned_origins_raise_with_the_true_total_stride(size):
    with pytest.raises(ValueError, match=r"not aligned with the network's total stride 4"):
        _plan(Stride4Net(8, 16), Stride4Net(2, 4), _grid(size))


def test_misaligned_origins_with_a_gap_head_raise_too():
    with pytest.raises(ValueError, match=r"misaligned origin: subdomain 1 starts at 10 .* total stride 4"):
        _plan(Stride4Net(8, 16, "gap"), Stride4Net(2, 4, "gap"), _grid(18))


# ------------------------------------------------------------------ layers without a rule
@pytest.mark.parametrize("kind,groups,sub_groups,cls", [
    ("layernorm", 2, 2, "LayerNorm"), ("groupnorm", 2, 2, "GroupNorm"),
    ("groupnorm", 4, 1, "GroupNorm"),  # groups inside the channel blocks: still statistics over the whole map
])
def test_normalisation_across_channels_warns_with_numbers(kind, groups, sub_groups, cls):
    net, sub = WithLayer(8, kind, groups), WithLayer(2, kind, sub_groups)
    with pytest.warns(UserWarning, match=rf"max deviation \d.*normalisation across channels \({cls}"):
        plan = _plan(net, sub)
    assert plan.verification.first_deviation.layer == f"{cls}_0"
    with pytest.raises(ValueError, match=cls):
        _plan(net, sub, exact=True)


def test_grouped_conv_with_the_same_groups_raises():
    with pytest.raises(ValueError, match=r"Conv_1' deviates|first deviating layer 'Conv_1'.*feature_group_count=2 in the "
                                         r"global network and 2 in the sub-network"):
        _plan(WithLayer(8, "grouped", 2), WithLayer(2, "grouped", 2))


class WithAttention(nn.Module):
    width: int = 8
    heads: int = 4

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID")(x))
        x = nn.relu(nn.Conv(self.width, (3, 3), strides=2, padding="VALID")(x))
        t = x.reshape((x.shape[0], -1, x.shape[-1]))
        t = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.width)(t, t)
        return nn.Dense(10)(t.reshape((t.shape[0], -1)))


def test_attention_is_named():
    with pytest.raises(ValueError, match="attention layer|MultiHeadDotProductAttention"):
        _plan(WithAttention(8, 4), WithAttention(2, 1))


# ------------------------------------------------------------------ forgotten width divisions
def test_undivided_hidden_conv_raises_naming_it():
    with pytest.raises(ValueError, match=r"first deviating layer 'Conv_2'.*undivided width: layer 'Conv_1' has the "
                                         r"same output width \(8\)"):
        _plan(Undivided(8, 8), Undivided(2, 8))


def test_the_output_layer_is_not_blamed_for_an_undivided_width():
    """The undivided-width heuristic follows the order the network calls its layers, not the plan's
    sorted paths: with a deviation at the residual projection 'Proj_1' (a pooling inside the
    residual pair, outside the theorems' setting), the head ('Head' < 'Proj_1' by name) is the
    output layer, not a forgotten division."""
    from tests.test_theorems import build_setting

    model, grid = build_setting(2, 4, [8, 8], (0,), [4], True, False)  # aligned origins, valid padding
    with pytest.raises(ValueError, match="first deviating layer 'Proj_1'") as e:
        dd.plan_for(model, model.subnet(4), grid, input_shape=(1, *grid.shape, 1))
    assert "undivided width" not in str(e.value), str(e.value)


def test_undivided_hidden_dense_names_the_layer_not_the_next_bias():
    with pytest.raises(ValueError, match=r"layer 'params/hidden'.*output width 16 is not divided by K=4"):
        _plan(HiddenDense(8, 16), HiddenDense(2, 16))


def test_undivided_everything_says_so():
    with pytest.raises(ValueError, match="the sub-network has the same widths as the global network"):
        _plan(Stride4Net(8, 16), Stride4Net(8, 16))


# ------------------------------------------------------------------ bad shapes
def test_input_shape_errors():
    net, sub = Stride4Net(8, 16), Stride4Net(2, 4)
    grid = _grid(16)
    with pytest.raises(ValueError, match=r"does not match the grid.*\(32, 32\) is not the grid's \(28, 28\)"):
        dd.plan_for(net, sub, grid, input_shape=(1, 32, 32, 1))
    with pytest.raises(ValueError, match=r"no batch axis: pass \(1, 28, 28, 1\)"):
        dd.plan_for(net, sub, grid, input_shape=(28, 28, 1))


def test_feature_map_shrinking_to_zero_is_a_clear_error():
    grid = dd.Grid.from_origins((28, 28), [(0, 0), (0, 23), (23, 0), (23, 23)], (5, 5))  # conv 3 -> 3, pool -> 1, conv 3
    with pytest.raises(ValueError, match="shrinks to zero"):
        dd.plan_for(Stride4Net(8, 16), Stride4Net(2, 4), grid, input_shape=(1, 28, 28, 1))


# ------------------------------------------------------------------ inexact by nature: warnings with numbers
def test_same_padding_warns_with_the_measured_deviation():
    with pytest.warns(UserWarning, match=r"max deviation \d.*padding \(SAME or explicit\).*What plan_for checks"):
        plan = _plan(SamePad(8), SamePad(2))
    rep = plan.verification
    assert rep.first_deviation.max_abs > 1e-3 and rep.output_deviation > 1e-3
    with pytest.raises(ValueError, match="padding"):
        _plan(SamePad(8), SamePad(2), exact=True)
    assert _silent(lambda: _plan(SamePad(8), SamePad(2), verify=False)).verification is None


def test_gap_warns_once_per_call():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _plan(Stride4Net(8, 16, "gap"), Stride4Net(2, 4, "gap"))
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1 and "reduction over the spatial axes" in msgs[0]
    dev = float(msgs[0].split("max |global output - the sum of the sub-network outputs| = ")[1].split()[0])
    assert dev > 1e-3


def test_regional_pooling_is_not_named_as_pooling_over_the_whole_map():
    """ResNet-8 with regional pooling (channel block k pooled over sub-network k's region): the
    warning names its true cause, SAME padding, and not "global average pooling over the whole
    map" (it did: the trace counted the mean over each cropped region as a reduction over the
    whole map).  The GAP ResNet still has its reduction over the whole map."""
    from dcnn_dd.models import CifarResNet
    from dcnn_dd.models.pooling import with_regional_pool
    from dcnn_dd.tracing import trace_geometry

    grid = _grid(16)
    gap = CifarResNet(depth=8, widths=(8, 8, 16), num_classes=10)
    regional = with_regional_pool(gap, grid, (1, 28, 28, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = _plan(regional, regional.subnet(K), grid)
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1 and "padding (SAME or explicit)" in msgs[0], msgs
    assert "whole map" not in msgs[0] and "reduction over the spatial axes" not in msgs[0], msgs[0]
    assert [f.split()[0] for f in plan.verification.inexact_features] == ["padding"]
    x = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)
    for model, whole, regions in ((gap, 1, 0), (regional, 0, K)):  # traced only, nothing compiled
        v = jax.eval_shape(lambda a, m=model: m.init(jax.random.PRNGKey(0), a), x)
        geo = trace_geometry(model.apply, v, x, 2)
        assert (geo.spatial_reductions, geo.regional_reductions) == (whole, regions), type(model).__name__


def test_batchnorm_in_training_mode_warns():
    from dcnn_dd.models import PlainCNN

    model = PlainCNN(features=(8, 8), pool_after=(), fc=(8,), batchnorm=True)
    grid = dd.Grid.uniform((16, 16), 2, size=10)
    with pytest.warns(UserWarning, match="BatchNorm in training mode"):
        dd.plan_for(model, model.subnet(K), grid, input_shape=(1, 16, 16, 1), init_kwargs={"train": True},
                    windows=model.windows())
    np.testing.assert_equal(K, grid.K)
