"""Layer-parallel ODE-ResNet (Guenther et al. 2020): MGRIT reproduces the serial network and its
gradients, the finite-step property, monotone residuals, multilevel = two-level, training steps,
regularisers, and clear errors for bad input.  float64 (``jax.enable_x64``) where the tolerance
needs it; tiny widths and N so that the whole file takes seconds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dcnn_dd.layer_parallel as lp
from dcnn_dd.layer_parallel.data import NUM_CLASSES, peaks


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def setup(kind="dense", n=16, T=2.0, width=3, batch=4, scale=1.0, seed=0):  # noqa: N803
    if kind == "dense":
        model = lp.ODEResNet(n_layers=n, width=width, num_classes=3, T=T, init_scale=scale)
        x = jax.random.normal(jax.random.PRNGKey(seed), (batch, 2))
    else:
        model = lp.ODEResNet(n_layers=n, width=2, num_classes=3, T=T, kind="conv", open_stride=2, init_scale=scale)
        x = jax.random.normal(jax.random.PRNGKey(seed), (batch, 6, 6, 1))
    params = model.init(jax.random.PRNGKey(seed + 1), x)
    # random biases, so that the steps differ in more than their weights
    params["steps"]["b"] = 0.3 * jax.random.normal(jax.random.PRNGKey(seed + 2), params["steps"]["b"].shape)
    return model, params, x, model.open(params["open"], x)


fwd = jax.jit(lp.forward, static_argnums=(0, 3))  # model and solver are static (hashable)


def maxdiff(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("kind,cfactor,levels,relax", [
    ("dense", 4, 2, "FCF"), ("dense", 2, 4, "auto"), ("dense", 2, 3, ("FCF", "F")), ("conv", 2, 3, "auto"),
])
def test_converged_mgrit_reproduces_serial_forward(kind, cfactor, levels, relax):
    model, params, _, u0 = setup(kind)
    ref = model.serial_states(params["steps"], u0)
    s = lp.Solver(cfactor=cfactor, levels=levels, relax=relax, tol=1e-12, max_iter=40)
    u, info = fwd(model, params["steps"], u0, s)
    lp.check_solve(info)
    assert int(info.iterations) < 40 and float(info.residuals[int(info.iterations)]) <= 1e-12
    assert maxdiff(u, ref) < 1e-11
    assert float(info.residuals[0]) > 1e-3  # it did have something to solve


@pytest.mark.parametrize("relax,needed", [("F", 16 // 4), ("FCF", 16 // 8)])
def test_finite_step_property_two_level(relax, needed):
    """Two-level MGRIT (exact coarse solve) is exact after N/m iterations with F-relaxation,
    N/(2m) with FCF (every iteration makes one more, resp. two more, C-points exact), and not before."""
    model, params, _, u0 = setup(n=16)
    ref = model.serial_states(params["steps"], u0)
    errs = []
    for k in (needed - 1, needed):
        u, info = fwd(model, params["steps"], u0, lp.Solver(cfactor=4, levels=2, relax=relax, max_iter=k))
        assert int(info.iterations) == k
        errs.append(maxdiff(u, ref))
    assert errs[0] > 1e-6 and errs[1] < 1e-13, errs


def test_residual_falls_monotonically_on_contractive_network():
    """K_n = -2 I + small: dPhi/du = I + h diag(tanh') K has norm < 1, a contractive network."""
    model, params, _, u0 = setup(n=64, T=4.0, width=3)
    params["steps"]["K"] = -2.0 * jnp.eye(3) + 0.1 * params["steps"]["K"]
    for s in (lp.Solver(cfactor=4, levels=2, max_iter=12), lp.Solver(cfactor=2, levels=5, max_iter=12)):
        _, info = fwd(model, params["steps"], u0, s)
        r = np.asarray(info.residuals)
        r = r[r > 1e-14]  # float64 floor
        assert len(r) >= 4 and np.all(np.diff(r) < 0), r
        assert lp.conv_factor(info) < 0.2


def test_two_level_and_multilevel_agree():
    model, params, _, u0 = setup(n=32, T=3.0)
    sols, iters = [], []
    for levels in (2, 3, 5):
        u, info = fwd(model, params["steps"], u0, lp.Solver(cfactor=2, levels=levels, tol=1e-12, max_iter=40))
        sols.append(u)
        iters.append(int(info.iterations))
    assert maxdiff(sols[0], sols[1]) < 1e-11 and maxdiff(sols[0], sols[2]) < 1e-11
    assert max(iters) < 40, iters


def test_warm_start_continues_the_iteration():
    """One iteration at a time, each warm-started from the last, converges like one long solve."""
    model, params, _, u0 = setup(n=32)
    ref = model.serial_states(params["steps"], u0)
    s = lp.Solver(cfactor=4, levels=3, max_iter=1)
    u, errs = None, []
    for _ in range(5):
        u, _ = fwd(model, params["steps"], u0, s, u if u is not None else jnp.broadcast_to(u0, (33, *u0.shape)))
        errs.append(maxdiff(u, ref))
    assert all(b < a for a, b in zip(errs, errs[1:])) and errs[-1] < 1e-3 * errs[0], errs


@pytest.mark.parametrize("kind,levels", [("conv", 3)])  # dense: the next test (and test_training_methods)
def test_custom_vjp_gradient_equals_serial_grad(kind, levels):
    model, params, x, _ = setup(kind)
    y = jnp.arange(x.shape[0]) % 3
    s = lp.Solver(cfactor=2, levels=levels, tol=1e-13, max_iter=50)

    def loss(p, apply):
        return lp.cross_entropy(apply(p, x), y) + lp.time_derivative(p["steps"], 1e-2, model.h)

    g_ser = jax.grad(loss)(params, model.apply_serial)
    g_lp = jax.jit(jax.grad(loss), static_argnums=1)(params, lambda p, xx: lp.apply_parallel(model, s, s, p, xx))
    assert maxdiff(g_ser, g_lp) < 1e-10
    assert maxdiff(g_ser, jax.tree.map(jnp.zeros_like, g_ser)) > 1e-3


def test_gradient_of_all_states_and_warm_start_input():
    """Cotangents on every state (not only u_N) go through the adjoint's right-hand side; the
    warm-start input gets a zero gradient."""
    model, params, _, u0 = setup(n=8)
    w = jax.random.normal(jax.random.PRNGKey(5), (9, *u0.shape))
    s = lp.Solver(cfactor=2, levels=3, tol=1e-13, max_iter=40)
    warm = model.serial_states(params["steps"], u0) + 0.1
    g_ser = jax.grad(lambda st, a: jnp.sum(w * jnp.sin(model.serial_states(st, a))), argnums=(0, 1))(params["steps"], u0)
    g_lp = jax.jit(jax.grad(lambda st, a, uw: jnp.sum(w * jnp.sin(lp.layer_states(model, s, s, st, a, uw))),
                            argnums=(0, 1, 2)))(params["steps"], u0, warm)
    assert maxdiff(g_ser, g_lp[:2]) < 1e-10
    assert float(jnp.max(jnp.abs(g_lp[2]))) == 0.0


def test_training_methods():
    """2 Adam steps: exact layer-parallel equals serial to the solver tolerance (with both
    regularisers); one-shot (budget 1+1, warm start) lowers the full-batch loss on peaks."""
    x, y = (jnp.asarray(a) for a in peaks(64))
    model = lp.ODEResNet(n_layers=8, width=4, num_classes=NUM_CLASSES, T=3.0)
    params = model.init(jax.random.PRNGKey(0), x)
    tx = optax.adam(1e-2)
    exact = lp.Solver(cfactor=2, levels=2, tol=1e-12, max_iter=30)
    out = {}
    for m in (lp.Method("serial", alpha=1e-3, beta=1e-2), lp.Method("exact", exact, exact, alpha=1e-3, beta=1e-2),
              lp.Method("one-shot", lp.Solver(2, 2, max_iter=1), lp.Solver(2, 2, max_iter=1), alpha=1e-3, beta=1e-2)):
        step, st, losses = lp.make_step(model, m, tx), lp.init_state(params, tx, model, m, x), []
        for i in range(2 if m.name != "one-shot" else 15):
            st, met = step(st, x, y)
            lp.train.check_metrics(met, i)
            losses.append(float(met["loss"]))
        out[m.name] = (st, losses, met)
    # float32 parameters (Flax's default), Adam
    assert maxdiff(out["serial"][0].params, out["exact"][0].params) < 1e-6
    assert abs(out["serial"][1][0] - out["exact"][1][0]) < 1e-6
    assert out["one-shot"][2]["fwd_iters"] == 1 and out["one-shot"][2]["bwd_iters"] == 1
    assert out["one-shot"][0].u_warm.shape == (9, 64, 4)
    assert np.mean(out["one-shot"][1][-5:]) < 0.9 * out["one-shot"][1][0]


def test_exact_training_gradient_equals_serial_leaf_by_leaf():
    """The training path (``train.layer_parallel_loss_and_grad``, explicit adjoint, not the
    ``custom_vjp``) gives the serial gradient leaf by leaf, with both regularisers on: Adam
    trajectories alone would not see a positive scale error per leaf."""
    x, y = jnp.asarray(peaks(32)[0], jnp.float64), jnp.asarray(peaks(32)[1], jnp.int32)
    model = lp.ODEResNet(n_layers=16, width=4, num_classes=NUM_CLASSES, T=3.0)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(0), x))
    params["steps"]["b"] = 0.3 * jax.random.normal(jax.random.PRNGKey(3), params["steps"]["b"].shape)
    s = lp.Solver(cfactor=2, levels=3, tol=1e-13, max_iter=60)
    m = lp.Method("exact", s, s, alpha=1e-2, beta=1e-1)
    loss_ser, g_ser = jax.jit(lp.train.serial_loss_and_grad, static_argnums=(0, 1))(model, m, params, x, y)
    loss_lp, g_lp, _, _, fi, bi = jax.jit(lp.train.layer_parallel_loss_and_grad, static_argnums=(0, 1))(
        model, m, params, x, y)
    lp.check_solve(fi), lp.check_solve(bi)
    assert int(fi.iterations) < 60 and int(bi.iterations) < 60
    assert abs(float(loss_ser - loss_lp)) < 1e-12
    assert jax.tree.structure(g_ser) == jax.tree.structure(g_lp)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_ser), jax.tree.leaves(g_lp)):
        scale = float(jnp.max(jnp.abs(a)))
        assert scale > 1e-6, path  # every leaf has a gradient to compare
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-10 * scale, (path, float(jnp.max(jnp.abs(a - b))), scale)
    # the regularisers contribute: without them the gradient differs
    _, g_noreg = lp.train.serial_loss_and_grad(model, lp.Method("exact", s, s), params, x, y)
    assert maxdiff(g_ser["steps"], g_noreg["steps"]) > 1e-4 and maxdiff(g_ser["open"], g_noreg["open"]) > 1e-4


