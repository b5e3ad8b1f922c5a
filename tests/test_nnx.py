"""The functional API in Flax NNX: plan_for, compose, decompose and check_composition on
``nnx.Module`` / ``nnx.State``, with the Linen path's guarantees (issue 17, point 1).

NNX twins of the theorem architectures (tests/test_theorems.py): the same random valid-padding
CNNs (1-D to 3-D, max-pooling, cropped residual pairs, flatten, FC), an FC net on decomposed
inputs, BatchNorm in inference mode.  Each twin must get the same rules as its Linen model, and
the composed NNX state must satisfy Theorems 2.1 and 2.2; the bad-input errors and the
normalisation warning must be the Linen path's.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import dcnn_dd as dd
from dcnn_dd.models import MLP, PlainCNN
from tests import test_verify as linen_nets
from tests.test_theorems import NAMED, PARTS, agreeing_shift, assert_theorem_2_2, build_setting, exact_setting

ATOL = 1e-4
# one example per K and test in the ci profile (tests/test_theorems.py draws the bulk, on Linen); the thorough
# profile draws 16
FEW = max(2, settings.default.max_examples // 12)


# ------------------------------------------------------------------ NNX twins of the theorem architectures
class PlainCNNNNX(nnx.Module):
    """dcnn_dd.models.PlainCNN in NNX (same layers, same order, same sown names), built for inputs
    of spatial shape ``image``.  Paths: convs/i, bns/i, proj<i>, fcs/j, head."""

    def __init__(self, features, pool_after=(), fc=(), num_classes=3, *, image, ndim=2, kernel=3, pool=2,
                 residual=False, batchnorm=False, in_channels=1, rngs):
        self.features, self.pool_after, self.ndim, self.pool = tuple(features), tuple(pool_after), ndim, pool
        self.residual = residual
        k = (kernel,) * ndim
        size, c = list(image), in_channels
        convs, bns = [], []
        for i, f in enumerate(features):
            convs.append(nnx.Conv(c, f, k, padding="VALID", rngs=rngs))
            if batchnorm:
                bns.append(nnx.BatchNorm(f, momentum=0.9, rngs=rngs))
            if residual and i % 2 == 1 and (i == 1 or features[i - 2] != f):
                c_in = in_channels if i == 1 else features[i - 2]
                setattr(self, f"proj{i}", nnx.Conv(c_in, f, (1,) * ndim, use_bias=False, rngs=rngs))
            size, c = [n - kernel + 1 for n in size], f
            if i in pool_after:
                size = [n // pool for n in size]
        self.convs = nnx.List(convs)
        self.bns = nnx.List(bns) if batchnorm else None
        widths = [math.prod(size) * c, *fc]
        self.fcs = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths, fc)])
        self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

    @classmethod
    def like(cls, model: PlainCNN, image, rngs):
        """The twin of a Linen PlainCNN."""
        return cls(model.features, model.pool_after, model.fc, model.num_classes, image=tuple(image), ndim=model.ndim,
                   kernel=model.kernel, pool=model.pool, residual=model.residual, batchnorm=model.batchnorm,
                   rngs=rngs)

    def __call__(self, x):
        n, p, shortcut = 0, (self.pool,) * self.ndim, None
        for i, conv in enumerate(self.convs):
            if self.residual and i % 2 == 0:
                shortcut = x
            x = conv(x)
            if self.bns is not None:
                x = self.bns[i](x)
            if self.residual and i % 2 == 1:
                crops = [(shortcut.shape[1 + a] - x.shape[1 + a]) // 2 for a in range(self.ndim)]
                sl = (slice(None),) + tuple(slice(c, c + x.shape[1 + a]) for a, c in enumerate(crops)) + (slice(None),)
                s = shortcut[sl]
                proj = getattr(self, f"proj{i}", None)
                x = x + (proj(s) if proj is not None else s)
            x = nnx.relu(x)
            self.sow(nnx.Intermediate, f"layer{n}", x)
            n += 1
            if i in self.pool_after:
                x = nnx.max_pool(x, p, p, padding="VALID")
                self.sow(nnx.Intermediate, f"layer{n}", x)
                n += 1
        x = x.reshape((x.shape[0], -1))
        for j, fc in enumerate(self.fcs):
            x = nnx.relu(fc(x))
            self.sow(nnx.Intermediate, f"fc{j}", x)
        return self.head(x)


class MLPNNX(nnx.Module):
    """dcnn_dd.models.MLP in NNX: an FC net on flattened (decomposed) inputs.  Paths fcs/j, head."""

    def __init__(self, features, num_outputs, *, num_inputs, rngs):
        widths = [num_inputs, *features]
        self.fcs = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths, features)])
        self.head = nnx.Linear(widths[-1], num_outputs, rngs=rngs)

    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        for j, fc in enumerate(self.fcs):
            x = nnx.relu(fc(x))
            self.sow(nnx.Intermediate, f"fc{j}", x)
        return self.head(x)


def nnx_path(linen_path: str) -> str:
    """The twin's leaf path of a Linen PlainCNN / MLP leaf: params/Conv_3/kernel -> convs/3/kernel,
    batch_stats/BatchNorm_0/mean -> bns/0/mean, params/Proj_1/kernel -> proj1/kernel, Dense_j -> fcs/j, Head -> head."""
    _, layer, leaf = linen_path.split("/")
    name, _, i = layer.rpartition("_")
    return {"Conv": f"convs/{i}", "BatchNorm": f"bns/{i}", "Proj": f"proj{i}", "Dense": f"fcs/{i}"}.get(name, "head") + "/" + leaf


def assert_same_plan(nnx_plan, linen_plan):
    """Leaf for leaf, the twin's plan is the Linen plan: the same rules between the same shapes."""
    assert nnx_plan.K == linen_plan.K
    assert {nnx_path(p): r for p, r in linen_plan.rules.items()} == dict(nnx_plan.rules)
    assert {nnx_path(p): s for p, s in linen_plan.global_shapes.items()} == dict(nnx_plan.global_shapes)
    assert {nnx_path(p): s for p, s in linen_plan.sub_shapes.items()} == dict(nnx_plan.sub_shapes)


