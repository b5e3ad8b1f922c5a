"""The epoch loop of one phase: resumable, interruptible, guarded against NaN.

:func:`run_phase` trains one network (or K stacked sub-networks) for a number of epochs with a
jitted ``step``, evaluates after every epoch, applies the schedule and the plateau rule, and
checkpoints at every epoch end.  It resumes from the phase's latest checkpoint, mid-epoch
included: the batch order and the augmentation depend only on (seed, epoch, sample index), so a
resumed run computes exactly the same steps as an uninterrupted one.

Rates: a per-epoch schedule (:class:`~.schedules.Piecewise`) gives one per epoch; a per-step one
(``schedule.per_step``: warm-up, cosine; any object with ``per_step = True`` and ``rate(step,
total_steps)``) one per step, at the phase's step ``epoch * steps_per_epoch + s`` of ``epochs *
steps_per_epoch`` (so a mid-epoch resume continues with the same rates); the plateau scale
multiplies either.  The epoch record's ``lr`` is the epoch's first rate.

Faults: a non-finite loss raises :class:`NonFiniteLossError` before anything is saved (the last
good checkpoint stays); Ctrl-C (SIGINT) finishes the running step, saves a checkpoint and raises
:class:`Interrupted` (a second Ctrl-C aborts at once).
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dcnn_dd.data import pipeline
from dcnn_dd.train.checkpoint import CheckpointError, PhaseCheckpoints
from dcnn_dd.train.schedules import Plateau, Schedule


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: a checkpoint was saved; re-running the same command resumes."""


@dataclasses.dataclass
class Phase:
    """One training phase.  ``step(state, images, labels, ids, epoch, lrs) -> (state, metrics)``
    with ``metrics['loss']`` and (optional, the record's ``train_acc``) ``metrics['accuracy']`` of
    shape ``(num_nets,)`` or ``()``; ``evaluate(state) -> list`` of the monitored validation metric,
    one value per network, or a dict with that list under the ``monitor`` key and more per-network
    metrics (e.g. ``val_top5``) for the epoch record.  ``monitor`` (default ``val_acc``) and
    ``monitor_mode`` (``max``: higher is better; ``min``, e.g. for ``val_loss``) drive the plateau
    rule; ``until`` reads the records."""

    name: str
    epochs: int
    schedule: Schedule  # per epoch (Piecewise) or per step (schedules.PER_STEP)
    step: Callable
    evaluate: Callable
    num_nets: int = 1
    plateau_patience: int | None = 5
    extra_epochs: int = 0
    until: Callable[[list], bool] | None = None  # stop early once true (checked from `epochs` on)
    monitor: str = "val_acc"
    monitor_mode: str = "max"


@dataclasses.dataclass
class TrainData:
    source: object
    batch_size: int
    seed: int
    sharding: object = None  # batch sharding (data-parallel) or replicated (sub-network phase)
    steps_per_epoch: int | None = None  # None: full passes; else that many batches of each epoch's permutation


class _SigintFlag:
    """Turns the first SIGINT into a flag the loop checks between steps; restores the handler."""

    def __init__(self):
        self.hit = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.hit = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts at once

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _vec(x, n: int) -> list[float]:
    return [float(v) for v in np.broadcast_to(np.asarray(x, np.float64), (n,))]


def _plain(values: list, n: int):
    return values[0] if n == 1 else values


