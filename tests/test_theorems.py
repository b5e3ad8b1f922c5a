"""Theorems 2.1 and 2.2 of Gu et al. as property tests on random architectures and grids.

Random (perturbed, not initial) sub-network weights; K in {1, 2, 4, 9, 16}, each K a test case
(``HYPOTHESIS_PROFILE=thorough`` draws more architectures per K, see tests/conftest.py); grids with
and without overlap, origins aligned with the network's total stride (the theorems' setting).
"""

import collections
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dcnn_dd as dd
from dcnn_dd.models import PlainCNN
from tests.conftest import random_sub_vars

ATOL = 1e-4
PARTS = {1: (1, 1), 2: (1, 2), 4: (2, 2), 9: (3, 3), 16: (4, 4)}


def build_setting(ndim, K, features, pool_after, fc, residual, overlap, margin=0, num_classes=3):  # noqa: N803
    """A valid-padding CNN with a flatten + FC head and a grid whose origins are aligned."""
    if ndim == 1:
        parts = (K,)
    elif ndim == 2:
        parts = PARTS[K]
    else:
        parts = {1: (1, 1, 1), 2: (1, 1, 2), 4: (1, 2, 2), 8: (2, 2, 2)}[K]
    model = PlainCNN(features=tuple(features), pool_after=tuple(pool_after), fc=tuple(fc),
                     num_classes=num_classes, ndim=ndim, residual=residual)
    stride = 2 ** len(pool_after)
    size = 1  # smallest sub-image with a non-empty output ...
    while True:
        try:
            out = (size,) * ndim
            for w in model.windows():
                out = w.out_shape(out)
            break
        except ValueError:
            size += 1
    size += stride * margin  # ... plus a margin
    # neighbouring origins one stride-multiple apart: overlapping, or just touching
    step = stride * (max(1, (size - 1) // stride) if overlap else -(-size // stride))
    origins = list(itertools.product(*[[i * step for i in range(n)] for n in parts]))
    shape = tuple((n - 1) * step + size for n in parts)
    return model, dd.Grid.from_origins(shape, origins, (size,) * ndim)


KS = (1, 2, 4, 9, 16)
# Hypothesis' derandomized draws of a sampled K favour the first value (K=1, the identity case, was 5
# of 12 examples, K=16 none): K is a pytest parameter instead, each K gets its share of the profile's
# examples, and Hypothesis draws the rest of the architecture.
PER_K = max(2, -(-settings.default.max_examples // len(KS)))


@st.composite
def exact_setting(draw, ndims=(1, 2, 3), K=None):  # noqa: N803
    ndims = [d for d in ndims if K is None or d < 3 or K in (1, 2, 4)]
    ndim = draw(st.sampled_from(ndims))
    if K is None:
        K = draw(st.sampled_from([1, 2, 4] if ndim == 3 else list(KS)))  # noqa: N806
    n_conv = draw(st.integers(1, 3 if ndim < 3 else 2))
    pool_after = tuple(i for i in range(n_conv) if draw(st.booleans())) if ndim < 3 else ()
    residual = ndim == 2 and n_conv % 2 == 0 and draw(st.booleans())
    if residual:  # residual blocks (2.24)-(2.26) pool between blocks, not inside one (its shortcut would
        pool_after = tuple(i for i in pool_after if i % 2 == 1)  # skip a pooling: not the theorems' setting)
    features = [K * draw(st.integers(1, 2)) for _ in range(n_conv)]
    fc = [K * draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2)))]
    return build_setting(ndim, K, features, pool_after, fc, residual, draw(st.booleans()),
                         margin=draw(st.integers(0, 1 if ndim == 3 else 2)), num_classes=draw(st.integers(2, 4)))


# corners that must always run, whatever hypothesis draws
NAMED = {
    "2d-K16-overlap-pool": (2, 16, [16, 32], [1], [32], False, True),
    "2d-K9-residual-overlap": (2, 9, [9, 9, 18, 18], [1], [9], True, True),
    "2d-K4-residual-nonoverlap": (2, 4, [4, 8], [], [8], True, False),
    "1d-K16-overlap": (1, 16, [16, 32], [0], [16], False, True),
    "3d-K8-overlap": (3, 8, [8, 8], [], [8], False, True),
    "3d-K4-pool": (3, 4, [4, 8], [0], [], False, False),
}


def _setup(model, grid, seed=0, batch=3):
    K = grid.K  # noqa: N806
    sub = model.subnet(K)
    x = jax.random.normal(jax.random.PRNGKey(seed + 99), (batch, *grid.shape, 1))
    xs = dd.decompose_input(x, grid)
    sub_vars = random_sub_vars(sub, xs[0], K, seed=seed)
    plan = dd.plan_for(model, sub, grid, input_shape=(1, *grid.shape, 1), windows=model.windows())
    g = dd.compose(plan, dd.stack(sub_vars))
    return sub, x, xs, sub_vars, plan, g


@pytest.mark.parametrize("K", KS)
def test_theorem_2_1_random_architectures(K):  # noqa: N803
    @settings(max_examples=PER_K)
    @given(exact_setting(K=K))
    def check(setting):
        assert setting[1].K == K
        check_theorem_2_1(*setting)

    check()


def test_the_random_architectures_cover_every_K():
    """What the profile's draws of the random-architecture tests cover: every K, 1-D to 3-D."""
    seen = collections.Counter()

    for K in KS:  # noqa: N806
        @settings(max_examples=PER_K)
        @given(exact_setting(K=K))
        def collect(setting):
            model, grid = setting
            seen[(grid.ndim, grid.K)] += 1

        collect()
    ks = collections.Counter()
    for (_, k), n in seen.items():
        ks[k] += n
    assert set(ks) == set(KS), ks
    assert min(ks.values()) >= 2, ks  # at least two architectures per K
    assert ks[1] <= sum(ks.values()) // 4, ks  # the identity case is not the bulk of the draws
    assert {d for d, _ in seen} == {1, 2, 3}, seen


@pytest.mark.parametrize("name", sorted(NAMED))
def test_theorem_2_1_named_cases(name):
    check_theorem_2_1(*build_setting(*NAMED[name]))


def check_theorem_2_1(model, grid):
    K = grid.K  # noqa: N806
    sub, x, xs, sub_vars, plan, g = _setup(model, grid)
    logits, inter = model.apply(g, x, mutable=["intermediates"])
    inter = inter["intermediates"]
    sub_logits, sub_inter = [], []
    for k in range(K):
        lk, ik = sub.apply(sub_vars[k], xs[k], mutable=["intermediates"])
        sub_logits.append(lk)
        sub_inter.append(ik["intermediates"])
    # (1) every spatial layer: global output on the activation field and channel block k == sub-network k
    for name, windows in model.spatial_layers():
        G = inter[name][0]  # noqa: N806
        for k, box in enumerate(grid.boxes):
            field = dd.activation_field(windows, grid.shape, box)[-1]
            s = sub_inter[k][name][0]
            assert field.size == s.shape[1:-1], (name, field, s.shape)
            c = s.shape[-1]
            restricted = G[(slice(None),) + field.slices() + (slice(k * c, (k + 1) * c),)]
            np.testing.assert_allclose(restricted, s, atol=ATOL, rtol=1e-5, err_msg=f"{name} k={k}")
    # (1) the FC layers below the head: channel block k
    for j in range(len(model.fc)):
        G = inter[f"fc{j}"][0]  # noqa: N806
        for k in range(K):
            s = sub_inter[k][f"fc{j}"][0]
            c = s.shape[-1]
            np.testing.assert_allclose(G[:, k * c:(k + 1) * c], s, atol=ATOL, rtol=1e-5)
    # (2) global logits == sum of sub-network logits (2.16)
    total = sum(sub_logits)
    np.testing.assert_allclose(logits, total, atol=ATOL, rtol=1e-5)
    # (3) the softmax identity (2.17)
    np.testing.assert_allclose(jax.nn.softmax(logits), jax.nn.softmax(total), atol=1e-5)


def independent_restriction(model, grid, g, sub_vars, x, xs):
    """Theorem 2.1 (1) computed here, apart from the library: per spatial layer and k, the global
    map on the activation field and channel block k, and sub-network k's whole map."""
    _, inter = model.apply(g, x, mutable=["intermediates"])
    sub_inter = [model.subnet(grid.K).apply(v, xs[k], mutable=["intermediates"])[1]["intermediates"]
                 for k, v in enumerate(sub_vars)]
    out = {}
    for name, windows in model.spatial_layers():
        G = inter["intermediates"][name][0]  # noqa: N806
        out[name] = []
        for k, box in enumerate(grid.boxes):
            field = dd.activation_field(windows, grid.shape, box)[-1]
            s = sub_inter[k][name][0]
            c = s.shape[-1]
            out[name].append((np.asarray(G[(slice(None),) + field.slices() + (slice(k * c, (k + 1) * c),)]),
                              np.asarray(s), field))
    return out


@pytest.mark.parametrize("name", ["2d-K16-overlap-pool", "3d-K4-pool"])
def test_restricted_feature_maps_agree_with_the_independent_check(name):
    """dcnn_dd.theorems.restricted_feature_maps / feature_map_gap against the check above, on the
    composition and on a broken one (composed weights perturbed), where both must see the gap."""
    from dcnn_dd.theorems import feature_map_gap, restricted_feature_maps

    model, grid = build_setting(*NAMED[name])
    sub, x, xs, sub_vars, _, g = _setup(model, grid)
    stacked = dd.stack(sub_vars)
    names = [n for n, _ in model.spatial_layers()]

    def agree(g_vars):
        ours = restricted_feature_maps(model, sub, g_vars, stacked, x, grid, layers=names)
        ref = independent_restriction(model, grid, g_vars, sub_vars, x, xs)
        assert list(ours) == names
        for n in names:
            for k, ((g1, s1, f1), (g2, s2, f2)) in enumerate(zip(ours[n], ref[n])):
                assert f1 == f2 and g1.shape == g2.shape == s1.shape == s2.shape, (n, k, f1, f2, g1.shape, s2.shape)
                np.testing.assert_allclose(g1, g2, atol=1e-5, rtol=1e-5, err_msg=f"{n} k={k}")
                np.testing.assert_allclose(s1, s2, atol=1e-5, rtol=1e-5, err_msg=f"{n} k={k}")
        return feature_map_gap(model, sub, g_vars, stacked, x, grid, layers=names), ref

    gap, ref = agree(g)
    assert max(max(v) for v in gap.values()) < ATOL, gap
    assert any(np.abs(s).max() > 0 for per_k in ref.values() for _, s, _ in per_k)  # a non-trivial comparison
    # ints name the layers as "layer<i>" (the zoo's and PlainCNN's convention): the same numbers
    assert feature_map_gap(model, sub, g, stacked, x, grid, layers=(0,)) == {0: gap[names[0]]}

    rng = np.random.default_rng(1)
    broken = jax.tree.map(lambda a: a + 0.05 * rng.normal(size=a.shape).astype(a.dtype), g)
    gap_b, ref_b = agree(broken)
    first = names[0]
    independent = [float(np.abs(gk - sk).max()) for gk, sk, _ in ref_b[first]]
    np.testing.assert_allclose(gap_b[first], independent, rtol=1e-5)
    assert min(gap_b[first]) > 1e-3, gap_b  # every sub-network's block differs: the check fails
    with pytest.raises(ValueError, match="do not exist"):
        restricted_feature_maps(model, sub, g, stacked, x, grid, layers=("nope",))


def agreeing_heads(sub, sub_vars, xs, target=0, share=0.5, margin=0.1):
    """Sub-network weights that all predict class ``target`` on about ``share`` of the samples.

    K independent random networks almost never agree on a sample (0/64 in 24 draws for every
    K > 1), so labels from their majority vote leave Theorem 2.2's set - the samples every
    sub-network classifies correctly - empty.  Here every sub-network's head bias for ``target``
    is raised by the same amount t (the composed head bias is the sum, (2.14)), chosen so that on
    the ``share`` of the samples where the sub-networks are the least against ``target`` all of
    them prefer it by at least ``margin``; the rest keep their random, disagreeing predictions."""
    K = len(sub_vars)  # noqa: N806
    z = np.stack([np.asarray(sub.apply(sub_vars[k], xs[k])) for k in range(K)])  # (K, B, C)
    t = agreeing_shift(z, target, share, margin)
    out = []
    for v in sub_vars:
        v = jax.tree.map(lambda a: a, v)
        b = v["params"]["Head"]["bias"]
        v["params"]["Head"]["bias"] = b.at[target].add(t)
        out.append(v)
    return out


def agreeing_shift(z, target=0, share=0.5, margin=0.1):
    """The head-bias shift t of :func:`agreeing_heads` for sub-network logits ``z`` (K, B, C)."""
    others = np.delete(z, target, axis=-1).max(-1)
    against = (others - z[..., target]).max(0)  # (B,): how far the least convinced sub-network is
    return float(np.quantile(against, share)) + margin


@pytest.mark.parametrize("K", KS)
def test_theorem_2_2_classification_and_cost_bound(K):  # noqa: N803
    @settings(max_examples=PER_K)
    @given(exact_setting(ndims=(2,), K=K), st.integers(0, 3))
    def check(setting, seed):
        check_theorem_2_2(*setting, seed=seed)

    check()


def check_theorem_2_2(model, grid, seed):
    K = grid.K  # noqa: N806
    sub, x, xs, sub_vars, plan, g = _setup(model, grid, seed=seed, batch=64)
    sub_vars = agreeing_heads(sub, sub_vars, xs)
    g = dd.compose(plan, dd.stack(sub_vars))
    logits = model.apply(g, x)
    sub_logits = jnp.stack([sub.apply(sub_vars[k], xs[k]) for k in range(K)])  # (K, B, C)
    assert_theorem_2_2(logits, sub_logits, seed)


def assert_theorem_2_2(logits, sub_logits, seed):
    """Theorem 2.2 for global logits (B, C) and sub-network logits (K, B, C): a sample every
    sub-network classifies correctly is classified correctly, and the cost bound (2.19)."""
    # labels: class 0 where every sub-network predicts it; elsewhere sub-network 0's prediction (right for
    # some sub-networks) or the class after it (wrong for sub-network 0), at random
    pred = np.asarray(sub_logits.argmax(-1))
    agree = (pred == 0).all(0)
    rng = np.random.default_rng(seed)
    y = jnp.asarray(np.where(agree, 0, np.where(rng.random(agree.size) < 0.5, pred[0],
                                                  (pred[0] + 1) % logits.shape[-1])))
    correct_k = sub_logits.argmax(-1) == y[None]  # (K, B)
    all_correct = correct_k.all(0)
    correct_g = logits.argmax(-1) == y
    n_all = int(all_correct.sum())
    assert n_all >= len(y) // 4, f"only {n_all} of {len(y)} samples are right for every sub-network: a vacuous check"
    assert bool(jnp.all(~all_correct | correct_g)), "a sample correct for every sub-network is wrong for the composed one"
    # per-sample cost bound behind (2.19), and (2.19) itself
    J = np.asarray(-jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])  # noqa: N806
    r = np.asarray(-jax.nn.log_softmax(sub_logits)[:, jnp.arange(len(y)), y])  # (K, B)
    ck = np.asarray(correct_k)
    best_plus = np.where(ck, r, np.inf).min(0)
    best_plus = np.where(np.isfinite(best_plus), best_plus, 0.0)
    bound = best_plus + np.where(ck, 0.0, r).sum(0)
    assert np.all(J <= bound + 1e-4), np.max(J - bound)
    allc = np.asarray(all_correct)
    assert np.all(J[allc] <= r[:, allc].min(0) + 1e-4)
    assert J.sum() <= bound.sum() + 1e-3


