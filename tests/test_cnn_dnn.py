"""CNN-DNN (Klawonn, Weber, Lanser): the aggregators on constructed inputs, and the coherent model's
forward against the two-stage pipeline with the same parameters (no training; fast)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcnn_dd.cnn_dnn import CNNDNN, DNN, aggregate, join, split, two_stage
from dcnn_dd.grid import Grid, decompose_input
from dcnn_dd.models import PlainCNN


def P(*rows):  # noqa: N802 - (K, 1, C) probabilities of one sample from K rows
    return jnp.asarray(rows, jnp.float32)[:, None, :]


# ------------------------------------------------------------------------------ aggregators
def test_average_known_values():
    probs = P([0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7])
    np.testing.assert_allclose(aggregate.average(probs)[0], [0.25, 0.35, 0.4], atol=1e-7)
    assert int(jnp.argmax(aggregate.average(probs)[0])) == 2  # the average picks class 2 ...
    assert int(aggregate.majority_vote(probs)[0]) == 2  # ... votes 0, 1, 2, 2: class 2


def test_vote_majority_beats_confidence():
    # two confident votes for class 0 lose against three lukewarm ones for class 1
    probs = P([0.99, 0.01, 0.0], [0.99, 0.01, 0.0], [0.3, 0.4, 0.3], [0.3, 0.4, 0.3], [0.3, 0.4, 0.3])
    np.testing.assert_array_equal(aggregate.votes(probs)[0], [2, 3, 0])
    assert int(aggregate.majority_vote(probs)[0]) == 1
    assert int(jnp.argmax(aggregate.average(probs)[0])) == 0  # the average disagrees here


def test_vote_tie_goes_to_highest_summed_probability():
    # votes 2-2 between classes 0 and 2; summed probability 0.6+0.5=1.1 for class 0, 0.9+0.8=1.7 for class 2
    probs = P([0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.05, 0.05, 0.9], [0.1, 0.1, 0.8])
    np.testing.assert_array_equal(aggregate.votes(probs)[0], [2, 0, 2])
    assert int(aggregate.majority_vote(probs)[0]) == 2
    # the same with the classes swapped: the rule, not the index, decides
    assert int(aggregate.majority_vote(probs[:, :, ::-1])[0]) == 0
    # a class with no vote never wins, however large its summed probability
    probs = P([0.4, 0.35, 0.25], [0.0, 0.45, 0.55], [0.4, 0.35, 0.25], [0.0, 0.45, 0.55])  # class 1: sum 1.6, 0 votes
    assert int(aggregate.majority_vote(probs)[0]) == 2  # class 2: sum 1.6 > class 0: 0.8


def test_vote_exact_tie_goes_to_lowest_index():
    probs = P([0.0, 0.75, 0.0, 0.25], [0.0, 0.25, 0.0, 0.75])  # 1-1, sums 1.0 and 1.0 exactly
    assert int(aggregate.majority_vote(probs)[0]) == 1
    probs = P([0.25, 0.0, 0.75], [0.75, 0.0, 0.25], [0.0, 1.0, 0.0])  # 1-1-1, sums 1, 1, 1
    assert int(aggregate.majority_vote(probs)[0]) == 0


def _vote_reference(probs):
    """The documented rule, one sample at a time in plain Python."""
    probs = np.asarray(probs)
    out = []
    for b in range(probs.shape[1]):
        counts = np.bincount(probs[:, b].argmax(-1), minlength=probs.shape[-1])
        sums = probs[:, b].sum(0)
        tied = [c for c in range(probs.shape[-1]) if counts[c] == counts.max()]
        best = max(sums[c] for c in tied)
        out.append(min(c for c in tied if sums[c] == best))
    return np.array(out)


@pytest.mark.parametrize("K", [2, 3, 4, 16])
def test_vote_matches_reference_on_many_ties(K):  # noqa: N803
    rng = np.random.default_rng(K)
    # coarse probabilities (multiples of 1/4 over 3 classes) make vote ties and equal sums common
    grid = np.array([p for p in itertools.product(range(5), repeat=3) if sum(p) == 4], np.float32) / 4
    probs = grid[rng.integers(0, len(grid), size=(K, 400))]
    ref = _vote_reference(probs)
    counts = np.asarray(aggregate.votes(jnp.asarray(probs)))
    assert (np.sum(counts == counts.max(-1, keepdims=True), -1) > 1).mean() > 0.1  # ties are really exercised
    np.testing.assert_array_equal(np.asarray(aggregate.majority_vote(jnp.asarray(probs))), ref)


def test_logit_sum_and_shape_errors():
    logits = jnp.arange(24, dtype=jnp.float32).reshape(4, 2, 3)
    np.testing.assert_array_equal(aggregate.summed_logits(logits), np.asarray(logits).sum(0))
    for fn in (aggregate.average, aggregate.votes, aggregate.majority_vote, aggregate.summed_logits):
        with pytest.raises(ValueError, match=r"\(K, B, C\)"):
            fn(jnp.zeros((4, 3)))


def test_dnn_default_size_at_paper_scale_as_documented():
    """The sizes docs/cnn_dnn.md and default_hidden's docstring quote (CIFAR-100, K=16, ResNet32 64/128/256
    on 4x4 sub-images of 10x10): the default DNN outweighs the 16 local CNNs together."""
    from dcnn_dd.complexity import count_params
    from dcnn_dd.models import CifarResNet

    net = CifarResNet(depth=32, widths=(64, 128, 256), num_classes=100)
    shapes = lambda m, shape: jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros(shape))  # noqa: E731
    dnn = count_params(shapes(DNN(100), (1, 16, 100)))
    local_all = 16 * count_params(shapes(net.subnet(16), (1, 10, 10, 3)))
    assert (dnn, local_all, count_params(shapes(net, (1, 32, 32, 3)))) == (2_791_524, 507_072, 7_455_972)


def test_dnn_default_widths_and_shapes():
    assert aggregate.default_hidden(4, 10) == (80, 80)
    assert aggregate.default_hidden(1, 2) == (64, 64)
    assert aggregate.default_hidden(16, 100) == (1024, 1024)
    dnn = DNN(10)
    v = jax.eval_shape(dnn.init, jax.random.PRNGKey(0), jnp.zeros((2, 16, 10)))  # shapes only, nothing compiled
    assert v["params"]["Dense_0"]["kernel"].shape == (160, 320)
    assert v["params"]["Dense_1"]["kernel"].shape == (320, 320)
    assert v["params"]["Head"]["kernel"].shape == (320, 10)
    small = DNN(10, (7,))
    out = jax.eval_shape(lambda x: small.apply(small.init(jax.random.PRNGKey(0), x), x), jnp.zeros((3, 4, 10)))
    assert out.shape == (3, 10)
    with pytest.raises(ValueError, match="local probabilities"):
        jax.eval_shape(dnn.init, jax.random.PRNGKey(0), jnp.zeros((2, 16, 9)))


# ------------------------------------------------------------------------------ the coherent model
def _perturbed(variables, seed, scale=0.3):
    """Every leaf moved off its initial value (BatchNorm variances kept positive); numpy draws."""
    rng = np.random.default_rng(seed)

    def move(path, leaf):
        new = np.asarray(leaf) + scale * rng.standard_normal(leaf.shape).astype(np.float32)
        return jnp.asarray(np.abs(new) + 0.1 if jax.tree_util.keystr(path).endswith("['var']") else new)

    return jax.tree_util.tree_map_with_path(move, variables)


@pytest.fixture(scope="module")
def coherent_case():
    grid = Grid.uniform((12, 12), 2, size=8)  # K = 4 overlapping sub-images
    local = PlainCNN(features=(4, 4), pool_after=(0,), fc=(8,), padding="SAME", head="gap", batchnorm=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 12, 12, 2))
    variables = jax.jit(CNNDNN(local, DNN(10, (16,)), grid).init)(jax.random.PRNGKey(0), x)
    return grid, local, x, _perturbed(variables, 2)


def test_variable_layout_is_the_subnet_phase_layout(coherent_case):
    grid, local, x, variables = coherent_case
    local_vars, dnn_vars = split(variables)
    assert set(variables) == {"params", "batch_stats"} and set(variables["params"]) == {"local", "dnn"}
    one = jax.eval_shape(local.init, jax.random.PRNGKey(3), jnp.zeros((1, 8, 8, 2)))
    for col in ("params", "batch_stats"):  # every leaf: the single local CNN's shape with K stacked in front
        jax.tree.map(lambda s, o: None if s.shape == (4, *o.shape) else pytest.fail(f"{s.shape} vs {o.shape}"),
                     local_vars[col], one[col])
    again = join(local_vars, dnn_vars)  # join(split(v)) is v, leaf by leaf (the same arrays)
    assert all(a is b for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(variables)))


@pytest.mark.parametrize("inner", ["vmap", "sequential"])
def test_coherent_forward_equals_two_stage_pipeline(coherent_case, inner):
    grid, local, x, variables = coherent_case
    dnn = DNN(10, (16,))
    model = CNNDNN(local, dnn, grid, inner)
    local_vars, dnn_vars = split(variables)
    ref, probs = two_stage(local, dnn, grid, local_vars, dnn_vars, x)
    fwd = jax.jit(model.apply)
    out = fwd(variables, x)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(ref).max()) > 0.1  # not a trivial zero output
    # column k of the local probabilities is local CNN k on sub-image k
    xs = decompose_input(x, grid)
    np.testing.assert_allclose(probs[:, 0], jax.nn.softmax(local.apply(jax.tree.map(lambda a: a[0], local_vars),
                                                                       xs[0]), -1), atol=1e-6)
    # each local CNN sees only its own sub-image: changing every pixel outside sub-image 0's window
    # leaves local CNN 0's probabilities as they were, and changes those of every other local CNN
    # (each window here reaches outside window 0)
    def window(k):
        return (slice(None), *(slice(o, o + n) for o, n in zip(grid.origins[k], grid.sub_shape)), slice(None))

    outside = np.ones(x.shape, bool)
    outside[window(0)] = False
    noise = jax.random.normal(jax.random.PRNGKey(7), x.shape)
    x2 = jnp.where(outside, x + 2.0 * noise, x)
    ref2, probs2 = two_stage(local, dnn, grid, local_vars, dnn_vars, x2)
    np.testing.assert_allclose(probs2[:, 0], probs[:, 0], atol=1e-6, rtol=0)
    for k in range(1, grid.K):
        assert outside[window(k)].any(), k  # window k contains perturbed pixels ...
        assert float(jnp.abs(probs2[:, k] - probs[:, k]).max()) > 1e-4, k  # ... and local CNN k responds
    np.testing.assert_allclose(fwd(variables, x2), ref2, rtol=1e-5, atol=1e-5)  # coherent, too
    # training mode: batch statistics per local CNN, returned under 'local' with the stacked layout
    y, new = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert y.shape == (5, 10)
    assert jax.tree.structure(new) == jax.tree.structure({"batch_stats": variables["batch_stats"]})
    k1 = jax.tree.map(lambda a: a[1], local_vars)
    _, ref_bs = local.apply(k1, xs[1], train=True, mutable=["batch_stats"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b, rtol=1e-5, atol=1e-6),
                 new["batch_stats"]["local"], ref_bs["batch_stats"])


def test_coherent_gradients_reach_every_local_cnn(coherent_case):
    grid, local, x, variables = coherent_case
    model = CNNDNN(local, DNN(10, (16,)), grid)

    def loss(params):
        return jnp.sum(model.apply({**variables, "params": params}, x) ** 2)

    g = jax.jit(jax.grad(loss))(variables["params"])
    kernel = g["local"]["Conv_0"]["kernel"]  # (K, 3, 3, 2, 4)
    assert all(float(jnp.abs(kernel[k]).max()) > 0 for k in range(grid.K))
    assert float(jnp.abs(g["dnn"]["Head"]["kernel"]).max()) > 0


# ------------------------------------------------------------------- the docs page (docs/cnn_dnn.md)
def _readme_blocks():
    """The CNN-DNN page's model example and training example, as (page, block)."""
    from tests.docs_pages import cnn_dnn_blocks

    return cnn_dnn_blocks()