def run_phase(
    phase: Phase,
    state,
    store: PhaseCheckpoints,
    data: TrainData,
    *,
    on_epoch: Callable[[list], None] | None = None,
    progress: bool = True,
):
    """Train ``phase`` from ``state`` (or from its latest checkpoint); returns (state, history).
    ``on_epoch(history)`` is called after every epoch with all epoch records so far."""
    n = phase.num_nets
    meta = {"epoch": 0, "step_in_epoch": 0, "done": False, "history": [], "elapsed_s": 0.0, "train_s": 0.0,
            "plateau": [Plateau(patience=phase.plateau_patience or 1, mode=phase.monitor_mode).to_json()
                        for _ in range(n)]}
    if store.latest() is not None:
        state, meta = store.restore(state)
        _check_meta(meta, n, store, phase.monitor)
    history = list(meta["history"])
    if meta["done"]:
        return state, history
    plateaus = [Plateau.from_json(p) for p in meta["plateau"]]
    elapsed, train_s = float(meta["elapsed_s"]), float(meta["train_s"])
    steps = pipeline.steps_per_epoch(len(data.source), data.batch_size)
    if steps == 0:
        raise ValueError(f"{phase.name}: batch size {data.batch_size} exceeds the {len(data.source)} training samples")
    if data.steps_per_epoch is not None:
        if data.steps_per_epoch > steps:
            raise ValueError(f"{phase.name}: steps_per_epoch={data.steps_per_epoch} exceeds the {steps} batches of "
                             f"{data.batch_size} in the {len(data.source)} training samples")
        steps = data.steps_per_epoch
    last_epoch = phase.epochs + phase.extra_epochs
    per_step = getattr(phase.schedule, "per_step", False)
    total_steps = phase.epochs * steps  # a per-step schedule spans the phase's epochs (extra epochs: its end)

    def step_rates(t: int) -> list[float]:  # a per-step schedule at the phase's step t, each network's scale
        r = phase.schedule.rate(t, total_steps)
        return [r * p.scale for p in plateaus]

    show = progress and jax.process_index() == 0 and sys.stderr.isatty()  # bars on a terminal; epoch lines always

    def save(epoch, step_in_epoch, done=False):
        m = {"epoch": epoch, "step_in_epoch": step_in_epoch, "done": done, "history": history,
             "elapsed_s": elapsed, "train_s": train_s, "plateau": [p.to_json() for p in plateaus]}
        store.save(int(np.asarray(jax.device_get(_first_step(state)))), state, m)

    epoch, start = int(meta["epoch"]), int(meta["step_in_epoch"])
    with _SigintFlag() as sigint:
        while epoch < last_epoch:
            if sigint.hit:  # Ctrl-C during the evaluation: the epoch-end checkpoint is already saved
                raise Interrupted(f"interrupted: checkpoint saved in {store.directory} ({phase.name}, after epoch "
                                  f"{epoch}); re-run the same command to resume")
            if epoch >= phase.epochs and phase.until is not None and phase.until(history):
                break
            if per_step:
                lrs = step_rates(epoch * steps)  # the epoch's first rate (the record's lr, also after a resume)
            else:
                lrs = [phase.schedule(epoch) * p.scale for p in plateaus]
                lr_arr = jnp.asarray(lrs if n > 1 else lrs[0], jnp.float32)
            now = lrs  # the running step's rates
            t_epoch = time.perf_counter()
            sums = np.zeros((2, n))
            has_acc = bool(history) and "train_acc" in history[-1]  # as the epoch before, if no step runs
            pending = None
            bar = tqdm(total=steps, initial=start, desc=f"{phase.name} {epoch + 1}/{phase.epochs}" + ("+" if epoch >= phase.epochs else ""), disable=not show,
                       leave=False, dynamic_ncols=True)

            def check(m, s, rates):
                nonlocal has_acc
                loss = _vec(m["loss"], n)
                if not all(math.isfinite(v) for v in loss):
                    raise NonFiniteLossError(
                        f"{phase.name}: the training loss became {loss} at epoch {epoch + 1}, step {s + 1} "
                        f"(learning rate {rates}). The run stopped; the last good checkpoint is kept in {store.directory}. "
                        "Lower the learning rate or check the data, then start over (--restart) or use a new --run-dir."
                    )
                sums[0] += loss
                has_acc = "accuracy" in m
                acc = _vec(m["accuracy"], n) if has_acc else []
                sums[1] += acc if has_acc else 0.0
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(loss):.3f}", **({"acc": f"{np.mean(acc):.3f}"} if has_acc else {}))

            batches = pipeline.batches(data.source, seed=data.seed, epoch=epoch, batch_size=data.batch_size,
                                       start_step=start, sharding=data.sharding, steps=steps)
            s = start
            try:
                for s, (images, labels, ids) in enumerate(batches, start=start):
                    if per_step:
                        now = step_rates(epoch * steps + s)
                        lr_arr = jnp.asarray(now if n > 1 else now[0], jnp.float32)
                    state, m = phase.step(state, images, labels, ids, jnp.int32(epoch), lr_arr)
                    if pending is not None:
                        check(*pending)
                    pending = (m, s, now)
                    if sigint.hit:
                        break
                if pending is not None:
                    check(*pending)
            finally:
                bar.close()
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
            dt = time.perf_counter() - t_epoch
            train_s += dt
            elapsed += dt
            if sigint.hit:
                done_steps = s + 1 if pending is not None else start
                save(epoch, done_steps)
                raise Interrupted(f"interrupted: checkpoint saved in {store.directory} "
                                  f"({phase.name}, epoch {epoch + 1}, step {done_steps}); re-run the same command to resume")
            t_eval = time.perf_counter()
            ev = phase.evaluate(state)
            more = {}
            if isinstance(ev, dict):
                if phase.monitor not in ev:
                    raise ValueError(f"{phase.name}: the evaluation gives {sorted(ev)}, not the monitored "
                                     f"{phase.monitor!r}")
                more = {k: _plain([float(x) for x in v], n) for k, v in ev.items() if k != phase.monitor}
                ev = ev[phase.monitor]
            val = [float(v) for v in ev]
            elapsed += time.perf_counter() - t_eval
            ran = steps - start
            if phase.plateau_patience:
                plateaus = [p.update(v) for p, v in zip(plateaus, val)]
            record = {
                "phase": phase.name, "epoch": epoch + 1, "lr": _plain(lrs, n),
                "train_loss": _plain(list(sums[0] / max(ran, 1)), n),
                **({"train_acc": _plain(list(sums[1] / max(ran, 1)), n)} if has_acc else {}),
                phase.monitor: _plain(val, n), **more, "train_s": train_s, "elapsed_s": elapsed,
            }
            history.append(record)
            epoch, start = epoch + 1, 0
            finished = epoch >= last_epoch or (epoch >= phase.epochs and (phase.until is None or phase.until(history)))
            save(epoch, 0, done=finished)
            if on_epoch is not None:
                on_epoch(list(history))
            if jax.process_index() == 0:
                tqdm.write(_format(record, phase.monitor))
            if finished:
                break
    return state, history


