"""A run as a list of phases: train, compute, train... with checkpoints, resume and metrics.

A run of the engine (Algorithm 1, the CNN-DNN) is a list of

* :class:`Train` - a training phase: (name, initial state, step, data, schedule), run by the
  epoch loop :func:`~.loop.run_phase` (checkpoint every epoch end, resume mid-epoch, Ctrl-C,
  NaN guard, plateau rule), its epoch records kept as the phase's history;
* :class:`Deferred` - a training phase built when it is reached, from the results before it;
* :class:`Compute` - a value computed between phases (a strategy choice, a composition, a
  theorem check); with ``cache=True`` it is computed once and stored as ``<run_dir>/<name>.json``
  by process 0, so a resumed run reads it instead of computing it again.

:func:`run_phases` runs the list in order.  Each entry sees the ``results`` of the entries
before it (``results[name]``: a Compute's value, a Train phase's ``keep(state)``;
``results["histories"]``: the epoch records so far), which is how a phase's initial state
depends on earlier phases.  ``metrics.jsonl`` is rewritten after every
epoch with the histories so far, in list order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

from dcnn_dd.sharding import process0_flag
from dcnn_dd.train.checkpoint import RunDir, read_json, write_json
from dcnn_dd.train.loop import Phase, TrainData, run_phase
from dcnn_dd.train.schedules import Schedule


@dataclasses.dataclass
class Train:
    """A training phase.  ``init(results) -> state``; ``step`` and ``evaluate`` as for
    :class:`~.loop.Phase`; ``keep(state) -> value``: what later entries need of the final state
    (``results[name]``; the state itself is then dropped).  ``until(results)`` -> a stopping
    rule ``history -> bool`` checked from ``epochs`` on, or None; ``extra_epochs`` are only run
    under a stopping rule (without one they are dropped: the phase trains ``epochs``).  ``optional``:
    skipped (no history) when ``epochs`` is 0.  ``monitor``, ``monitor_mode``: the record key that
    drives the plateau rule and its direction, as for :class:`~.loop.Phase`."""

    name: str
    epochs: int
    schedule: Schedule
    step: Callable
    evaluate: Callable
    data: TrainData
    init: Callable[[dict], Any]
    num_nets: int = 1
    plateau_patience: int | None = 5
    extra_epochs: int = 0
    until: Callable[[dict], Callable[[list], bool] | None] | None = None
    keep: Callable[[Any], Any] | None = None
    optional: bool = False
    monitor: str = "val_acc"
    monitor_mode: str = "max"

    def phase(self, until: Callable[[list], bool] | None = None) -> Phase:
        """The epoch loop's :class:`~.loop.Phase` of this entry with the stopping rule ``until``
        (``history -> bool``, e.g. the entry's own ``until(results)``; without one the extra epochs
        are dropped): what :func:`run_phases` runs, and what a caller runs itself with
        :func:`~.loop.run_phase` (e.g. :mod:`experiments.payoff`, with in-memory checkpoints under
        its own clocks)."""
        return Phase(self.name, self.epochs, self.schedule, self.step, self.evaluate, self.num_nets,
                     self.plateau_patience, extra_epochs=self.extra_epochs if until is not None else 0, until=until,
                     monitor=self.monitor, monitor_mode=self.monitor_mode)


@dataclasses.dataclass
class Deferred:
    """A :class:`Train` phase built when it is reached: ``build(results) -> Train`` named ``name``.
    For settings that depend on earlier results (e.g. the sub-network phase on the strategy a
    :class:`Compute` chose), and to keep building the list free of work."""

    name: str
    build: Callable[[dict], Train]


@dataclasses.dataclass
class Compute:
    """``fn(results) -> value`` between phases.  ``cache``: a JSON value computed once and kept
    as ``<run_dir>/<name>.json`` (written by process 0; every process reads process 0's answer
    to "is it there").  ``record``: also one record of ``metrics.jsonl``, in list order.
    ``describe(value) -> str``: a line for the run's log, computed or read."""

    name: str
    fn: Callable[[dict], Any]
    cache: bool = False
    record: bool = False
    describe: Callable[[Any], str] | None = None


def cached_json(path: Path, compute: Callable[[], Any]) -> Any:
    """``path``'s JSON if process 0 has it, else ``compute()``, written there by process 0."""
    path = Path(path)
    if process0_flag(path.exists()):
        return read_json(path)
    value = compute()
    if jax.process_index() == 0:
        write_json(path, value)
    return value


def run_phases(phases: Sequence[Train | Deferred | Compute], run_dir: RunDir, *, restart: bool = False, progress: bool = True,
               results: dict | None = None, log: Callable[[str], None] | None = None) -> tuple[dict, dict[str, list]]:
    """Run (or resume) ``phases`` in order in ``run_dir``; returns ``(results, histories)``:
    ``results[name]`` as above, ``histories[name]`` the epoch records of each Train phase that
    ran (and the record of each recorded Compute).  ``restart``: forget the cached values first.
    ``results``: values the entries may read besides the earlier entries' (e.g. inputs);
    ``log``: where the Compute entries' ``describe`` lines go."""
    names = [p.name for p in phases]
    if len(set(names)) != len(names) or "histories" in names:
        raise ValueError(f"phase names must be unique and not 'histories', got {names}")
    histories: dict[str, list] = {}
    results = {**(results or {}), "histories": histories}
    order = [p.name for p in phases if not isinstance(p, Compute) or p.record]
    if restart and jax.process_index() == 0:
        for p in phases:
            if isinstance(p, Compute) and p.cache:
                (run_dir.path / f"{p.name}.json").unlink(missing_ok=True)

    def write_metrics():
        run_dir.write_metrics(histories, order)

    for p in phases:
        if isinstance(p, Compute):
            value = cached_json(run_dir.path / f"{p.name}.json", lambda: p.fn(results)) if p.cache else p.fn(results)
            results[p.name] = value
            if p.describe is not None and log is not None:
                log(p.describe(value))
            if p.record:
                histories[p.name] = [value]
            continue
        if isinstance(p, Deferred):
            name, p = p.name, p.build(results)
            if p.name != name:
                raise ValueError(f"Deferred({name!r}) built a phase named {p.name!r}")
        if p.optional and p.epochs <= 0:
            continue
        histories[p.name] = []
        phase = p.phase(p.until(results) if p.until is not None else None)

        def on_epoch(history, name=p.name):
            histories[name] = history
            write_metrics()

        state, histories[p.name] = run_phase(phase, p.init(results), run_dir.phase(p.name), p.data,
                                             on_epoch=on_epoch, progress=progress)
        write_metrics()
        results[p.name] = p.keep(state) if p.keep is not None else None
        del state
    write_metrics()  # also when no phase trained (every one skipped): the file is always there
    return results, histories
