"""Optimisers, schedules and models of your own (issue 24, points 3 and 4): any optax optimiser by
name, per phase; per-step schedules (warm-up, cosine) in the epoch loop; the composed optimiser
state of AdamW and SGD with momentum; Dropout's random streams (Linen and NNX), deterministic from
(seed, phase, step, sub-network); models without a ``train`` argument.

One tiny Algorithm-1 run (scikit-learn's 8x8 digits, K = 2, a Linen model with Dropout and no
``train`` argument, AdamW with warm-up + cosine for the SNets, SGD with Nesterov momentum and cosine
for GNet-T) is shared: a copy of it interrupted in the middle of an epoch (Ctrl-C) and resumed must
end bitwise equal to it.  The runs are as small as the checks allow (K = 2, 1-2 epochs of a few
batches) and the unit checks run few programs: the time is compilation."""

import dataclasses
import json
import math
import signal
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dcnn_dd as dd
from dcnn_dd.models import PlainCNN, divide_widths
from dcnn_dd.models import registry as model_registry
from dcnn_dd.train import config as config_mod
from dcnn_dd.train.optimizers import make_tx, register_optimizer
from dcnn_dd.train.schedules import Cosine, Piecewise, Warmup, WarmupCosine, schedule_from_json
from dcnn_dd.train.state import compose_opt_state, create_state, default_tx, params_plan, phase_rng, train_step
from dcnn_dd.tree import init_variables, leaves_by_path, path_str

QUIET = {"progress": False, "log": lambda *a, **k: None}


class DropNet(nn.Module):
    """A user's Linen module as the notebook writes one: ``__call__(x)`` without ``train`` and no
    ``num_classes`` (its own 10 outputs).  Its Dropout (after the hidden layer) is on when the
    engine gives it the stream (training) and off otherwise (evaluation, initialisation);
    ``streams`` records the input shapes it was traced with a stream for."""

    width: int = 8
    hidden: int = 16
    streams: ClassVar[set] = set()

    def subnet(self, K):  # noqa: N803
        return dataclasses.replace(self, width=divide_widths(self.width, K, "width"),
                                   hidden=divide_widths(self.hidden, K, "hidden"))

    @nn.compact
    def __call__(self, x):
        training = self.has_rng("dropout")
        if training:
            DropNet.streams.add(tuple(x.shape[1:3]))
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID")(x))  # valid padding: exact composition
        x = nn.relu(nn.Dense(self.hidden)(x.reshape((x.shape[0], -1))))
        return nn.Dense(10)(nn.Dropout(0.5, deterministic=not training)(x))


@pytest.fixture(scope="module")
def registry():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_registry, "MODELS", dict(model_registry.MODELS))
        config_mod.register_model("dropnet", DropNet)
        yield config_mod


def tiny_config(**kw):
    from dcnn_dd.train import Config

    base = dict(dataset="digits", train_size=128, test_size=32, model={"name": "dropnet"}, K=2,
                grid={"parts": [1, 2], "size": [8, 5]}, batch_size=32, eval_batch_size=32, snet_epochs=2,
                gnet_t_epochs=1, gnet_r_epochs=0, plateau_patience=None, strategy="sequential")
    return Config(**{**base, **kw})


RUN = dict(optimizer={"name": "adamw", "weight_decay": 1e-4},
           snet_lr={"name": "warmup_cosine", "base": 1e-2, "warmup_steps": 3, "end": 1e-4},
           gnet_t_optimizer={"name": "sgd", "momentum": 0.9, "nesterov": True},
           gnet_t_lr={"name": "cosine", "base": 1e-2})


