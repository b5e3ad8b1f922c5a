"""The epoch loop in-process: schedule and plateau per network, a non-finite loss stops the run
and keeps the last good checkpoint, resuming a finished phase trains nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcnn_dd.data.sources import ArraySource
from dcnn_dd.train.checkpoint import RunDir
from dcnn_dd.train.loop import NonFiniteLossError, Phase, TrainData, run_phase
from dcnn_dd.train.schedules import Piecewise
from dcnn_dd.train.state import create_state, default_tx


def toy_source(n=64):
    rng = np.random.default_rng(0)
    return ArraySource(rng.integers(0, 255, (n, 4, 4, 1), dtype=np.uint8), rng.integers(0, 3, n), 3, "toy")


def toy_phase(name, poison_at=None, epochs=3, **kw):
    """A linear softmax model; ``poison_at=(epoch, step)`` makes the loss NaN there."""
    tx = default_tx()
    seen = []

    def step(state, images, labels, ids, epoch, lr):
        x = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0

        def loss_fn(p):
            logits = x @ p["w"] + p["b"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

        loss, g = jax.value_and_grad(loss_fn)(state.params)
        if poison_at is not None and (int(epoch), len([e for e in seen if e == int(epoch)])) == poison_at:
            loss = loss * jnp.nan
        seen.append(int(epoch))
        u, opt = tx.update(g, state.opt_state, state.params)
        params = jax.tree.map(lambda p, d: p - lr * d, state.params, u)
        return state.replace(step=state.step + 1, params=params, opt_state=opt), {"loss": loss, "accuracy": jnp.zeros(())}

    def evaluate(state):
        return [float(jnp.sum(state.params["w"]))]  # any number that changes with training

    state = create_state({"params": {"w": jnp.zeros((16, 3)), "b": jnp.zeros(3)}}, tx)
    return Phase(name, epochs, Piecewise(1e-2, ((2, 0.1),)), step, evaluate, **kw), state, seen


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    store = RunDir(tmp_path, {}).phase("gnet_r")
    phase, state, _ = toy_phase("gnet_r", poison_at=(1, 2))
    data = TrainData(toy_source(), 16, seed=0)
    with pytest.raises(NonFiniteLossError) as e:
        run_phase(phase, state, store, data, progress=False)
    msg = str(e.value)
    assert "nan" in msg and "epoch 2, step 3" in msg and str(store.directory) in msg and "learning rate" in msg
    assert store.latest() == 4  # the end of epoch 1 (4 steps); nothing after the NaN was saved
    good, meta = store.restore(state)
    assert meta["epoch"] == 1 and np.all(np.isfinite(np.asarray(good.params["w"])))


def test_schedule_epochs_history_and_resume_of_a_finished_phase(tmp_path):
    store = RunDir(tmp_path, {}).phase("gnet_r")
    phase, state, seen = toy_phase("gnet_r")
    calls = []
    final, hist = run_phase(phase, state, store, TrainData(toy_source(), 16, seed=0), progress=False,
                            on_epoch=lambda h: calls.append(len(h)))
    assert [r["epoch"] for r in hist] == [1, 2, 3] and calls == [1, 2, 3]
    assert [r["lr"] for r in hist] == pytest.approx([1e-2, 1e-2, 1e-3])  # milestone at epoch index 2
    assert hist[-1]["elapsed_s"] >= hist[-1]["train_s"] > 0 and len(seen) == 12
    again, hist2 = run_phase(phase, state, store, TrainData(toy_source(), 16, seed=0), progress=False)
    assert hist2 == hist and len(seen) == 12  # restored, nothing trained
    np.testing.assert_array_equal(np.asarray(again.params["w"]), np.asarray(final.params["w"]))


def test_until_stops_extra_epochs_early(tmp_path):
    store = RunDir(tmp_path, {}).phase("gnet_t")
    phase, state, seen = toy_phase("gnet_t", epochs=1, extra_epochs=5, until=lambda h: len(h) >= 2)
    _, hist = run_phase(phase, state, store, TrainData(toy_source(), 16, seed=0), progress=False)
    assert len(hist) == 2  # one protocol epoch + one extra, then `until` held


def test_plateau_scales_each_network_on_its_own(tmp_path):
    """Two 'networks' (K=2): the first never improves, so only its rate is divided by sqrt(10)."""
    store = RunDir(tmp_path, {}).phase("snets")
    phase, state, _ = toy_phase("snets", epochs=4, num_nets=2, plateau_patience=2)
    phase.schedule = Piecewise(1e-2)
    vals = iter([[0.5, 0.1], [0.5, 0.2], [0.5, 0.3], [0.5, 0.4]])
    phase.evaluate = lambda st: next(vals)
    step = phase.step
    phase.step = lambda st, im, lab, ids, ep, lr: step(st, im, lab, ids, ep, lr.mean())
    _, hist = run_phase(phase, state, store, TrainData(toy_source(), 16, seed=0), progress=False)
    np.testing.assert_allclose([r["lr"] for r in hist], [[1e-2, 1e-2]] * 3 + [[1e-2 / 10 ** 0.5, 1e-2]])


def test_top_k_correct_by_hand():
    """Top-k hits counted by hand on 3 samples of 6 classes (ties: a hit only when fewer than k
    classes are strictly larger)."""
    import jax.numpy as jnp

    from dcnn_dd.train.state import top_k_correct

    logits = jnp.array([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0],   # label 0 is the smallest: 5 classes above it
                        [9.0, 1.0, 1.0, 1.0, 1.0, 1.0],   # label 1 ties with 4 others, 1 class above it
                        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])  # label 4: 1 class above it
    labels = jnp.array([0, 1, 4])
    assert top_k_correct(logits, labels, 5).tolist() == [False, True, True]
    assert top_k_correct(logits, labels, 1).tolist() == [False, False, False]
    assert top_k_correct(logits, labels, 2).tolist() == [False, True, True]
    assert top_k_correct(logits, labels, 6).tolist() == [True, True, True]
