"""Run directories and checkpoints: round trip, config mismatch, damaged checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcnn_dd.train.checkpoint import CheckpointError, ConfigMismatchError, RunDir
from dcnn_dd.train.state import create_state, default_tx


def _state():
    variables = {"params": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}, "batch_stats": {"m": jnp.zeros(3)}}
    return create_state(variables, default_tx())


def test_roundtrip_is_bitwise_and_keeps_meta(tmp_path):
    rd = RunDir(tmp_path / "run", {"lr": 1e-3, "model": {"w": [1, 2]}})
    store = rd.phase("gnet_r")
    assert store.latest() is None
    st = _state().replace(step=jnp.int32(7))
    st = st.replace(params=jax.tree.map(lambda a: a * 1.2345678, st.params))
    store.save(7, st, {"epoch": 2, "history": [{"val_acc": 0.5}]})
    back, meta = rd.phase("gnet_r").restore(_state())
    assert meta == {"epoch": 2, "history": [{"val_acc": 0.5}]}
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(st)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # saving the same step again with the same meta is a no-op; with another meta it replaces
    store.save(7, st, {"epoch": 2, "history": [{"val_acc": 0.5}]})
    store.save(7, st, {"epoch": 3, "history": []})
    assert store.restore(_state())[1]["epoch"] == 3
    with pytest.raises(CheckpointError, match="refusing"):
        store.save(6, st, {})
    # only the last two checkpoints are kept
    for s in (8, 9, 10):
        store.save(s, st, {"epoch": s})
    assert sorted(int(p.name) for p in store.directory.iterdir() if p.name.isdigit()) == [9, 10]


def test_config_mismatch_is_a_clear_error(tmp_path):
    RunDir(tmp_path, {"lr": 1e-3, "model": {"features": [8, 8]}})
    RunDir(tmp_path, {"lr": 1e-3, "model": {"features": (8, 8)}})  # tuples == lists once on disk
    with pytest.raises(ConfigMismatchError) as e:
        RunDir(tmp_path, {"lr": 1e-2, "model": {"features": [8, 16]}})
    msg = str(e.value)
    assert "lr: checkpoint 0.001, now 0.01" in msg and "model.features" in msg and "--restart" in msg
    for name in ("compose.json", "strategy.json", "summary.json", "metrics.jsonl"):  # written by the old run
        (tmp_path / name).write_text("{}")
    rd = RunDir(tmp_path, {"lr": 1e-2}, restart=True)  # --restart discards the old run, all of it
    assert json.loads((rd.path / "config.json").read_text()) == {"lr": 1e-2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


@pytest.mark.parametrize("damage", ["truncate", "delete_meta", "garbage"])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage):
    store = RunDir(tmp_path, {}).phase("snets")
    store.save(1, _state(), {"epoch": 1})
    step_dir = store.directory / "1"
    files = sorted(p for p in step_dir.rglob("*") if p.is_file())
    if damage == "truncate":
        for p in files:
            if "state" in p.parts and p.stat().st_size > 8:
                p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    elif damage == "delete_meta":
        for p in files:
            if "meta" in p.parts:
                p.unlink()
    else:
        for p in files:
            if "state" in p.parts:
                p.write_bytes(b"\x00garbage" * 3)
    with pytest.raises(CheckpointError, match="cannot be read") as e:
        store.restore(_state())
    assert "rm -r" in str(e.value) and "--restart" in str(e.value)


# ---------------------------------------------------------------- JSON side files (issue 15, point 5)
def test_cached_json_is_written_atomically_and_a_damaged_one_is_named(tmp_path, monkeypatch):
    import os

    from experiments.results import cached

    path = tmp_path / "cache" / "timings.json"
    assert cached(path, False, lambda: {"s": 1.0}) == {"s": 1.0}
    assert cached(path, False, lambda: {"s": 2.0}) == {"s": 1.0}  # reused
    # a crash while the new value is written leaves the old file whole (temp file + os.replace)
    real_replace = os.replace

    def crash(src, dst):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        cached(path, True, lambda: {"s": 3.0, "padding": "x" * 10000})
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads(path.read_text()) == {"s": 1.0}
    assert [p.name for p in path.parent.iterdir()] == ["timings.json"]  # no temporary file left behind
    # a truncated file (written in place by an older version, or a broken disk) names itself
    path.write_text('{"s": 1.')
    with pytest.raises(CheckpointError, match="timings.json is damaged") as e:
        cached(path, False, lambda: {"s": 4.0})
    assert "--restart" in str(e.value)


def test_run_side_files_are_atomic_and_named_when_damaged(tmp_path, monkeypatch):
    """strategy.json, compose.json, transfer_init.json, summary.json: RunDir's config.json and the
    engine's side files go through one writer and one reader."""
    import os

    from dcnn_dd.train import checkpoint

    rd = RunDir(tmp_path, {"lr": 1e-3})
    (tmp_path / "summary.json").write_text('{"snet_acc": [0.5')
    with pytest.raises(CheckpointError, match="summary.json is damaged"):
        checkpoint.read_json(tmp_path / "summary.json")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        checkpoint.write_json(tmp_path / "strategy.json", {"strategy": "vmap"})
    assert not (tmp_path / "strategy.json").exists() and not list(tmp_path.glob(".*tmp"))
    monkeypatch.undo()
    (tmp_path / "config.json").write_text('{"config": ')
    with pytest.raises(CheckpointError, match="config.json is damaged"):
        RunDir(tmp_path, {"lr": 1e-3})
    assert rd.path == tmp_path