@pytest.fixture(scope="module")
def run(registry, tmp_path_factory):
    from dcnn_dd.train import run_algorithm1

    run_dir = tmp_path_factory.mktemp("optim_run")
    config = tiny_config(**RUN)
    return config, run_dir, run_algorithm1(config, run_dir, **QUIET).summary


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ end to end
def test_adamw_warmup_cosine_and_dropout_train_through_algorithm_1(run):
    """A model without ``train`` (nor ``num_classes``) trains, its Dropout drawing from the
    engine's streams in the SNets' steps (8x5 sub-images) and GNet-T's (8x8 images); the run
    records the optimisers as given, and the SNets' epoch records hold each epoch's first per-step
    rate (warm-up from 0 over 3 steps, then cosine to 1e-4 over the 8 steps of 2 epochs of 4
    batches)."""
    from dcnn_dd.train import build_setup

    config, run_dir, s = run
    on_disk = json.loads((run_dir / "config.json").read_text())["config"]
    assert on_disk["optimizer"] == RUN["optimizer"] and on_disk["gnet_t_optimizer"] == RUN["gnet_t_optimizer"]
    assert on_disk["snet_optimizer"] is None and on_disk["snet_lr"] == RUN["snet_lr"]
    assert DropNet.streams >= {(8, 5), (8, 8)}
    assert s["theorem_2_1_max_abs_diff"] < 1e-4  # Dropout is the identity at evaluation: exact composition
    for k in ("gnet_t_init_acc", "gnet_t_trained_acc"):
        assert 0.0 <= s[k] <= 1.0
    snets = [r for r in _records(run_dir) if r.get("phase") == "snets"]
    sched = WarmupCosine(1e-2, 3, end=1e-4)
    assert [r["lr"] for r in snets] == [[sched.rate(0, 8)] * 2, [sched.rate(4, 8)] * 2] and snets[0]["lr"][0] == 0.0
    setup = build_setup(config, plan=False)  # the optimiser of each phase
    params = {"w": jnp.zeros(3)}
    assert isinstance(setup.tx_for("gnet_t").init(params).inner_state[0], optax.TraceState)
    assert setup.tx_for("snets") is setup.tx_for("gnet_r") is setup.tx
    assert len(setup.tx.init(params).inner_state) == 3  # adamw: scale_by_adam, add_decayed_weights, the rate


def test_run_interrupted_mid_epoch_resumes_bitwise(run, tmp_path, monkeypatch):
    """The run cut after the SNets' first epoch and interrupted by Ctrl-C after the third step of
    the second: the resumed run (per-step rates, AdamW's state and the Dropout streams restored)
    ends with every phase's parameters bitwise equal to the uninterrupted run's."""
    from dcnn_dd.data import pipeline
    from dcnn_dd.train import Interrupted, run_algorithm1
    from tests.runs import checkpoints, cut_in_last_snet_epoch, final_params

    config, run_dir, s = run
    cut = tmp_path / "cut"
    steps = cut_in_last_snet_epoch(run_dir, cut)
    batches, fired = pipeline.batches, []

    def interrupting(*a, **kw):  # Ctrl-C while the third batch of the SNets' second epoch trains
        inner = batches(*a, **kw)
        try:
            for i, b in enumerate(inner):
                if not fired and i == 2:
                    fired.append(kw["epoch"])
                    signal.raise_signal(signal.SIGINT)
                yield b
        finally:
            getattr(inner, "close", lambda: None)()

    monkeypatch.setattr(pipeline, "batches", interrupting)
    with pytest.raises(Interrupted, match="snets, epoch 2, step 3"):
        run_algorithm1(config, cut, **QUIET)
    assert fired == [1]
    again = run_algorithm1(config, cut, **QUIET).summary
    for phase in ("snets", "gnet_t"):
        a, b = final_params(run_dir, phase), final_params(cut, phase)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{phase}{k}")
    for k in ("snet_acc", "gnet_t_init_acc", "theorem_2_1_max_abs_diff", "gnet_t_trained_acc"):
        assert again[k] == s[k], k
    lrs = [(r["phase"], r.get("lr")) for r in _records(run_dir)]
    assert [(r["phase"], r.get("lr")) for r in _records(cut)] == lrs  # the resumed epoch keeps its first rate


# ------------------------------------------------------------------ Dropout's random streams
class DenseDrop(nn.Module):
    """The smallest Dropout model (fast to compile): dense, Dropout, dense."""

    hidden: int = 16

    def subnet(self, K):  # noqa: N803
        return dataclasses.replace(self, hidden=self.hidden // K)

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Dense(self.hidden)(x.reshape((x.shape[0], -1))))
        return nn.Dense(10)(nn.Dropout(0.5, deterministic=not train)(x))