@given(st.sampled_from([1, 2, 4, 9]), st.booleans(), st.integers(0, 5))
def test_regression_head_is_the_mean_and_cost_bound(K, overlap, seed):  # noqa: N803
    parts = PARTS[K]
    grid = dd.Grid.uniform((18, 18), parts, size=tuple(18 // p + (2 if overlap and p > 1 else 0) for p in parts))
    model = PlainCNN(features=(K, 2 * K), pool_after=(), fc=(2 * K,), num_classes=3)
    sub = model.subnet(K)
    x = jax.random.normal(jax.random.PRNGKey(seed), (16, 18, 18, 1))
    xs = dd.decompose_input(x, grid)
    sub_vars = random_sub_vars(sub, xs[0], K, seed=seed)
    plan = dd.plan_for(model, sub, grid, input_shape=(1, 18, 18, 1), windows=model.windows(), head="mean")
    g = dd.compose(plan, dd.stack(sub_vars))
    pred = model.apply(g, x)
    preds = jnp.stack([sub.apply(sub_vars[k], xs[k]) for k in range(K)])
    np.testing.assert_allclose(pred, preds.mean(0), atol=ATOL, rtol=1e-5)  # (2.22)-(2.23)
    y = jax.random.normal(jax.random.PRNGKey(seed + 1), pred.shape)
    mae_g = jnp.abs(pred - y).sum(-1).mean()
    mae_k = jnp.abs(preds - y).sum(-1).mean(-1)
    assert mae_g <= mae_k.mean() + 1e-5  # cost bound: at most the average sub-network cost
    mse_g = ((pred - y) ** 2).sum(-1).mean()
    assert mse_g <= ((preds - y) ** 2).sum(-1).mean(-1).mean() + 1e-5


@given(st.sampled_from([1, 2, 4, 8]), st.integers(0, 5))
def test_autoencoder_output_is_the_concatenation_and_reconstruction_bound(K, seed):  # noqa: N803
    from dcnn_dd.models import AutoEncoder

    model = AutoEncoder(features=(4 * K, 2 * K, 4 * K), num_inputs=8 * K)
    sub = model.subnet(K)
    grid = dd.Grid.uniform(8 * K, K)  # contiguous feature blocks (a complete 1-D decomposition)
    x = jax.random.normal(jax.random.PRNGKey(seed), (10, 8 * K))
    xs = dd.decompose_input(x[..., None], grid)[..., 0]
    sub_vars = random_sub_vars(sub, xs[0], K, seed=seed)
    plan = dd.plan_for(model, sub, None, K=K, input_shape=(1, 8 * K), sub_input_shape=(1, 8))
    g = dd.compose(plan, dd.stack(sub_vars))
    out = model.apply(g, x)
    outs = jnp.stack([sub.apply(sub_vars[k], xs[k]) for k in range(K)])
    np.testing.assert_allclose(out, jnp.concatenate(list(outs), axis=-1), atol=ATOL, rtol=1e-5)
    err_g = jnp.linalg.norm(x - out, axis=-1)
    err_k = jnp.linalg.norm(xs - outs, axis=-1).sum(0)
    assert bool(jnp.all(err_g <= err_k + 1e-4))


@given(st.sampled_from([1, 2, 4]), st.integers(1, 2), st.integers(0, 5))
def test_rnn_hidden_states_and_outputs_2_29(K, depth, seed):  # noqa: N803
    from dcnn_dd.models import ElmanRNN

    model = ElmanRNN(hidden=tuple(3 * K for _ in range(depth)), num_classes=4)
    sub = model.subnet(K)
    x = jax.random.normal(jax.random.PRNGKey(seed), (5, 6, 7))  # features shared by all sub-networks
    sub_vars = random_sub_vars(sub, x, K, seed=seed)
    plan = dd.plan_for(model, sub, None, K=K, input_shape=(1, 6, 7))
    g = dd.compose(plan, dd.stack(sub_vars))
    logits, inter = model.apply(g, x, mutable=["intermediates"])
    total = 0
    for k in range(K):
        lk, ik = sub.apply(sub_vars[k], x, mutable=["intermediates"])
        total = total + lk
        for name in inter["intermediates"]:
            for G, s in zip(inter["intermediates"][name], ik["intermediates"][name]):  # noqa: N806
                c = s.shape[-1]
                np.testing.assert_allclose(G[..., k * c:(k + 1) * c], s, atol=ATOL, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(logits, total, atol=ATOL, rtol=1e-5)


@given(st.sampled_from([1, 2, 4, 9]), st.booleans(), st.integers(0, 3))
def test_fc_network_on_decomposed_inputs(K, overlap, seed):  # noqa: N803
    from dcnn_dd.models import MLP

    parts = PARTS[K]
    size = tuple(12 // p + (3 if overlap and p > 1 else 0) for p in parts)
    grid = dd.Grid.uniform((12, 12), parts, size=size)
    model = MLP(features=(2 * K, 3 * K), num_outputs=5)
    sub = model.subnet(K)
    x = jax.random.normal(jax.random.PRNGKey(seed), (4, 12, 12, 2))
    xs = dd.decompose_input(x, grid)
    sub_vars = random_sub_vars(sub, xs[0], K, seed=seed)
    plan = dd.plan_for(model, sub, grid, input_shape=(1, 12, 12, 2))
    if K > 1:
        assert "Sec. 2.4" in str(plan.rules["params/Dense_0/kernel"])
    g = dd.compose(plan, dd.stack(sub_vars))
    logits, inter = model.apply(g, x, mutable=["intermediates"])
    total = 0
    for k in range(K):
        lk, ik = sub.apply(sub_vars[k], xs[k], mutable=["intermediates"])
        total = total + lk
        s = ik["intermediates"]["fc0"][0]
        c = s.shape[-1]
        np.testing.assert_allclose(inter["intermediates"]["fc0"][0][:, k * c:(k + 1) * c], s, atol=ATOL, rtol=1e-5)
    np.testing.assert_allclose(logits, total, atol=ATOL, rtol=1e-5)


def test_batchnorm_in_inference_mode_is_exact():
    K = 4  # noqa: N806
    grid = dd.Grid.uniform((16, 16), 2, size=10)
    model = PlainCNN(features=(8, 8), pool_after=(), fc=(8,), batchnorm=True)
    sub = model.subnet(K)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 16, 1))
    xs = dd.decompose_input(x, grid)
    sub_vars = random_sub_vars(sub, xs[0], K)
    plan = dd.plan_for(model, sub, grid, input_shape=(1, 16, 16, 1), windows=model.windows())
    assert str(plan.rules["batch_stats/BatchNorm_0/mean"]).startswith("BLOCK")
    g = dd.compose(plan, dd.stack(sub_vars))
    total = sum(sub.apply(sub_vars[k], xs[k]) for k in range(K))
    np.testing.assert_allclose(model.apply(g, x), total, atol=ATOL, rtol=1e-5)