# ---------------------------------------------------------------- mismatch vs. damage (issue 15, point 4)
def test_a_model_that_changed_is_a_mismatch_not_damage(tmp_path):
    from dcnn_dd.train.checkpoint import CheckpointMismatchError

    store = RunDir(tmp_path, {}).phase("gnet_r")
    store.save(1, _state(), {"epoch": 1})
    wider = create_state({"params": {"w": jnp.zeros((2, 5)), "b": jnp.ones(3)}, "batch_stats": {"m": jnp.zeros(3)}},
                         default_tx())
    with pytest.raises(CheckpointMismatchError) as e:
        store.restore(wider)
    msg = str(e.value)
    assert "params/w" in msg and "(2, 3)" in msg and "(2, 5)" in msg, msg
    assert "rm -r" not in msg and "damaged" not in msg and "intact" in msg
    assert isinstance(e.value, CheckpointError)  # the CLI's one-line error, exit 2
    # the intact checkpoint still restores into the model that saved it
    back, meta = store.restore(_state())
    assert meta == {"epoch": 1}


def test_another_optimiser_state_is_a_mismatch_not_damage(tmp_path):
    """A checkpoint written with another optimiser state (e.g. before the learning rate became
    optimiser state) fits the model but not the state: a mismatch naming the leaves, not damage."""
    import optax

    from dcnn_dd.train.checkpoint import CheckpointMismatchError

    store = RunDir(tmp_path, {}).phase("gnet_r")
    variables = {"params": {"w": jnp.zeros((2, 3)), "b": jnp.ones(3)}, "batch_stats": {"m": jnp.zeros(3)}}
    store.save(1, create_state(variables, optax.scale_by_adam()), {"epoch": 1})
    with pytest.raises(CheckpointMismatchError) as e:
        store.restore(create_state(variables, default_tx()))
    msg = str(e.value)
    assert "optimiser state differs" in msg and "hyperparams" in msg, msg
    assert "rm -r" not in msg and "damaged" not in msg


def _tampered_meta_cases():
    good = {"epoch": 1, "step_in_epoch": 0, "done": False, "history": [{"val_acc": 0.5}], "elapsed_s": 1.0,
            "train_s": 1.0, "plateau": [{"patience": 5, "factor": 0.3, "best": 0.5, "wait": 0, "scale": 1.0}]}
    cases = {
        "plateau_string": {**good, "plateau": ["x"]},
        "plateau_bad_key": {**good, "plateau": [{"patience": 5, "bogus": 1}]},
        "plateau_wrong_length": {**good, "plateau": []},
        "plateau_scale_string": {**good, "plateau": [{**good["plateau"][0], "scale": "1"}]},
        "done_string": {**good, "done": "no"},
        "history_not_a_list": {**good, "history": 3},
        "history_bad_record": {**good, "history": [1, 2]},
        "epoch_string": {**good, "epoch": "1"},
        "truncated": {"epoch": 1},
    }
    return good, cases