def test_nonfinite_on_coarsest_level_is_reported_there():
    """A step that is non-finite only for step sizes > 0.5: N=64, h=1/16, m=4, 3 levels (h, 4h = 1/4,
    16h = 1): only the coarsest level (index 2) blows up, in the first iteration; the NaN reaches
    the fine residual through the correction, but the report names level 2, not level 0."""

    def step(u, p, h):
        return jnp.where(h > 0.5, jnp.nan, u + h * p * u)

    n = 64
    params = 0.1 * jnp.ones((n,))
    g = jnp.zeros((n + 1, 3)).at[0].set(1.0)
    solve = jax.jit(lp.mgrit.solve, static_argnums=(0, 2, 5))
    _, info = solve(step, params, 1 / 16, g, jnp.broadcast_to(g[0], g.shape), lp.Solver(cfactor=4, levels=3, max_iter=5))
    assert np.isfinite(float(info.residuals[0])) and not np.isfinite(float(info.residuals[1]))
    assert int(info.nonfinite_level) == 2 and int(info.nonfinite_iteration) == int(info.iterations) == 1
    with pytest.raises(lp.NonFiniteResidualError, match=r"iteration 1 \(first non-finite values on level 2\)"):
        lp.check_solve(info)
    # two levels (coarsest h = 1/4): no blow-up
    _, info2 = solve(step, params, 1 / 16, g, jnp.broadcast_to(g[0], g.shape), lp.Solver(cfactor=4, levels=2, max_iter=5))
    assert int(info2.nonfinite_level) == -1 and int(info2.iterations) == 5