def new_rngs(seed=0):
    """nnx.Rngs on the 'rbg' generator, which compiles faster than threefry (the tests build many shapes)."""
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def make_subnets(build, K, seed=1, noise=0.3):  # noqa: N803
    """K independent NNX sub-networks, the idiomatic way (``nnx.vmap`` over the constructor with
    split RNG streams), every leaf then perturbed (biases and BatchNorm statistics away from their
    initial zeros / ones).  Returns (graphdef, state stacked on axis 0)."""

    @nnx.split_rngs(splits=K)
    @nnx.vmap(in_axes=0, out_axes=0)
    def create(rngs):
        return build(rngs)

    graphdef, state = nnx.split(create(new_rngs(seed)))
    return graphdef, perturbed(state, seed, noise)


def stacked_copies(model, K, seed=1, noise=0.3):  # noqa: N803
    """K sub-networks from one: its state stacked K times (jax.tree.map of jnp.stack), each copy then
    perturbed differently.  The cheap way for the property tests (no K-fold initialisation)."""
    graphdef, state = nnx.split(model)
    return graphdef, perturbed(jax.tree.map(lambda a: jnp.stack([a] * K), state), seed, noise)


def perturbed(state, seed, noise=0.3):
    rng = np.random.default_rng(seed)

    def perturb(path, v):
        z = rng.standard_normal(v.shape).astype(v.dtype)
        return v.replace(jnp.asarray(0.5 + np.abs(z) if path[-1] == "var" else v.get_value() + noise * z))

    return nnx.map_state(perturb, state)


def sub_k(graphdef, state, k):
    return nnx.merge(graphdef, jax.tree.map(lambda a: a[k], state))


def run_sown(model, x):
    """(output, {sown name: value}) via nnx.capture."""
    out, inter = nnx.capture(model, nnx.Intermediate)(x)
    return out, {name: vals[-1] for name, vals in nnx.to_pure_dict(inter).items()}


# ------------------------------------------------------------------ Theorem 2.1 on random architectures
def nnx_setting(model: PlainCNN, grid, batchnorm_eval=True):
    """(global twin, one sub-network twin) of a Linen model for a grid; BatchNorm in inference mode
    (``.eval()``) unless ``batchnorm_eval=False`` (nnx.BatchNorm is built in training mode)."""
    net = PlainCNNNNX.like(model, grid.shape, new_rngs())
    one_sub = PlainCNNNNX.like(model.subnet(grid.K), grid.sub_shape, new_rngs(1))
    if batchnorm_eval:
        net.eval()
        one_sub.eval()
    return net, one_sub


