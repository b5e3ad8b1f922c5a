"""Tasks (issue 24, point 2): regression, multi-label and a user's own loss through the engine.

One tiny regression run (8x8 random images, targets a smooth function of them, the theorem-exact
``plain`` network with a flatten head, K = 4) is shared: its composed network must be the MEAN of
the sub-networks (Theorem 2.1 for (2.22)), ``val_loss`` (lower is better) must drive the plateau
rule, GNet-T's stopping rule and the time-to-target, and a run cut after the sub-networks' first
epoch must resume to the same records.  A multi-label run, a registered Huber loss, the plateau
rule in ``min`` mode, and the one-line errors for bad names and for targets that do not fit the
task complete it."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dcnn_dd.data import from_arrays, sources
from dcnn_dd.train import REGRESSION, Config, get_task, register_task, tasks
from dcnn_dd.train.schedules import Plateau

QUIET = {"progress": False, "log": lambda *a, **k: None}
TINY = {"model": {"name": "plain", "features": [8, 8], "pool_after": [], "fc": []}, "K": 4,
        "grid": {"parts": 2, "size": 6}, "batch_size": 32, "eval_batch_size": 64, "strategy": "vmap"}


class Toy:
    """A source as the engine reads one (len, take, image_shape, num_classes, target_shape, name,
    subset): uint8 images, and int labels, float targets or 0/1 vectors."""

    pixel_scale = 255.0

    def __init__(self, images, targets, num_classes=None, name="toy"):
        self.images, self.targets, self.num_classes, self.name = images, targets, num_classes, name
        self.target_shape = tuple(targets.shape[1:])

    def fingerprint(self):
        return "toy"

    def __len__(self):
        return len(self.images)

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    def take(self, indices):
        idx = np.asarray(indices)
        return self.images[idx], self.targets[idx]

    def subset(self, n):
        return Toy(self.images[:n], self.targets[:n], self.num_classes, self.name)


def toy_images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)


def regression_targets(images):
    """Two smooth functions of the image: the mean brightness of its top and of its left half."""
    x = images[..., 0].astype(np.float32) / 255.0
    return np.stack([x[:, :4].mean((1, 2)), x[:, :, :4].mean((1, 2))], -1).astype(np.float32)


def multilabel_targets(images):
    """Three 0/1 labels: top brighter than bottom, left than right, centre brighter than 0.5."""
    x = images[..., 0].astype(np.float32) / 255.0
    return np.stack([x[:, :4].mean((1, 2)) > x[:, 4:].mean((1, 2)), x[:, :, :4].mean((1, 2)) > x[:, :, 4:].mean((1, 2)),
                     x[:, 2:6, 2:6].mean((1, 2)) > 0.5], -1).astype(np.float32)


def toy_sources():
    tr, te = toy_images(128, 0), toy_images(64, 1)
    return {
        "toy_regression": {"train": from_arrays(tr, regression_targets(tr), name="toy"), "test": from_arrays(te, regression_targets(te), name="toy")},
        "toy_multilabel": {"train": from_arrays(tr, multilabel_targets(tr), num_classes=3, name="toy"),
                           "test": from_arrays(te, multilabel_targets(te), num_classes=3, name="toy")},
        "toy_int_targets": {"train": Toy(tr, (tr[:, 0, 0, 0] % 3).astype(np.int32), 3),
                            "test": Toy(te, (te[:, 0, 0, 0] % 3).astype(np.int32), 3)},
    }


@pytest.fixture(scope="module")
def toy_data():
    """``sources.load`` also knows the toy datasets (the engine loads by name)."""
    data, load = toy_sources(), sources.load
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sources, "load",
                   lambda name, split, **kw: data[name][split] if name in data else load(name, split, **kw))
        yield data


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if not k.endswith("_s") and k not in ("measured_s_per_step",
                                                                                        "payoff_ratio")}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _records(run_dir):
    return [_strip(json.loads(line)) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def regression_run(toy_data, tmp_path_factory):
    from dcnn_dd.train import build_setup, run_algorithm1

    config = Config(dataset="toy_regression", task="regression", snet_epochs=2, gnet_t_epochs=1, gnet_r_epochs=1,
                    extra_epochs=3, plateau_patience=1, snet_lr=3e-3, gnet_r_lr=3e-3, gnet_t_lr=1e-3, **TINY)
    setup = build_setup(config)
    run_dir = tmp_path_factory.mktemp("regression")
    return config, setup, run_dir, run_algorithm1(config, run_dir, setup=setup, **QUIET).summary


def _histories(run_dir):
    out: dict = {}
    for r in (json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()):
        out.setdefault(r.get("phase"), []).append(r)
    return out


def test_regression_composes_to_the_mean_and_val_loss_drives_the_run(regression_run):
    from dcnn_dd.composition import compose
    from dcnn_dd.grid import decompose_input
    from dcnn_dd.train.checkpoint import load_variables
    from dcnn_dd.tree import unstack

    config, setup, run_dir, s = regression_run
    assert (s["task"], s["monitor"], s["monitor_mode"]) == ("regression", "val_loss", "min")
    assert s["snet_acc"] is None and s["gnet_t_trained_acc"] is None and s["theorem_2_2"] is None
    assert set(s["gnet_t_trained"]) == {"val_mse", "val_mae", "val_loss"} == set(s["gnet_r_trained"])
    assert s["gnet_t_trained"]["val_loss"] == pytest.approx(s["gnet_t_trained"]["val_mse"], rel=1e-5)
    assert len(s["snets_trained"]["val_loss"]) == 4
    assert setup.model.num_classes == 2  # the output width: prod(target_shape)
    assert any("(2.22) mean" in r.note for r in setup.plan.rules.values())

    # Theorem 2.1 for (2.22): the composed network's outputs are the MEAN of the sub-networks'
    h = _histories(run_dir)
    comp = h["compose"][0]
    assert comp["head"] == "mean" and comp["theorem_2_1_max_abs_diff"] <= 1e-5 * max(1.0, comp["logit_scale"])
    snets = jax.device_get(load_variables(run_dir, "snets"))
    composed = jax.jit(lambda v: compose(setup.plan, v))(snets)
    images, _ = setup.test_source.take(np.arange(16))
    x = setup.prep(jnp.asarray(images), jnp.arange(16), 0, False)
    g = np.asarray(jax.jit(setup.model.apply)(composed, x))
    xs, sub_apply = decompose_input(x, setup.grid), jax.jit(setup.sub.apply)
    subs = np.stack([np.asarray(sub_apply(v, xs[k])) for k, v in enumerate(unstack(snets, 4))])
    np.testing.assert_allclose(g, subs.mean(0), atol=1e-5)
    assert np.abs(g - subs.sum(0)).max() > 0.1  # not the sum: the head is averaged

    # the records: the task's metrics, no accuracies
    for r in h["gnet_r"] + h["gnet_t"] + h["snets"]:
        assert {"val_loss", "val_mse", "val_mae", "train_loss"} <= set(r) and not {"val_acc", "train_acc"} & set(r)

    # val_loss drives the plateau rule (patience 1, min: a rate is divided by sqrt(10) after each
    # epoch whose loss is not strictly below the best so far), replayed from the records
    for phase, base in (("gnet_r", 3e-3), ("snets", 3e-3), ("gnet_t", 1e-3)):
        recs = h[phase]
        n = len(np.atleast_1d(recs[0]["val_loss"]))
        best, scale = [math.inf] * n, [1.0] * n
        for r in recs:
            np.testing.assert_allclose(np.atleast_1d(r["lr"]), [base * sc for sc in scale], rtol=1e-6, err_msg=phase)
            for k, v in enumerate(np.atleast_1d(r["val_loss"])):
                if v < best[k]:
                    best[k] = v
                else:
                    scale[k] *= 10 ** -0.5

    # GNet-T's stopping rule and the time-to-target: GNet-R's final val_loss, reached at or below it
    target = h["gnet_r"][-1]["val_loss"]
    hits = [r["val_loss"] <= target for r in h["gnet_t"]]
    n = config.gnet_t_epochs
    while n < config.gnet_t_epochs + config.extra_epochs and not any(hits[:n]):
        n += 1
    assert len(h["gnet_t"]) == n == s["epochs"]["gnet_t_run"]
    assert n < config.gnet_t_epochs + config.extra_epochs  # here the rule stopped it (val_loss fell below the target)
    assert s["gnet_r_first_hit_s"] == next(r["elapsed_s"] for r in h["gnet_r"] if r["val_loss"] <= target)
    pipeline = (s["time_strategy_s"] + h["snets"][-1]["elapsed_s"] + comp["compose_s"] + comp["eval_s"]
                + h["gnet_t"][-1]["elapsed_s"])
    assert s["time_to_gnet_r_acc_s"] == pytest.approx(pipeline)


def test_regression_run_cut_after_the_first_snet_epoch_resumes_to_the_same_records(regression_run, tmp_path):
    from dcnn_dd.train import run_algorithm1
    from tests.runs import checkpoints, cut_in_last_snet_epoch

    config, setup, run_dir, s = regression_run
    cut = tmp_path / "cut"
    steps = cut_in_last_snet_epoch(run_dir, cut)
    again = run_algorithm1(config, cut, setup=setup, **QUIET).summary
    assert checkpoints(cut, "snets") == steps
    assert _records(cut) == _records(run_dir)
    assert _strip(again) == _strip(s)


@pytest.fixture
def huber_task():
    def huber(outputs, targets):
        return optax.huber_loss(outputs, targets.reshape(outputs.shape), delta=0.1).mean(-1)

    task = dataclasses.replace(REGRESSION, name="huber", loss=huber)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tasks, "TASKS", dict(tasks.TASKS))
        register_task("huber", task)
        yield get_task("huber"), huber


def test_multilabel_run_and_a_registered_huber_loss(toy_data, huber_task, tmp_path):
    """Multi-label: sigmoid cross-entropy, the logits of the composed network the sum of the
    sub-networks' (2.16), monitored here by the per-label accuracy (max).  A user's Huber loss,
    registered by name, is the loss the steps minimise and evaluate."""
    from dcnn_dd.train import build_setup, run_algorithm1
    from dcnn_dd.train.state import create_state, default_tx, eval_step, train_step

    config = Config(dataset="toy_multilabel", task="multilabel", monitor="val_label_acc", snet_epochs=1,
                    gnet_t_epochs=1, gnet_r_epochs=1, snet_lr=3e-3, gnet_r_lr=3e-3, **TINY)
    s = run_algorithm1(config, tmp_path / "multilabel", **QUIET).summary
    assert (s["monitor"], s["monitor_mode"]) == ("val_label_acc", "max") and s["theorem_2_2"] is None
    h = _histories(tmp_path / "multilabel")
    comp = h["compose"][0]
    assert comp["head"] == "sum" and comp["theorem_2_1_max_abs_diff"] <= 1e-5 * max(1.0, comp["logit_scale"])
    for r in h["gnet_r"] + h["gnet_t"]:
        assert {"val_label_acc", "val_exact", "val_loss", "train_acc"} <= set(r)
        assert 0.0 <= r["val_exact"] <= r["val_label_acc"] <= 1.0
    assert set(s["gnet_t_trained"]) == {"val_label_acc", "val_exact", "val_loss"}

    # the registered Huber loss: its own name, auto monitor val_loss (min), the head of REGRESSION
    task, huber = huber_task
    c = Config(dataset="toy_regression", task="huber", **TINY)
    assert task.name == "huber" and tasks.monitor_of(c) == ("val_loss", "min")
    setup = build_setup(c, plan=False)
    assert setup.task is task and setup.model.num_classes == 2
    images, targets = setup.train_source.take(np.arange(32))
    x = setup.prep(jnp.asarray(images), jnp.arange(32), 0, False)
    state = create_state(setup.global_init(jax.random.PRNGKey(0)), default_tx())
    outputs = np.asarray(jax.jit(setup.model.apply)(state.variables, x))
    _, m = jax.jit(lambda st, y: train_step(setup.model, default_tx(), st, x, y, 1e-3, task=task))(state, targets)
    assert set(m) == {"loss"}  # no train metric: no train_acc
    np.testing.assert_allclose(m["loss"], np.mean(huber(outputs, targets)), rtol=1e-6)
    sums, _ = jax.jit(lambda v, y: eval_step(setup.model, v, x, y, jnp.ones(32, bool), task))(state.variables, targets)
    assert set(sums) == {"mse", "mae", "loss", "count"}
    np.testing.assert_allclose(sums["loss"], np.sum(huber(outputs, targets)), rtol=1e-5)
    np.testing.assert_allclose(sums["mse"], np.sum(np.mean((np.asarray(outputs) - targets) ** 2, -1)), rtol=1e-5)


def test_bad_task_and_monitor_names_are_one_line_errors_before_any_run_dir(toy_data, tmp_path):
    from dcnn_dd.cnn_dnn import CNNDNNConfig, run_cnn_dnn
    from dcnn_dd.train import run_algorithm1

    cases = [({"task": "regresion"},
              r"task='regresion': choose one of \['classification', 'multilabel', 'regression'\]"),
             ({"task": "regression", "monitor": "val_acc"},
              r"monitor='val_acc': the task 'regression' records \['val_mse', 'val_mae', 'val_loss'\]"),
             ({"monitor": "val_top1"},
              r"monitor='val_top1': the task 'classification' records \['val_acc', 'val_top5', 'val_loss'\]"),
             ({"monitor_mode": "lower"}, r"monitor_mode='lower': choose 'max'")]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg) as e:
            Config(**kw)
        assert "\n" not in str(e.value)
        with pytest.raises(ValueError, match=msg):
            Config.from_json({**Config().to_json(), **kw})
    # targets that do not fit the task: refused by build_setup, before the run directory is made
    for dataset, task, msg in [("toy_int_targets", "regression", "has integer \\(int32\\) targets: this task needs "
                                                                 "float targets"),
                               ("toy_regression", "classification", "has targets of shape \\(2,\\): this task needs "
                                                                    "one integer class label"),
                               ("toy_regression", "multilabel", "has targets other than 0 and 1")]:
        with pytest.raises(ValueError, match=f"task='{task}': the training data 'toy' {msg}") as e:
            run_algorithm1(Config(dataset=dataset, task=task, **TINY), tmp_path / "run", **QUIET)
        assert "\n" not in str(e.value) and not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="the CNN-DNN .* trains task='classification' only"):
        run_cnn_dnn(Config(dataset="toy_regression", task="regression", **TINY), CNNDNNConfig(), tmp_path / "run",
                    **QUIET)
    assert not (tmp_path / "run").exists()
    # a model whose output width is not the task's (its spec's num_classes wins over the data's): refused up front
    wide = {**TINY, "model": {**TINY["model"], "num_classes": 5}}
    with pytest.raises(ValueError, match=r"gives outputs of shape \(1, 5\) per batch, the task 'regression' on these "
                                         r"data needs \(batch, 2\)") as e:
        run_algorithm1(Config(dataset="toy_regression", task="regression", **wide), tmp_path / "run", **QUIET)
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"^val_fraction=0.25: the CNN-DNN validates on the test set"):  # not yet
        run_cnn_dnn(Config(dataset="toy_int_targets", val_fraction=0.25, **TINY), CNNDNNConfig(), tmp_path / "run",
                    **QUIET)
    assert not (tmp_path / "run").exists()


def test_task_checks_of_the_targets():
    data = toy_sources()
    get_task("multilabel").check(data["toy_multilabel"]["train"])
    get_task("classification").check(data["toy_int_targets"]["train"])
    images = toy_images(4, 2)
    with pytest.raises(ValueError, match=r"labels 0\.\.5, outside 0\.\.2 \(num_classes=3\)"):
        get_task("classification").check(Toy(images, np.array([0, 1, 5, 2], np.int32), 3))
    with pytest.raises(ValueError, match="has num_classes=None: this task needs the number of classes"):
        get_task("classification").check(Toy(images, np.array([0, 1, 1, 2], np.int32)))
    with pytest.raises(ValueError, match=r"has targets of shape \(\): this task needs 0/1 vectors"):
        get_task("multilabel").check(Toy(images, np.array([0, 1, 1, 0], np.float32)))
    with pytest.raises(ValueError, match="non-finite targets"):
        get_task("regression").check(Toy(images, np.array([0, np.nan, 1, 0], np.float32)))
    assert get_task("regression").output_width(Toy(images, np.zeros((4, 2, 3), np.float32))) == 6
    with pytest.raises(ValueError, match="already registered"):
        register_task("regression", dataclasses.replace(REGRESSION, head="sum"))
    register_task("regression", REGRESSION)  # the same record again is fine
    with pytest.raises(TypeError, match="give a dcnn_dd.train.Task"):
        register_task("mine", lambda o, t: o)
    with pytest.raises(ValueError, match="directions must give 'max' or 'min' for every metric"):
        dataclasses.replace(REGRESSION, directions={"mse": "min"})


def test_flatten_head_composes_to_the_mean_for_regression():
    """(2.13)+(2.22): an output layer right after the flatten is averaged (scale 1/K) under
    head='mean', as the logit-sum layer is; it was summed, so plan_for's check refused the plan."""
    from dcnn_dd.grid import Grid
    from dcnn_dd.models import PlainCNN
    from dcnn_dd.planning import plan_for

    model = PlainCNN(features=(4, 4), pool_after=(), fc=(), num_classes=3)
    plan = plan_for(model, model.subnet(4), Grid.uniform((8, 8), 2, size=6), input_shape=(1, 8, 8, 1), head="mean")
    assert plan.verification.head == "mean" and plan.verification.output_deviation < 1e-5
    assert plan.rules["params/Head/kernel"].scale == 0.25