def test_regularisers():
    model, params, _, _ = setup(n=4)
    st = params["steps"]
    want = 0.5 * 0.3 * model.h * sum(float(jnp.sum((a[n] - a[n - 1]) ** 2)) / model.h**2
                                      for a in (st["K"], st["b"]) for n in range(1, 4))
    assert abs(float(lp.time_derivative(st, 0.3, model.h)) - want) < 1e-12
    weights = [params["open"]["kernel"], st["K"], params["cls"]["kernel"]]
    assert abs(float(lp.tikhonov(params, 0.2)) - 0.1 * sum(float(jnp.sum(w**2)) for w in weights)) < 1e-12


def test_peaks_data():
    x, y = peaks(2000)
    assert x.shape == (2000, 2) and x.min() >= -3 and x.max() <= 3
    counts = np.bincount(y, minlength=5)
    assert len(counts) == 5 and counts.min() > 250  # about equal areas
    assert np.array_equal(peaks(10, seed=3)[1], peaks(10, seed=3)[1])


def test_modeled_critical_path():
    s = lp.Solver(cfactor=4, levels=2, relax="F")
    # initial F-relax (3) + residual (1); per iteration: residual 1 + coarse step phi_c of the FAS
    # right-hand side 1 + F-interp 3 + coarse 16 serial steps + the stopping test's fine residual 1
    # (solve() computes it after the cycle and again at the next cycle's start: counted as run)
    assert lp.critical_path(64, s, 2) == 4 + 2 * (1 + 1 + 3 + 16 + 1)
    # 3 levels, 64 -> 16 -> 4: fine (F) 1 + 1 + 3; level 1 (FCF, 4 chunks on 16 processors) 7 + 1 + 1 + 3;
    # coarsest 4; stopping residual 1
    assert lp.critical_path(64, lp.Solver(cfactor=4, levels=3), 1) == 4 + (1 + 1 + 3) + (7 + 1 + 1 + 3) + 4 + 1
    # fewer processors: every level's chunks in ceil(chunks / P) groups (the initial residual too)
    assert lp.critical_path(64, s, 1, processors=4) == 4 * (3 + 1) + 4 * (1 + 1 + 3) + 16 + 4
    deep = lp.Solver(cfactor=4, levels=5)
    assert lp.critical_path(4096, deep, 2) < lp.critical_path(4096, lp.Solver(cfactor=4, levels=2), 2)