def test_readme_example_runs(capsys):
    page, block = _readme_blocks()[0]
    exec(compile(block, page, "exec"), {})  # noqa: S102
    lines = capsys.readouterr().out.strip().splitlines()
    assert float(lines[0]) < 1e-4  # coherent forward == two-stage pipeline


def test_readme_training_example_is_a_valid_run(monkeypatch):
    import dcnn_dd.cnn_dnn as cd
    from dcnn_dd.cnn_dnn.train import CNNDNNConfig
    from dcnn_dd.train import Config
    from dcnn_dd.train.config import build_grid, build_model

    from tests.docs_pages import run_stubbed

    (config, cfg, run_dir), = run_stubbed(monkeypatch, cd, "run_cnn_dnn", _readme_blocks()[1], {"acc": {}})
    assert isinstance(config, Config) and isinstance(cfg, CNNDNNConfig) and run_dir == "results/my_cnn_dnn"
    assert build_grid(config.grid, (28, 28, 1)).K == config.K
    assert build_model(config.model, 10).subnet(config.K).features == (8, 8, 16, 16)


def test_coherent_data_parallel_on_2_devices_equals_1_device():
    """The coherent model trains data-parallel like the global network (2 simulated devices, subprocess)."""
    import json
    import sys

    from tests import runs

    p = runs.run([sys.executable, "-m", "tests.cnn_dnn_multidevice"], devices=2)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for inner in ("vmap", "sequential"):
        r = out[inner]
        assert r["devices"] == 2 and r["moved"] > 1e-3, r
        assert r["params_diff"] < 1e-5 and r["batch_stats_diff"] < 1e-5 and r["loss_diff"] < 1e-5, r


def test_bad_inner_strategy_is_a_clear_error_before_any_training():
    from dcnn_dd.cnn_dnn import CNNDNNConfig

    with pytest.raises(ValueError, match=r"inner='shard_map': choose one of \('vmap', 'sequential'\)"):
        CNNDNNConfig(inner="shard_map")