def test_plateau_rule_with_mode_min():
    p = Plateau(patience=2, mode="min")
    assert p.best == math.inf
    p = p.update(0.5).update(0.4)
    assert (p.best, p.wait, p.scale) == (0.4, 0, 1.0)
    p = p.update(0.4)  # equal is no improvement
    assert p.wait == 1 and p.scale == 1.0
    p = p.update(0.45)  # higher is worse: the second epoch without improvement divides by sqrt(10)
    assert p.wait == 0 and p.scale == pytest.approx(10 ** -0.5)
    p = p.update(0.3)
    assert p.best == 0.3 and p.scale == pytest.approx(10 ** -0.5)
    assert Plateau.from_json(p.to_json()) == p
    assert Plateau.from_json(Plateau(mode="min").to_json()) == Plateau(mode="min")
    # a state saved before the modes (no "mode" key) is the max rule
    old = {"patience": 5, "factor": 10 ** -0.5, "best": None, "wait": 0, "scale": 1.0}
    assert Plateau.from_json(old) == Plateau() and Plateau.from_json(old).update(0.1).best == 0.1
    with pytest.raises(ValueError, match="plateau mode='up'"):
        Plateau(mode="up")


def test_docs_tasks_example_registers_a_huber_loss(monkeypatch, capsys):
    """docs/engine.md's own-loss example with `run_algorithm1` stubbed: the registered task is the
    Huber loss, monitored by val_mae (min), and its Config is valid."""
    import dcnn_dd.train as train
    from tests.docs_pages import run_stubbed, tasks_block

    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))
    import types

    result = types.SimpleNamespace(summary={"monitor": "val_mae", "monitor_mode": "min", "gnet_t_trained": {}})
    (config, run_dir), = run_stubbed(monkeypatch, train, "run_algorithm1", tasks_block(), result)
    assert run_dir == "results/huber" and tasks.monitor_of(config) == ("val_mae", "min")
    task = get_task("huber")
    assert task.head == "mean" and task.loss.__name__ == "huber"
    y = jnp.array([[0.0, 3.0]])
    np.testing.assert_allclose(task.loss(jnp.zeros((1, 2)), y), [(0.0 + 2.5) / 2])  # quadratic, then linear
    assert capsys.readouterr().out.startswith("val_mae min")


def test_summary_test_entries_carry_every_metric_of_the_task():
    """``test_results`` without a held-out split: every metric of the task, also for a network
    without epochs (from the compose record); a regression summary has no ``*_test_acc``."""
    from dcnn_dd.train.composed_training import test_results

    names = get_task("regression").names
    comp = {"snet_mse": [0.2, 0.3], "snet_mae": [0.4, 0.5], "snet_loss": [0.2, 0.3],
            "gnet_t_init_mse": 0.25, "gnet_t_init_mae": 0.45, "gnet_t_init_loss": 0.25}
    hist = {"compose": [comp], "snets": [{"val_mse": [0.1, 0.2], "val_mae": [0.3, 0.4], "val_loss": [0.1, 0.2]}],
            "gnet_t": []}
    out = test_results(hist, held_out=False, names=names)
    assert out["snet_test_mse"] == [0.1, 0.2] and out["gnet_t_test_mse"] == 0.25 and out["gnet_t_test_mae"] == 0.45
    assert out["gnet_r_test_mse"] is None and not any(k.endswith("_acc") for k in out)