def test_dropout_streams_differ_per_sub_network_and_repeat_per_key():
    """K = 2 identical sub-networks on identical sub-images (one origin twice): one step with the
    stream key draws different masks for the two (so their weights part) under every strategy, and
    the same masks for the same key."""
    from dcnn_dd import sharding
    from dcnn_dd.train.steps import stacked_train_step

    grid = dd.Grid.from_origins((8, 8), [[0, 0], [0, 0]], 5)
    images = np.random.default_rng(1).uniform(size=(8, 8, 8, 1)).astype(np.float32)  # numpy: nothing to compile
    labels, ids, lrs = np.arange(8) % 10, np.arange(8), np.full((2,), 1e-2, np.float32)
    sub, tx = DenseDrop(16).subnet(2), default_tx()
    two = jax.jit(lambda k: jax.tree.map(lambda a: jnp.stack([a, a]), create_state(  # two identical networks
        init_variables(sub, k, (1, 5, 5, 1)), tx)))
    for strategy in ("sequential", "vmap", "shard_map"):
        step = stacked_train_step(sub, tx, grid, strategy, mesh=sharding.subnet_mesh(2, 1))
        w = [np.asarray(step(two(jax.random.PRNGKey(0)), images, labels, ids, np.int32(0), lrs,
                             phase_rng(0, "snets"))[0].params["Dense_1"]["kernel"]) for _ in range(2)]
        np.testing.assert_array_equal(w[0], w[1])  # the same key, the same masks
        assert not np.array_equal(w[0][0], w[0][1]), strategy  # sub-networks 0 and 1: different masks


def test_streams_leave_models_without_dropout_bitwise_unchanged():
    """The stream key passed to a model that draws nothing changes no number (here with BatchNorm
    statistics; the engine's float32 path is checked bitwise against the tiny quickstart's record)."""

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x))
            return nn.Dense(3)(nn.relu(x))

    model, tx = Net(), default_tx()
    x, y = np.linspace(-2, 2, 80, dtype=np.float32).reshape(16, 5), np.arange(16) % 3

    @jax.jit
    def step(rng=None):
        state = create_state(init_variables(model, jax.random.PRNGKey(0), (1, 5)), tx)
        return state, train_step(model, tx, state, x, y, 1e-2, rng)[0]

    (state, a), (_, b) = step(), step(phase_rng(3, "gnet_r"))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert not np.array_equal(np.asarray(a.params["Dense_0"]["kernel"]), np.asarray(state.params["Dense_0"]["kernel"]))


def test_nnx_dropout_model_trains(tmp_path):
    """An NNX module with ``nnx.Dropout(rngs=...)`` (refused before): its streams are drawn from the
    step's key (the same key, the same output; another key, another), evaluation is deterministic,
    and a short Algorithm-1 run trains it with an exact composition."""
    from flax import nnx

    from dcnn_dd.train import run_algorithm1

    class NNXDrop(nnx.Module):
        def __init__(self, width=8, *, num_classes=10, input_shape, rngs):
            h, w, c = input_shape
            self.width, self.num_classes = width, num_classes
            self.conv = nnx.Conv(c, width, (3, 3), padding="VALID", rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)
            self.head = nnx.Linear((h - 2) * (w - 2) * width, num_classes, rngs=rngs)

        def subnet(self, K, *, input_shape, rngs):  # noqa: N803
            return NNXDrop(divide_widths(self.width, K, "width"), num_classes=self.num_classes,
                           input_shape=input_shape, rngs=rngs)

        def __call__(self, x):
            x = self.drop(nnx.relu(self.conv(x)))
            return self.head(x.reshape(x.shape[0], -1))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_registry, "MODELS", dict(model_registry.MODELS))
        config_mod.register_model("nnx_drop", NNXDrop)
        config = tiny_config(model={"name": "nnx_drop"}, train_size=32, snet_epochs=1, gnet_t_epochs=0)
        s = run_algorithm1(config, tmp_path / "run", **QUIET).summary
        model = config_mod.build_model({"name": "nnx_drop"}, 10)
        x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 1))
        v = model.init(jax.random.PRNGKey(0), x)
        assert set(v) == {"params"}  # the streams are not variables

        @jax.jit
        def outputs(v, k1, k2):
            train = [model.apply(v, x, train=True, rngs={"dropout": k}) for k in (k1, k1, k2)]
            return train, model.apply(v, x), model.apply(v, x, rngs={"dropout": k2})

        (y1, y1_again, y2), y_eval, y_eval_rng = outputs(v, phase_rng(0, "a"), phase_rng(0, "b"))
    np.testing.assert_array_equal(y1, y1_again)
    assert not np.allclose(y1, y2)
    np.testing.assert_array_equal(y_eval, y_eval_rng)
    assert s["theorem_2_1_max_abs_diff"] < 1e-4 and 0.0 <= s["gnet_t_trained_acc"] <= 1.0


