"""A Flax NNX model in the engine (issue 17, point 1): registered by name, it trains through
Algorithm 1 and the CNN-DNN with checkpoints and resume as a Linen model does
(:mod:`dcnn_dd.nnx_engine`).

One tiny run (Fashion-MNIST, 128 / 64 images, K = 4, an NNX CNN with BatchNorm) is shared: its
composition must satisfy Theorem 2.1 (BatchNorm in inference mode composes exactly), its K
sub-networks must start from K different initialisations, a re-run must resume bitwise, and the
CNN-DNN must train its phases on it."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dcnn_dd.models import divide_widths
from dcnn_dd.models import registry as registry_mod

QUIET = {"progress": False, "log": lambda *a, **k: None}


class NNXCNN(nnx.Module):
    """A user's NNX CNN: conv (valid padding), BatchNorm, max-pooling, flatten, linear head."""

    def __init__(self, width=8, *, num_classes=10, input_shape, rngs):
        h, w, c = input_shape
        self.width, self.num_classes = width, num_classes
        self.conv = nnx.Conv(c, width, (3, 3), padding="VALID", rngs=rngs)
        self.bn = nnx.BatchNorm(width, momentum=0.5, rngs=rngs)
        self.head = nnx.Linear((h - 2) // 2 * ((w - 2) // 2) * width, num_classes, rngs=rngs)

    def subnet(self, K, *, input_shape, rngs):  # noqa: N803
        return NNXCNN(divide_widths(self.width, K, "width"), num_classes=self.num_classes, input_shape=input_shape,
                      rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.bn(self.conv(x))), (2, 2), (2, 2))
        return self.head(x.reshape(x.shape[0], -1))


class NoSubnet(nnx.Module):
    def __init__(self, *, num_classes=10, input_shape, rngs):
        self.head = nnx.Linear(input_shape[-1], num_classes, rngs=rngs)

    def __call__(self, x):
        return self.head(x.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def registry():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry_mod, "MODELS", dict(registry_mod.MODELS))
        registry_mod.register_model("nnx_cnn", NNXCNN)
        yield registry_mod


def tiny_config(**kw):
    from dcnn_dd.train import Config

    base = dict(dataset="fashion_mnist_idx", train_size=128, test_size=64, model={"name": "nnx_cnn", "width": 8}, K=4,
                grid={"parts": 2, "size": 16}, batch_size=64, eval_batch_size=64, snet_epochs=2, gnet_t_epochs=1,
                gnet_r_epochs=1, plateau_patience=None, strategy="sequential")
    return Config(**{**base, **kw})


SUMMARY_KEYS = (  # the summary's results (not its times)
    "snet_acc", "gnet_t_init_acc", "theorem_2_1_max_abs_diff", "gnet_t_trained_acc", "gnet_r_trained_acc",
)


@pytest.fixture(scope="module")
def nnx_result(registry, tmp_path_factory):
    from dcnn_dd.train import run_algorithm1

    run_dir = tmp_path_factory.mktemp("nnx_run")
    config = tiny_config()
    return config, run_dir, run_algorithm1(config, run_dir, **QUIET)


@pytest.fixture(scope="module")
def nnx_run(nnx_result):
    config, run_dir, result = nnx_result
    return config, run_dir, result.summary


def _params(run_dir, phase):
    from tests.runs import final_params

    return final_params(run_dir, phase)


def test_nnx_model_trains_through_algorithm_1(nnx_run):
    from dcnn_dd.train.checkpoint import load_variables

    _, run_dir, s = nnx_run
    assert len(s["snet_acc"]) == 4 and all(0.0 <= a <= 1.0 for a in s["snet_acc"])
    for k in ("gnet_t_init_acc", "gnet_t_trained_acc", "gnet_r_trained_acc"):
        assert 0.0 <= s[k] <= 1.0, k
    # Theorem 2.1 on the test set: BatchNorm in inference mode composes exactly, float rounding only
    assert s["theorem_2_1_max_abs_diff"] < 1e-4, s["theorem_2_1_max_abs_diff"]
    # the checkpoints hold the module's own attribute paths, Linen's collections, K sub-networks stacked
    snets = load_variables(run_dir, "snets")
    assert snets["params"]["conv"]["kernel"].shape == (4, 3, 3, 1, 2)
    assert snets["params"]["head"]["kernel"].shape == (4, 7 * 7 * 2, 10)
    gnet_t = load_variables(run_dir, "gnet_t")
    assert gnet_t["params"]["conv"]["kernel"].shape == (3, 3, 1, 8)
    # the BatchNorm statistics were trained (train mode in the training step, mutable batch_stats)
    for v in (snets, gnet_t, load_variables(run_dir, "gnet_r")):
        assert float(np.abs(np.asarray(v["batch_stats"]["bn"]["var"]) - 1).max()) > 1e-3