def _info(residuals):
    r = np.full(8, np.nan)
    r[: len(residuals)] = residuals
    return lp.SolveInfo(np.int32(len(residuals) - 1), r, np.int32(-1), np.int32(-1))


def test_conv_factor_of_an_exact_solve_is_the_rate_before_it():
    # residuals 1, 0.5, 0.125, 0.03125 then exactly 0: the rate before the exact step is 1/4
    info = _info([1.0, 0.5, 0.125, 0.03125, 0.0])
    assert lp.conv_factor(info) == pytest.approx(0.25)
    assert lp.conv_factor(info, skip_first=False) == pytest.approx((0.03125 / 1.0) ** (1 / 3))
    assert lp.conv_factor(_info([1.0, 0.5, 0.125, 0.0, 0.0])) == pytest.approx(0.25)
    assert lp.conv_factor(_info([1.0, 0.5, 0.0])) == 0.0  # exact in the first counted iteration
    assert np.isnan(lp.conv_factor(_info([1.0, 0.5])))  # one iteration: none after the first
    assert lp.conv_factor(_info([2.0, 1.0, 0.5])) == pytest.approx(0.5)
    assert lp.residual_reduction(_info([2.0, 1.0, 0.5])) == pytest.approx(0.25)


def test_bad_input():
    model, params, _, u0 = setup(n=12)
    with pytest.raises(ValueError, match="not divisible by the coarsening factor m=8"):
        lp.forward(model, params["steps"], u0, lp.Solver(cfactor=8, levels=2))
    with pytest.raises(ValueError, match="level 2 would have 0"):  # 12 -> 3 -> below one step
        lp.forward(model, params["steps"], u0, lp.Solver(cfactor=4, levels=3))
    with pytest.raises(ValueError, match="use at most 2 levels"):
        lp.hierarchy(12, lp.Solver(cfactor=2, levels=3, min_coarse=4))
    short = jax.tree.map(lambda a: a[:-1], params["steps"])
    with pytest.raises(ValueError, match=r"leading \(layer\) axis must be n_layers=12"):
        lp.forward(model, short, u0, lp.Solver(cfactor=2))
    with pytest.raises(ValueError, match="relax="):
        lp.Solver(levels=3, relax=("F",))
    with pytest.raises(ValueError, match="layers"):
        lp.Solver(strategy="shard_map")
    with pytest.raises(ValueError, match="cfactor=1"):
        lp.Solver(cfactor=1)
    relu = lp.ODEResNet(n_layers=12, width=3, num_classes=3, activation="relu")  # unbounded: overflows
    huge = dict(params["steps"], K=1e200 * jnp.ones_like(params["steps"]["K"]))
    _, info = fwd(relu, huge, jnp.abs(u0) + 1.0, lp.Solver(cfactor=2, levels=3, max_iter=5))
    assert int(info.nonfinite_level) == 0 and int(info.nonfinite_iteration) == int(info.iterations) == 0
    with pytest.raises(lp.NonFiniteResidualError, match=r"iteration \d+ \(first non-finite values on level \d\)"):
        lp.check_solve(info)