@pytest.mark.parametrize("case", sorted(_tampered_meta_cases()[1]))
def test_tampered_meta_is_a_checkpoint_error(tmp_path, case):
    from dcnn_dd.train.loop import Phase, TrainData, run_phase
    from dcnn_dd.train.schedules import Piecewise

    good, cases = _tampered_meta_cases()
    store = RunDir(tmp_path, {}).phase("gnet_r")
    store.save(1, _state(), cases[case])
    phase = Phase("gnet_r", 3, Piecewise(1e-3), step=None, evaluate=None)
    data = TrainData(source=None, batch_size=1, seed=0)
    with pytest.raises(CheckpointError, match="meta record .* is damaged"):
        run_phase(phase, _state(), store, data, progress=False)


# ---------------------------------------------------------------- the run-directory lock (issue 24, point 6)
def test_a_run_directory_in_use_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    """A lock held by a live process (here a sleeping one) refuses a second run with one line
    naming it (pid, host, start time); once that process is dead, its stale lock is taken over (a
    resume after a kill is not blocked); the lock is released at the end of the body, on an
    exception too; one process may nest it (the CNN-DNN around its Algorithm-1 run)."""
    import socket
    import subprocess
    import sys

    from dcnn_dd.train.checkpoint import LOCK_FILE, RunDirInUseError, run_lock, this_process

    lock = tmp_path / LOCK_FILE
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = {**this_process(), "pid": other.pid, "process_start": None, "started": "2026-12-01T10:00:00+00:00"}
        lock.write_text(json.dumps(held))
        with pytest.raises(RunDirInUseError) as e:
            with run_lock(tmp_path):
                pass
        msg = str(e.value)
        assert len(msg.splitlines()) == 1 and lock.read_text() == json.dumps(held)  # refused, the lock untouched
        assert f"in use by process {other.pid} on host {socket.gethostname()} (started 2026-12-01T10:00:00" in msg
    finally:
        other.kill()
        other.wait()
    with run_lock(tmp_path):  # the holder is dead: its lock is taken over
        mine = json.loads(lock.read_text())
        assert mine["pid"] != other.pid and mine["host"] == socket.gethostname()
        with run_lock(tmp_path):  # nested in the same process
            pass
        assert lock.exists()
    assert not lock.exists() and sorted(p.name for p in tmp_path.iterdir()) == []  # released, nothing left aside
    with pytest.raises(KeyError):
        with run_lock(tmp_path):
            raise KeyError("the run failed")
    assert not lock.exists()
    # a holder on another host cannot be checked from here: refused, with what to do if it is gone
    lock.write_text(json.dumps({**held, "host": "elsewhere.example"}))
    with pytest.raises(RunDirInUseError, match=r"on host elsewhere.example .*another host.*rm '"):
        with run_lock(tmp_path):
            pass


def test_a_run_written_before_a_field_existed_resumes_at_its_default(tmp_path):
    """A configuration field added since a run was written (issue 24's task, optimiser and
    validation fields): the stored config.json lacks it; at its default the run resumes, at another
    value it is a mismatch (fails without RunDir's defaults: every new field was a mismatch)."""
    from dcnn_dd.train import Config

    old = Config().to_json()
    for k in ("task", "optimizer", "val_fraction", "monitor"):
        del old[k]
    (tmp_path / "config.json").write_text(json.dumps({"config": old}))
    defaults = {"config": Config.defaults_json()}
    RunDir(tmp_path, {"config": Config().to_json()}, defaults=defaults)
    with pytest.raises(ConfigMismatchError, match=r"config\.optimizer: checkpoint '<absent>', now 'sgd'"):
        RunDir(tmp_path, {"config": Config(optimizer="sgd").to_json()}, defaults=defaults)
    with pytest.raises(ConfigMismatchError, match="config.task"):
        RunDir(tmp_path, {"config": Config().to_json()})  # without the defaults: absent is a difference