def _check_meta(meta, n: int, store, monitor: str = "val_acc") -> None:
    """A restored meta record as :func:`run_phase` writes it; a tampered or truncated one (wrong
    types, missing keys, a plateau state of the wrong length) is a :class:`CheckpointError`."""
    def bad(why):
        return CheckpointError(f"the meta record of the latest checkpoint in {store.directory} is damaged: {why}. "
                               "Remove that checkpoint to resume from the previous one, or start over with --restart.")

    if not isinstance(meta, dict):
        raise bad(f"a {type(meta).__name__}, not a record")
    missing = {"epoch", "step_in_epoch", "done", "history", "elapsed_s", "train_s", "plateau"} - set(meta)
    if missing:
        raise bad(f"missing {sorted(missing)}")
    for k in ("epoch", "step_in_epoch"):
        if not isinstance(meta[k], int) or isinstance(meta[k], bool) or meta[k] < 0:
            raise bad(f"{k}={meta[k]!r}")
    if not isinstance(meta["done"], bool):
        raise bad(f"done={meta['done']!r}")
    for k in ("elapsed_s", "train_s"):
        if isinstance(meta[k], bool) or not isinstance(meta[k], (int, float)) or not math.isfinite(meta[k]):
            raise bad(f"{k}={meta[k]!r}")
    h = meta["history"]
    if not isinstance(h, list) or not all(isinstance(r, dict) and monitor in r for r in h):
        raise bad("history is not a list of epoch records")
    p = meta["plateau"]
    if not isinstance(p, list) or len(p) != n:
        raise bad(f"plateau has {len(p) if isinstance(p, list) else p!r} entries, the phase trains {n} network(s)")
    try:
        for x in p:
            pl = Plateau.from_json(x)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       for v in (pl.patience, pl.factor, pl.best, pl.wait, pl.scale)):
                raise TypeError
    except (TypeError, ValueError, AttributeError):
        raise bad(f"plateau state {p!r}") from None


def _first_step(state):
    step = state.step
    return step.reshape(-1)[0] if getattr(step, "ndim", 0) else step


def _format(r: dict, monitor: str = "val_acc") -> str:
    def f(v):
        return "/".join(f"{x:.4f}" for x in v) if isinstance(v, list) else f"{v:.4f}"

    return (f"{r['phase']:>7} epoch {r['epoch']:>3}  loss {f(r['train_loss'])}  {monitor.replace('_', ' ')} "
            f"{f(r[monitor])}  lr {f(r['lr'])}  {r['elapsed_s']:.1f}s")