def test_the_result_holds_the_trained_networks_and_load_trained_predicts_as_the_engine(nnx_result, tmp_path):
    """Results out (issue 24, point 5), on the shared run.  run_algorithm1 returns an
    Algorithm1Result: the summary of summary.json and the three networks' final variables, bitwise
    their last checkpoints.  load_trained rebuilds each network from the run directory alone
    (config.json, the checkpoint, preprocessing.json: no data); its predict on the raw (uint8)
    test images counts exactly the correct answers of the engine's last evaluation, as does the
    result's own trained(...).  The run leaves no lock, and releases it when it fails; a directory
    locked by another live process is refused before anything is written."""
    import json
    import subprocess
    import sys

    from dcnn_dd.data import load
    from dcnn_dd.train import Algorithm1Result, RunDirInUseError, load_trained, run_algorithm1
    from dcnn_dd.train.checkpoint import CheckpointError, ConfigMismatchError, load_variables, this_process

    config, run_dir, result = nnx_result
    assert isinstance(result, Algorithm1Result)
    assert json.loads(json.dumps(result.summary)) == json.loads((run_dir / "summary.json").read_text())
    for name in ("gnet_t", "gnet_r", "snets"):
        mine, saved = getattr(result, name), load_variables(run_dir, name)
        assert jax.tree.structure(mine) == jax.tree.structure(saved), name
        assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(jax.tree.leaves(mine),
                                                                              jax.tree.leaves(saved))), name
    assert [r["phase"] for r in result.histories["snets"]] == ["snets"] * config.snet_epochs
    assert not (run_dir / "run.lock").exists()

    test = load(config.dataset, "test").subset(config.test_size)
    images, labels = test.take(np.arange(len(test)))
    assert images.dtype == np.uint8
    last = {name: result.histories[name][-1]["val_acc"] for name in ("gnet_t", "gnet_r", "snets")}
    for name, acc in last.items():
        trained = load_trained(run_dir, name)
        assert trained.finished and trained.network == name and trained.config == config
        out = trained.predict(images, batch_size=48)  # batches that do not divide the 64 images: one padded
        assert out.shape == ((config.K,) if name == "snets" else ()) + (len(test), 10)
        correct = (out.argmax(-1) == labels).sum(-1)
        np.testing.assert_array_equal(correct, np.round(np.asarray(acc) * len(test)), err_msg=name)
        again = result.trained(name).predict(images)  # the same network from memory, the run's batch size
        np.testing.assert_array_equal((again.argmax(-1) == labels).sum(-1), correct, err_msg=name)
    assert result.summary["snet_acc"] == last["snets"]

    # one-line errors: an unknown network, a phase without a checkpoint, a directory without a run
    with pytest.raises(ValueError, match=r"network='gnet'.*choose one of"):
        load_trained(run_dir, "gnet")
    no_r = tmp_path / "no_gnet_r"
    no_r.mkdir()
    (no_r / "config.json").write_text(json.dumps({"config": config.replace(gnet_r_epochs=0).to_json()}))
    shutil.copy(run_dir / "preprocessing.json", no_r)
    with pytest.raises(CheckpointError, match=r"has no gnet_r checkpoint \(gnet_r_epochs=0"):
        load_trained(no_r, "gnet_r")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_trained(tmp_path / "nothing", "gnet_t")

    # the lock: released when the run fails (another configuration in the directory) ...
    other = config.replace(seed=1)
    with pytest.raises(ConfigMismatchError):
        run_algorithm1(other, run_dir, setup=result.setup.reconfigured(seed=1), **QUIET)
    assert not (run_dir / "run.lock").exists()
    # ... and a directory another live process holds is refused before anything is written
    busy = tmp_path / "busy"
    busy.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (busy / "run.lock").write_text(json.dumps({**this_process(), "pid": sleeper.pid, "process_start": None}))
        with pytest.raises(RunDirInUseError, match=f"in use by process {sleeper.pid} on host"):
            run_algorithm1(config, busy, setup=result.setup, **QUIET)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in busy.iterdir()) == ["run.lock"]


def test_sub_networks_start_from_independent_keys(nnx_run):
    from dcnn_dd.train import build_setup, phase_keys

    config, _, _ = nnx_run
    setup = build_setup(config)
    k_r, k_s = phase_keys(config.seed)
    first = setup.subnet_init(k_s)
    for path, a in zip(*zip(*jax.tree_util.tree_leaves_with_path(first["params"]))):
        if "bias" in jax.tree_util.keystr(path) or "scale" in jax.tree_util.keystr(path):
            continue  # constant initialisers
        flat = np.asarray(a).reshape(4, -1)
        assert all(not np.array_equal(flat[i], flat[j]) for i in range(4) for j in range(i)), path
    again = setup.subnet_init(k_s)  # the same key: the same networks (a resumed run initialises as the first)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, first, again)))
    g1, g2 = setup.global_init(k_r), setup.global_init(k_s)
    assert not np.array_equal(g1["params"]["conv"]["kernel"], g2["params"]["conv"]["kernel"])