def check_theorem_2_1_nnx(model: PlainCNN, grid, seed=0):
    """Theorem 2.1 (feature maps on activation fields, logits = the sum), decompose inverts compose,
    and Theorem 2.2 (classification and cost bound), on the NNX twin of ``model``."""
    K = grid.K  # noqa: N806
    net, one_sub = nnx_setting(model, grid)
    shape = (1, *grid.shape, 1)
    plan = dd.plan_for(net, one_sub, grid, input_shape=shape)  # verified: raises if not exact
    assert_same_plan(plan, dd.plan_for(model, model.subnet(K), grid, input_shape=shape, verify=False))
    if K > 1:
        assert plan.verification.exact and plan.verification.rows
    graphdef, sub_state = stacked_copies(one_sub, K, seed + 1)
    g_state = dd.compose(plan, sub_state)
    assert isinstance(g_state, nnx.State)
    assert type(g_state["head"]["kernel"]) is nnx.Param and g_state["head"]["kernel"].shape == plan.global_shapes["head/kernel"]
    nnx.update(net, g_state)
    x = jax.random.normal(jax.random.PRNGKey(seed + 99), (32, *grid.shape, 1))
    xs = dd.decompose_input(x, grid)
    logits, inter = run_sown(net, x)
    subs = [run_sown(sub_k(graphdef, sub_state, k), xs[k]) for k in range(K)]
    # (1) every spatial layer: the global map on sub-network k's activation field, channel block k
    for name, windows in model.spatial_layers():
        for k, box in enumerate(grid.boxes):
            field = dd.activation_field(windows, grid.shape, box)[-1]
            s = subs[k][1][name]
            c = s.shape[-1]
            restricted = inter[name][(slice(None),) + field.slices() + (slice(k * c, (k + 1) * c),)]
            np.testing.assert_allclose(restricted, s, atol=ATOL, rtol=1e-5, err_msg=f"{name} k={k}")
    for j in range(len(model.fc)):
        for k in range(K):
            s = subs[k][1][f"fc{j}"]
            c = s.shape[-1]
            np.testing.assert_allclose(inter[f"fc{j}"][:, k * c:(k + 1) * c], s, atol=ATOL, rtol=1e-5)
    # (2) global logits == the sum of the sub-networks' logits (2.16), and the softmax identity (2.17)
    total = sum(o for o, _ in subs)
    np.testing.assert_allclose(logits, total, atol=ATOL, rtol=1e-5)
    np.testing.assert_allclose(jax.nn.softmax(logits), jax.nn.softmax(total), atol=1e-5)
    # decompose inverts compose (the head bias: the equal share, whose sum is the composed bias)
    back = dd.decompose(plan, nnx.state(net))
    assert isinstance(back, nnx.State)
    for (path, a), (path2, b) in zip(nnx.to_flat_state(back), nnx.to_flat_state(sub_state)):
        assert path == path2 and type(a) is type(b)
        if path == ("head", "bias"):
            np.testing.assert_allclose(a.get_value().sum(0), b.get_value().sum(0), rtol=1e-6)
        else:
            np.testing.assert_array_equal(a.get_value(), b.get_value(), err_msg=str(path))
    # Theorem 2.2: every sub-network's head bias for class 0 raised by the same t, so that all of them
    # classify about half of the samples alike (test_theorems.agreeing_heads)

    def sub_logits(state):
        return jnp.stack([run_sown(sub_k(graphdef, state, k), xs[k])[0] for k in range(K)])

    t = agreeing_shift(np.asarray(sub_logits(sub_state)))
    agreeing = nnx.map_state(lambda p, v: v.replace(v.get_value().at[:, 0].add(t)) if p == ("head", "bias") else v,
                             sub_state)
    nnx.update(net, dd.compose(plan, agreeing))
    assert_theorem_2_2(run_sown(net, x)[0], sub_logits(agreeing), seed)
    return plan, g_state