# ------------------------------------------------------------------ optimisers
def test_make_tx_adam_is_the_default_optimiser_bitwise():
    """``make_tx("adam")`` is today's Adam with only the rate injected: the same state and, step for
    step, the same updates as ``inject_hyperparams(optax.adam, static_args=(b1, b2, eps,
    eps_root))``, the optimiser every earlier run trained with (tests/test_state.py pins it to
    Adam's arithmetic through the training step)."""
    from dcnn_dd.train.state import with_learning_rate

    old = optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps", "eps_root"))(learning_rate=0.0)
    params = {"b": jnp.ones(3), "w": jnp.linspace(-1, 1, 12).reshape(3, 4)}
    txs = (make_tx("adam"), make_tx({"name": "adam"}), default_tx(), old)
    states = [tx.init(params) for tx in txs]
    assert len({jax.tree.structure(st) for st in states}) == 1
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1.7)), params)
        out = [tx.update(grads, with_learning_rate(st, 1e-3), params) for tx, st in zip(txs, states)]
        states = [st for _, st in out]
        for u, _ in out[:-1]:
            for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(out[-1][0])):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_optimizers_by_name_and_registered():
    tx = make_tx({"name": "sgd", "momentum": 0.9, "nesterov": True})
    state = tx.init({"w": jnp.ones(3)})
    assert isinstance(state.inner_state[0], optax.TraceState) and "learning_rate" in state.hyperparams
    make_tx({"name": "lion", "b1": 0.95})  # any optax optimiser with a learning_rate

    def clipped_sgd(learning_rate, clip=1.0):
        return optax.chain(optax.clip_by_global_norm(clip), optax.sgd(learning_rate))

    with pytest.MonkeyPatch.context() as mp:
        from dcnn_dd.train import optimizers

        mp.setattr(optimizers, "OPTIMIZERS", {})
        register_optimizer("clipped_sgd", clipped_sgd)
        register_optimizer("clipped_sgd", clipped_sgd)  # the same function again is fine
        assert "learning_rate" in make_tx({"name": "clipped_sgd", "clip": 0.5}).init({"w": jnp.ones(2)}).hyperparams
        tiny_config(model={"name": "plain", "features": [4, 4]}, optimizer="clipped_sgd")
        with pytest.raises(ValueError, match="optax.adam; choose another name"):
            register_optimizer("adam", clipped_sgd)
        with pytest.raises(TypeError, match="no learning_rate"):
            register_optimizer("bad", lambda lr: optax.sgd(lr))


@pytest.mark.parametrize("kw, match", [
    (dict(optimizer="adamx"), r"^optimizer: unknown optimiser 'adamx' \(did you mean 'adamax', 'adam'"),
    (dict(snet_optimizer={"name": "sgd", "momentun": 0.9}),
     r"^snet_optimizer=.*sgd has no argument 'momentun'; its arguments are momentum, nesterov"),
    (dict(gnet_t_optimizer={"name": "adamw", "weight_decay": "lots"}), r"^gnet_t_optimizer=.*adamw cannot run"),
    (dict(optimizer={"name": "adam", "learning_rate": 1e-3}), "the learning rate is the phase's schedule"),
    (dict(gnet_r_optimizer=["adam"]), r"^gnet_r_optimizer=\['adam'\]: give an optimiser name"),
    (dict(snet_lr={"name": "cosnie", "base": 1e-3}), r"^snet_lr: .*unknown name 'cosnie' \(did you mean 'cosine'"),
    (dict(gnet_t_lr={"name": "warmup", "base": 1e-3}), r"gnet_t_lr: .*missing \['warmup_steps'\]"),
    (dict(gnet_r_lr={"name": "cosine", "base": 1e-3, "steps": 9}), r"gnet_r_lr: .*unknown key\(s\) \['steps'\]"),
    (dict(optimizer="adafactor", compose_opt_state=True), r"^compose_opt_state: the 'adafactor' optimiser state "
     r"leaf 'inner_state/0/v_row/b' .*set compose_opt_state=False"),
    (dict(snet_optimizer="sgd", compose_opt_state=True), r"SNets \('sgd'\) and GNet-T \('adam'\) use different"),
    (dict(extra_epochs=2, gnet_t_lr={"name": "cosine", "base": 1e-3}), r"^extra_epochs=2 with gnet_t_lr=.*end rate, 0"),
])
def test_bad_optimisers_and_schedules_are_one_line_errors_before_a_run(kw, match, tmp_path):
    from dcnn_dd.train import run_algorithm1

    with pytest.raises(ValueError, match=match) as e:
        run_algorithm1(tiny_config(model={"name": "plain", "features": [4, 4]}, **kw), tmp_path / "run", **QUIET)
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()