def test_finished_run_rerun_gives_the_same_summary(nnx_run):
    from dcnn_dd.train import run_algorithm1

    config, run_dir, s = nnx_run
    again = run_algorithm1(config, run_dir, **QUIET).summary
    assert {k: again[k] for k in SUMMARY_KEYS} == {k: s[k] for k in SUMMARY_KEYS}


def test_interrupted_run_resumes_bitwise(nnx_run, tmp_path):
    """The run cut after the sub-networks' first epoch (the later checkpoints and files removed, as
    a kill leaves it) resumes there and ends with the same parameters, bitwise."""
    from dcnn_dd.train import run_algorithm1
    from tests.runs import checkpoints, cut_in_last_snet_epoch

    config, run_dir, s = nnx_run
    cut = tmp_path / "cut"
    steps = cut_in_last_snet_epoch(run_dir, cut, ignore=shutil.ignore_patterns("cnn_dnn"))
    assert len(steps) == 2
    assert checkpoints(cut, "snets") == steps[:1]
    again = run_algorithm1(config, cut, **QUIET).summary
    assert checkpoints(cut, "snets") == steps and checkpoints(cut, "gnet_t")  # trained again from the cut
    for phase in ("gnet_r", "snets", "gnet_t"):
        a, b = _params(run_dir, phase), _params(cut, phase)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{phase}{k}")
    for k in ("snet_acc", "gnet_t_init_acc", "theorem_2_1_max_abs_diff", "gnet_t_trained_acc", "gnet_r_trained_acc"):
        assert again[k] == s[k], k


def test_cnn_dnn_trains_on_the_nnx_model(nnx_run):
    from dcnn_dd.cnn_dnn import CNNDNNConfig, run_cnn_dnn
    from dcnn_dd.train.checkpoint import load_variables

    config, run_dir, s = nnx_run
    out = run_cnn_dnn(config, CNNDNNConfig(dnn_epochs=1, coherent_epochs=1, transfer_epochs=1, inner="sequential"), run_dir,
              **QUIET)
    acc = out["acc"]
    for key in ("dnn", "average", "vote", "logit_sum", "coherent", "transfer", "transfer_init"):
        assert 0.0 <= float(np.mean(acc[key])) <= 1.0, (key, acc)
    assert acc["local"] == s["snet_acc"] and acc["composed"] == s["gnet_t_init_acc"]  # the same Algorithm-1 run
    # Theorem 2.1: the composed network's logits are the sum of the local CNNs', so the logit-sum
    # aggregator classifies as the composed network (one image of 64 may flip on rounding)
    assert abs(acc["logit_sum"] - acc["composed"]) <= 1 / 64 + 1e-9
    # the coherent model's local CNNs are the NNX sub-network, stacked; transfer starts from the trained ones
    init = load_variables(run_dir / "cnn_dnn", "transfer_init")
    trained = load_variables(run_dir, "snets")
    for part in ("params", "batch_stats"):
        same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), init[part]["local"],
                            trained[part])
        assert all(jax.tree.leaves(same)), part
    coherent = load_variables(run_dir / "cnn_dnn", "coherent")
    assert coherent["params"]["local"]["conv"]["kernel"].shape == (4, 3, 3, 1, 2)
    assert out["params"]["local_all"] == sum(np.asarray(x).size for x in jax.tree.leaves(trained["params"]))


def test_bad_nnx_models_are_clear_errors(registry):
    from dcnn_dd.train import Config

    registry.register_model("nnx_nosub", NoSubnet)
    with pytest.raises(ValueError, match=r"NoSubnet has no subnet\(K\) method"):
        registry.build_model({"name": "nnx_nosub"}, 10)
    with pytest.raises(ValueError, match="no subnet"):  # before anything runs, as for Linen
        Config(model={"name": "nnx_nosub"})
    with pytest.raises(ValueError, match="unexpected keyword argument 'depth'"):
        registry.build_model({"name": "nnx_cnn", "depth": 3}, 10)
    # a module with nnx.Dropout(rngs=...) is no longer refused: tests/test_optim.py trains one
    with pytest.raises(ValueError, match="width width=6 is not divisible by K=4"):  # as for Linen
        registry.build_model({"name": "nnx_cnn", "width": 6}, 10).subnet(4)
    with pytest.raises(ValueError, match="width width=6 is not divisible by K=4"):  # before anything runs
        Config(model={"name": "nnx_cnn", "width": 6}, K=4)