@pytest.mark.parametrize("K", (2, 4, 16))  # K=9: the named case
def test_theorems_2_1_and_2_2_nnx_random_architectures(K):  # noqa: N803
    @settings(max_examples=FEW)
    @given(exact_setting(K=K))
    def check(setting):
        check_theorem_2_1_nnx(*setting)

    check()


@pytest.mark.parametrize("name", ["2d-K9-residual-overlap"])
def test_theorems_2_1_and_2_2_nnx_named_cases(name):
    check_theorem_2_1_nnx(*build_setting(*NAMED[name]))


# ------------------------------------------------------------------ BatchNorm, FC nets, regression
def test_batchnorm_in_inference_mode_is_exact_and_training_mode_warns():
    grid = dd.Grid.uniform((16, 16), 2, size=10)
    model = PlainCNN(features=(8, 8), pool_after=(), fc=(8,), batchnorm=True)
    plan, g = check_theorem_2_1_nnx(model, grid)
    assert str(plan.rules["bns/0/mean"]).startswith("BLOCK") and str(plan.rules["bns/1/var"]).startswith("BLOCK")
    # the composed statistics are nnx.BatchStat, the scale an nnx.Param
    assert type(g["bns"][0]["mean"]) is nnx.BatchStat and type(g["bns"][0]["scale"]) is nnx.Param
    # nnx.BatchNorm is built in training mode (use_running_average=False): inexact by nature, as for Linen
    net, one_sub = nnx_setting(model, grid, batchnorm_eval=False)
    with pytest.warns(UserWarning, match=r"BatchNorm in training mode \('bns/0'\)"):
        dd.plan_for(net, one_sub, grid, input_shape=(1, 16, 16, 1))