# ------------------------------------------------------------------ schedules
def test_per_step_schedules():
    w = schedule_from_json({"name": "warmup", "base": 1e-3, "warmup_steps": 4})
    assert w == Warmup(1e-3, 4) and w.per_step and not Piecewise(1e-3).per_step
    assert [w.rate(t, 100) for t in range(6)] == pytest.approx([0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    want = optax.linear_schedule(0.0, 1e-3, 4)  # the notebook's warm-up
    assert [w.rate(t, 100) for t in range(6)] == pytest.approx([float(want(t)) for t in range(6)])
    c = schedule_from_json({"name": "cosine", "base": 1e-2, "end": 1e-4})
    assert c.rate(0, 10) == 1e-2 and c.rate(10, 10) == c.rate(15, 10) == 1e-4  # the end, and kept after
    assert c.rate(5, 10) == pytest.approx((1e-2 + 1e-4) / 2)
    wc = schedule_from_json({"name": "warmup_cosine", "base": 1e-2, "warmup_steps": 2})
    ref = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10, 0.0)
    assert [wc.rate(t, 10) for t in range(12)] == pytest.approx([float(ref(t)) for t in range(12)], abs=1e-9)
    for s in (w, c, wc):
        assert schedule_from_json(s.to_json()) == s
    assert schedule_from_json(1e-3) == Piecewise(1e-3)  # today's forms, unchanged
    assert schedule_from_json({"base": 1e-3, "milestones": [[2, 0.1]]}) == Piecewise(1e-3, ((2, 0.1),))
    assert isinstance(Cosine(1.0), Cosine)


def test_per_step_rates_in_the_loop_across_epochs_and_a_mid_epoch_resume(tmp_path):
    """The loop gives a per-step schedule the phase's step (epoch * steps + s of epochs * steps),
    times the plateau scale; a phase interrupted mid-epoch resumes with the same rates, and the
    epoch records' ``lr`` is each epoch's first rate."""
    from dcnn_dd.train.checkpoint import RunDir
    from dcnn_dd.train.loop import Interrupted, Phase, TrainData, run_phase
    from tests.test_loop import toy_source

    schedule = WarmupCosine(1e-2, 3, end=1e-3)
    state = create_state({"params": {"w": np.zeros(3, np.float32)}}, default_tx())

    def rates_of(store, interrupt_at=None):
        seen = []

        def step(st, images, labels, ids, epoch, lr):  # records its rate (no computation: nothing to compile)
            seen.append(float(lr))
            if len(seen) == interrupt_at:
                signal.raise_signal(signal.SIGINT)
            return st.replace(step=st.step + 1), {"loss": np.float32(1.0), "accuracy": np.float32(0.0)}

        phase = Phase("gnet_r", 3, schedule, step, lambda st: [0.5])
        data = TrainData(toy_source(), 16, seed=0)  # 64 samples: 4 steps per epoch
        try:
            _, hist = run_phase(phase, state, store, data, progress=False)
        except Interrupted:
            _, hist = run_phase(phase, state, store, data, progress=False)
        return seen, [r["lr"] for r in hist]

    full, lrs = rates_of(RunDir(tmp_path / "a", {}).phase("gnet_r"))
    want = [np.float32(schedule.rate(t, 12)) for t in range(12)]  # 3 epochs of 4 steps
    assert full == want and lrs == [schedule.rate(t, 12) for t in (0, 4, 8)]
    resumed, lrs2 = rates_of(RunDir(tmp_path / "b", {}).phase("gnet_r"), interrupt_at=6)  # epoch 2, step 2
    assert resumed == full and lrs2 == lrs
    assert not math.isclose(full[4], full[5])


# ------------------------------------------------------------------ the composed optimiser state
@pytest.fixture(scope="module")
def composition():
    """K = 4 sub-networks of a valid-padding CNN, their stacked parameters, the plan and the
    composed global parameters."""
    grid = dd.Grid.uniform((12, 12), 2, size=8)
    net = PlainCNN(features=(4, 4), pool_after=(), fc=(8,), num_classes=5)
    sub = net.subnet(4)
    plan = dd.plan_for(net, sub, grid, input_shape=(1, 12, 12, 1), verify=False)  # the rules (checked elsewhere)
    params = jax.jit(jax.vmap(lambda k: init_variables(sub, k, (1, 8, 8, 1))["params"]))(
        jax.random.split(jax.random.PRNGKey(3), 4))
    return plan, params, dd.compose(plan, {"params": params})["params"]  # eagerly: as the tests compose


@pytest.mark.parametrize("spec, parts", [({"name": "adamw", "weight_decay": 1e-2}, ("mu", "nu")),
                                         ({"name": "sgd", "momentum": 0.9}, ("trace",))])
def test_composed_moments_follow_the_block_rules(composition, spec, parts):
    """AdamW's moments and SGD's momentum trace compose by the plan's rules, (2.11)-(2.14): the
    diagonal blocks are the sub-networks' own, zeros elsewhere, the output bias's summed; the step
    counts and the rate come from sub-network 0; the result has the global optimiser's structure.
    A state with other parts (adafactor's factored moments) is refused, naming the leaf."""
    plan, params, gparams = composition
    tx = make_tx(spec)
    rng = np.random.default_rng(5)

    def fill(path, a):  # the K states: random moments, the rate 1e-2, sub-network k's counts k + 7
        if a.ndim > 1:
            return rng.standard_normal(a.shape).astype(a.dtype)
        return np.full(a.shape, 1e-2, a.dtype) if "learning_rate" in path_str(path) else (np.arange(4) + 7).astype(a.dtype)

    stacked = jax.tree_util.tree_map_with_path(fill, jax.eval_shape(jax.vmap(tx.init), params))
    composed = compose_opt_state(plan, stacked, gparams)
    assert jax.tree.structure(composed) == jax.tree.structure(stacked)
    glob = jax.eval_shape(tx.init, gparams)
    assert [a.shape for a in jax.tree.leaves(composed)] == [a.shape for a in jax.tree.leaves(glob)]
    assert float(composed.hyperparams["learning_rate"]) == np.float32(1e-2) and int(composed.count) == 7
    for name in parts:
        g, subs = getattr(composed.inner_state[0], name), getattr(stacked.inner_state[0], name)
        got = leaves_by_path(g)
        want = leaves_by_path(dd.compose(plan, {"params": subs})["params"])  # by the parameters' rules
        assert got.keys() == want.keys() and len(got) == len(plan.rules)
        for k in got:
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)
        subs = leaves_by_path(subs)
        kern = np.asarray(got["Conv_1/kernel"])  # block-diagonal: the sub-networks' values, zeros elsewhere
        assert np.count_nonzero(kern) == subs["Conv_1/kernel"].size < kern.size
        bias = next(k for k in got if got[k].shape == (5,))  # the output bias (2.14): summed
        np.testing.assert_allclose(np.asarray(got[bias]), np.asarray(subs[bias]).sum(0), rtol=1e-6)
    adafactor = make_tx("adafactor")
    with pytest.raises(ValueError, match=r"^compose_opt_state: the sub-networks' optimiser state leaf '.*v_row.*"
                                         "set compose_opt_state=False"):
        jax.eval_shape(lambda p: compose_opt_state(plan, jax.vmap(adafactor.init)(p), gparams), params)