def test_layout_and_modes_are_flax_bridges(registry):
    """The engine's variables are laid out as ``flax.nnx.bridge.ToLinen`` lays them out, the
    outputs are the module's own, and ``train`` switches BatchNorm as Linen's flag does."""
    from flax.nnx import bridge

    model = registry.build_model({"name": "nnx_cnn", "width": 4}, 10)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 10, 10, 1))
    v = model.init(jax.random.PRNGKey(0), x)
    linen = bridge.ToLinen(NNXCNN, kwargs={"width": 4, "input_shape": (10, 10, 1)})
    v_bridge = linen.init(jax.random.PRNGKey(0), x)
    assert jax.tree.map(jnp.shape, v) == jax.tree.map(jnp.shape, dict(v_bridge))
    # in training mode both use the batch's statistics (an nnx.BatchNorm is built in training mode)
    y, new = model.apply(v, x, train=True, mutable=["batch_stats"])
    y_bridge, new_bridge = linen.apply(v, x, mutable=["batch_stats"])
    np.testing.assert_allclose(y, y_bridge, rtol=1e-6, atol=1e-6)
    assert jax.tree.all(jax.tree.map(lambda a, b: np.allclose(a, b), new, dict(new_bridge)))
    assert not np.allclose(new["batch_stats"]["bn"]["mean"], v["batch_stats"]["bn"]["mean"])
    # eval mode (the default, as Linen's train=False): the running statistics, unchanged
    y_eval, same = model.apply(v, x, mutable=["batch_stats"])
    assert jax.tree.all(jax.tree.map(np.array_equal, same, {"batch_stats": v["batch_stats"]}))
    module = NNXCNN(4, input_shape=(10, 10, 1), rngs=nnx.Rngs(5))  # the module itself with the same values
    _, params, stats = nnx.split(module, nnx.Param, nnx.BatchStat)
    nnx.replace_by_pure_dict(params, v["params"])
    nnx.replace_by_pure_dict(stats, v["batch_stats"])
    nnx.update(module, params, stats)
    module.eval()
    np.testing.assert_allclose(y_eval, module(x), rtol=1e-6, atol=1e-6)
    assert not np.allclose(y_eval, y)


def test_plan_paths_match_an_equivalent_linen_model(registry):
    """The engine's plan for the NNX model has the Linen twin's rules, leaf for leaf (the
    attribute names in place of Linen's automatic ones)."""
    import flax.linen as nn

    import dcnn_dd as dd

    class LinenCNN(nn.Module):
        width: int = 8

        @nn.compact
        def __call__(self, x, train=False):
            x = nn.Conv(self.width, (3, 3), padding="VALID")(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.max_pool(nn.relu(x), (2, 2), (2, 2))
            return nn.Dense(10)(x.reshape(x.shape[0], -1))

    grid = dd.Grid.uniform((16, 16), 2, size=10)
    model = registry.build_model({"name": "nnx_cnn", "width": 8}, 10)
    plan = dd.plan_for(model, model.subnet(4), grid, input_shape=(1, 16, 16, 1))
    twin = dd.plan_for(LinenCNN(8), LinenCNN(2), grid, input_shape=(1, 16, 16, 1))
    names = {"conv": "Conv_0", "bn": "BatchNorm_0", "head": "Dense_0"}

    def linen_path(p):
        col, layer, leaf = p.split("/")
        return f"{col}/{names[layer]}/{leaf}"

    assert {linen_path(p): r for p, r in plan.rules.items()} == twin.rules
    assert plan.verification.exact


def test_vmap_and_sequential_strategies_agree_on_the_nnx_sub_network(registry):
    """One training step of K = 2 stacked NNX sub-networks under ``vmap`` (a batched nnx.merge) and
    ``sequential``: the same parameters and BatchNorm statistics."""
    from dcnn_dd import sharding
    from dcnn_dd.train.state import create_state, default_tx, train_step
    from dcnn_dd.tree import init_variables

    sub = registry.build_model({"name": "nnx_cnn", "width": 4}, 10).subnet(2)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *[init_variables(sub, k, (1, 8, 8, 1))
                                                      for k in jax.random.split(jax.random.PRNGKey(0), 2)])
    tx = default_tx()
    state = jax.vmap(lambda v: create_state(v, tx))(stacked)
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 8, 8, 1))
    labels = jnp.array([0, 1, 2, 3])
    out = {}
    for s in ("vmap", "sequential"):
        step = sharding.kmap(lambda st, x, lab, lr: train_step(sub, tx, st, x, lab, lr), s, K=2,
                               in_axes=(0, 0, None, 0))
        out[s] = jax.jit(step)(state, xs, labels, jnp.full((2,), 1e-2))[0]
    for a, b in zip(jax.tree.leaves(out["vmap"].variables), jax.tree.leaves(out["sequential"].variables)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out["vmap"].params["conv"]["kernel"], state.params["conv"]["kernel"])