@settings(max_examples=max(2, settings.default.max_examples // 6))
@given(st.sampled_from([2, 4, 9]), st.booleans(), st.sampled_from(["sum", "mean"]), st.integers(0, 3))
def test_fc_network_on_decomposed_inputs_nnx(K, overlap, head, seed):  # noqa: N803
    parts = PARTS[K]
    grid = dd.Grid.uniform((12, 12), parts, size=tuple(12 // p + (3 if overlap and p > 1 else 0) for p in parts))
    feats = (2 * K, 3 * K)
    net = MLPNNX(feats, 5, num_inputs=12 * 12 * 2, rngs=new_rngs())
    sub_feats = tuple(f // K for f in feats)
    n_sub = math.prod(grid.sub_shape) * 2
    one_sub = MLPNNX(sub_feats, 5, num_inputs=n_sub, rngs=new_rngs(1))
    plan = dd.plan_for(net, one_sub, grid, input_shape=(1, 12, 12, 2), head=head)
    linen = MLP(features=feats, num_outputs=5)
    assert_same_plan(plan, dd.plan_for(linen, linen.subnet(K), grid, input_shape=(1, 12, 12, 2), head=head, verify=False))
    assert "Sec. 2.4" in str(plan.rules["fcs/0/kernel"])
    graphdef, sub_state = stacked_copies(one_sub, K, seed)
    nnx.update(net, dd.compose(plan, sub_state))
    x = jax.random.normal(jax.random.PRNGKey(seed), (4, 12, 12, 2))
    xs = dd.decompose_input(x, grid)
    logits, inter = run_sown(net, x)
    outs = []
    for k in range(K):
        o, ik = run_sown(sub_k(graphdef, sub_state, k), xs[k])
        outs.append(o)
        c = ik["fc0"].shape[-1]
        np.testing.assert_allclose(inter["fc0"][:, k * c:(k + 1) * c], ik["fc0"], atol=ATOL, rtol=1e-5)
    ref = sum(outs) / (K if head == "mean" else 1)  # (2.16), or the mean (2.22)
    np.testing.assert_allclose(logits, ref, atol=ATOL, rtol=1e-5)


# ------------------------------------------------------------------ the report
class Stride4NNX(nnx.Module):
    """tests/test_verify.py's Stride4Net in NNX: VALID convs, two 2x2 poolings, flatten or GAP, FC."""

    def __init__(self, width=8, hidden=16, head="flatten", image=(28, 28), *, rngs):
        self.head_kind = head
        n = [((s - 2) // 2 - 2) // 2 for s in image]
        self.conv1 = nnx.Conv(1, width, (3, 3), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(width, width, (3, 3), padding="VALID", rngs=rngs)
        self.hidden = nnx.Linear(width if head == "gap" else math.prod(n) * width, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
        x = x.mean(axis=(1, 2)) if self.head_kind == "gap" else x.reshape((x.shape[0], -1))
        return self.out(nnx.relu(self.hidden(x)))


def _grid(size):
    return dd.Grid.uniform((28, 28), 2, size=size)


def _pair(cls, size=16, **kw):
    """(global, sub-network) of an NNX net for the 28x28 grid with sub-images of ``size``."""
    wide = {k: v[0] for k, v in kw.items()}
    narrow = {k: v[1] for k, v in kw.items()}
    return cls(**wide, rngs=new_rngs()), cls(**narrow, image=(size, size), rngs=new_rngs())


def test_check_composition_report_is_exact_and_matches_linen():
    grid = _grid(16)
    net, sub = _pair(Stride4NNX, width=(8, 2), hidden=(16, 4))
    rep = dd.check_composition(net, sub, grid, input_shape=(1, 28, 28, 1), samples=3)
    assert isinstance(rep, dd.CompositionReport) and rep.samples == 3 and rep.exact and not rep.causes
    assert [r.layer for r in rep.rows] == ["conv1", "conv2", "hidden", "out", "(output)"]
    assert [r.kind for r in rep.rows] == ["Conv", "Conv", "Linear", "Linear", "output"]
    assert all(r.ok for r in rep.rows) and rep.total_stride == (4, 4)
    assert rep.output_deviation < 1e-4 * max(rep.output_scale, 1) and rep.argmax_agreement == 1.0
    lin = dd.check_composition(linen_nets.Stride4Net(8, 16), linen_nets.Stride4Net(2, 4), grid,
                               input_shape=(1, 28, 28, 1), samples=3)
    assert [(r.compared, r.global_shape, r.sub_shape) for r in rep.rows] == \
           [(r.compared, r.global_shape, r.sub_shape) for r in lin.rows]
    assert "exact on 3 random inputs" in str(rep) and "<table>" in rep._repr_html_()


# ------------------------------------------------------------------ bad inputs: the Linen path's errors
class UndividedNNX(nnx.Module):
    """tests/test_verify.py's Undivided: three convs, the middle one's width ``middle``."""

    def __init__(self, width=8, middle=8, image=(28, 28), *, rngs):
        n = [(s - 4 - 3) // 2 + 1 for s in image]
        self.conv1 = nnx.Conv(1, width, (3, 3), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(width, middle, (3, 3), padding="VALID", rngs=rngs)
        self.conv3 = nnx.Conv(middle, width, (3, 3), strides=2, padding="VALID", rngs=rngs)
        self.head = nnx.Linear(math.prod(n) * width, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.conv3(nnx.relu(self.conv2(nnx.relu(self.conv1(x))))))
        return self.head(x.reshape((x.shape[0], -1)))


class HiddenDenseNNX(nnx.Module):
    def __init__(self, width=8, hidden=16, image=(28, 28), *, rngs):
        self.conv = nnx.Conv(1, width, (3, 3), padding="VALID", rngs=rngs)
        self.hidden = nnx.Linear(math.prod(s - 2 for s in image) * width, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.conv(x))
        return self.head(nnx.relu(self.hidden(x.reshape((x.shape[0], -1)))))


class WithNormNNX(nnx.Module):
    """conv -> LayerNorm / GroupNorm -> strided conv -> flatten -> head (test_verify's WithLayer)."""

    def __init__(self, width=8, kind="layernorm", groups=2, image=(28, 28), *, rngs):
        n = [(s - 2 - 3) // 2 + 1 for s in image]
        self.conv1 = nnx.Conv(1, width, (3, 3), padding="VALID", rngs=rngs)
        self.norm = (nnx.LayerNorm(width, rngs=rngs) if kind == "layernorm"
                     else nnx.GroupNorm(width, num_groups=groups, rngs=rngs))
        self.conv2 = nnx.Conv(width, width, (3, 3), strides=2, padding="VALID", rngs=rngs)
        self.head = nnx.Linear(math.prod(n) * width, 10, rngs=rngs)

    def __call__(self, x):
        x = self.norm(nnx.relu(self.conv1(x)))
        x = nnx.relu(self.conv2(x))
        return self.head(x.reshape((x.shape[0], -1)))


def _raises_in_both(match_linen, match_nnx, linen_call, nnx_call):
    with pytest.raises(ValueError, match=match_linen):
        linen_call()
    with pytest.raises(ValueError, match=match_nnx):
        nnx_call()


@pytest.mark.parametrize("size", [14, 17])  # second origin 14, 11: not multiples of the total stride 4
def test_misaligned_origins_raise_as_for_linen(size):
    grid = _grid(size)
    msg = r"not aligned with the network's total stride 4"
    net, sub = _pair(Stride4NNX, size, width=(8, 2), hidden=(16, 4))
    _raises_in_both(msg, msg,
                    lambda: dd.plan_for(linen_nets.Stride4Net(8, 16), linen_nets.Stride4Net(2, 4), grid,
                                        input_shape=(1, 28, 28, 1)),
                    lambda: dd.plan_for(net, sub, grid, input_shape=(1, 28, 28, 1)))


def test_misaligned_origins_with_a_gap_head_are_diagnosed_by_the_check():
    grid = _grid(18)
    net, sub = _pair(Stride4NNX, 18, width=(8, 2), hidden=(16, 4), head=("gap", "gap"))
    with pytest.raises(ValueError, match=r"misaligned origin: subdomain 1 starts at 10 .* total stride 4"):
        dd.plan_for(net, sub, grid, input_shape=(1, 28, 28, 1))


def test_undivided_hidden_width_raises_as_for_linen():
    grid = _grid(16)
    net, sub = _pair(HiddenDenseNNX, width=(8, 2), hidden=(16, 16))
    _raises_in_both(r"layer 'params/hidden'.*output width 16 is not divided by K=4",
                    r"layer 'hidden'.*output width 16 is not divided by K=4",
                    lambda: dd.plan_for(linen_nets.HiddenDense(8, 16), linen_nets.HiddenDense(2, 16), grid,
                                        input_shape=(1, 28, 28, 1)),
                    lambda: dd.plan_for(net, sub, grid, input_shape=(1, 28, 28, 1)))
    # an undivided hidden convolution is found by the check, which names the layer
    net, sub = _pair(UndividedNNX, width=(8, 2), middle=(8, 8))
    with pytest.raises(ValueError, match=r"first deviating layer 'conv3'.*undivided width: layer 'conv2' has the "
                                         r"same output width \(8\)"):
        dd.plan_for(net, sub, grid, input_shape=(1, 28, 28, 1))


def test_input_shape_errors_as_for_linen():
    grid = _grid(16)
    net, sub = _pair(Stride4NNX, width=(8, 2), hidden=(16, 4))
    lnet, lsub = linen_nets.Stride4Net(8, 16), linen_nets.Stride4Net(2, 4)
    for shape, msg in [((28, 28, 1), r"no batch axis: pass \(1, 28, 28, 1\)"),
                       ((1, 32, 32, 1), r"does not match the grid.*\(32, 32\) is not the grid's \(28, 28\)")]:
        _raises_in_both(msg, msg, lambda: dd.plan_for(lnet, lsub, grid, input_shape=shape),
                        lambda: dd.plan_for(net, sub, grid, input_shape=shape))
        with pytest.raises(ValueError, match=msg):
            dd.check_composition(net, sub, grid, input_shape=shape)
    # NNX only: a sub-network built for the wrong input size, and mixed dialects
    wrong = Stride4NNX(2, 4, image=(28, 28), rngs=new_rngs())
    with pytest.raises(ValueError, match=r"Stride4NNX does not run on inputs of shape \(1, 16, 16, 1\).*sub-network "
                                         r"for the sub-images"):
        dd.plan_for(net, wrong, grid, input_shape=(1, 28, 28, 1))
    with pytest.raises(ValueError, match="an nnx.Module and the sub-network a Linen module"):
        dd.plan_for(net, lsub, grid, input_shape=(1, 28, 28, 1))


@pytest.mark.parametrize("kind,groups,sub_groups,cls", [("layernorm", 2, 2, "LayerNorm"), ("groupnorm", 2, 2, "GroupNorm")])
def test_normalisation_across_channels_warns_as_for_linen(kind, groups, sub_groups, cls):
    grid = _grid(16)
    net, sub = _pair(WithNormNNX, width=(8, 2), kind=(kind, kind), groups=(groups, sub_groups))
    with pytest.warns(UserWarning, match=rf"max deviation \d.*normalisation across channels \({cls} 'norm'"):
        plan = dd.plan_for(net, sub, grid, input_shape=(1, 28, 28, 1))
    assert plan.verification.first_deviation.layer == "norm"
    with pytest.raises(ValueError, match=cls):
        dd.plan_for(net, sub, grid, input_shape=(1, 28, 28, 1), exact=True)


# ------------------------------------------------------------------ compose / decompose on nnx.State
def test_composition_knows_only_dicts_and_nnx_states_come_through_the_adapter():
    """dcnn_dd.composition has no NNX branch (it neither imports nor names flax.nnx): nnx.State
    reaches compose / decompose as a tree kind that dcnn_dd.nnx_adapter registers."""
    import inspect

    from dcnn_dd import composition, nnx_adapter

    src = inspect.getsource(composition)
    assert "flax" not in src and "nnx." not in src and "import nnx" not in src and "nnx_adapter import" not in src
    assert [k.name for k in composition.TREE_KINDS] == ["nnx.State"]
    assert composition.TREE_KINDS[0].accepts is nnx_adapter.is_nnx_state


def test_compose_on_states_dicts_jit_and_errors():
    grid = _grid(16)
    net, sub = _pair(Stride4NNX, width=(8, 2), hidden=(16, 4))
    plan = dd.plan_for(net, sub, grid, input_shape=(1, 28, 28, 1), verify=False)
    assert list(plan.rules)[:2] == ["conv1/bias", "conv1/kernel"] and "(2.13) first FC" in str(plan.rules["hidden/kernel"])
    graphdef, sub_state = make_subnets(lambda r: Stride4NNX(2, 4, image=(16, 16), rngs=r), 4)
    g = dd.compose(plan, sub_state)
    # the pure dict of the same state composes to the pure dict of the composed state
    pure = dd.compose(plan, nnx.to_pure_dict(sub_state))
    assert jax.tree.map(jnp.shape, pure) == jax.tree.map(jnp.shape, nnx.to_pure_dict(g))
    for a, b in zip(jax.tree.leaves(pure), jax.tree.leaves(nnx.to_pure_dict(g))):
        np.testing.assert_array_equal(a, b)
    # the states of K separately built sub-networks, stacked with dd.stack, compose alike
    states = [nnx.state(sub_k(graphdef, sub_state, k)) for k in range(4)]
    for a, b in zip(jax.tree.leaves(dd.compose(plan, dd.stack(states))), jax.tree.leaves(g)):
        np.testing.assert_array_equal(a, b)
    # jit-able, and nnx.merge takes the composed state whole
    gj = jax.jit(lambda s: dd.compose(plan, s))(sub_state)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 1))
    gdef = nnx.graphdef(net)
    np.testing.assert_array_equal(nnx.merge(gdef, gj)(x), nnx.merge(gdef, g)(x))
    # RNG state is not a weight: left out of the plan and of the composed state
    with_rngs = nnx.State({**dict(sub_state), "drop": {"key": nnx.RngKey(jax.random.split(jax.random.key(0), 4))}})
    assert set(nnx.to_pure_dict(dd.compose(plan, with_rngs))) == set(nnx.to_pure_dict(g))
    # K sub-networks against a plan for another K; a state of another model
    with pytest.raises(ValueError, match="K inconsistent: leaf conv1/bias is stacked over 2 sub-networks"):
        dd.compose(plan, jax.tree.map(lambda a: a[:2], sub_state))
    with pytest.raises(ValueError, match=r"do not match the plan: missing leaves \['hidden/bias'"):
        dd.compose(plan, nnx.State({k: v for k, v in dict(sub_state).items() if k != "hidden"}))
    with pytest.raises(ValueError, match=r"leaf conv1/bias of the global variables has shape \(4, 2\), expected \(8,\)"):
        dd.decompose(plan, sub_state)
