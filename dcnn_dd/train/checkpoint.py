"""Run directories and resumable checkpoints (orbax).

Layout of a run directory::

    <run_dir>/config.json          the run's configuration; a re-run must match it
    <run_dir>/data.json            the data's record and fingerprints; a re-run must match them
    <run_dir>/ckpt/<phase>/<step>/ orbax checkpoints: the state and a JSON ``meta`` record
    <run_dir>/metrics.jsonl        one line per epoch and phase
    <run_dir>/summary.json, *.png  written at the end

Each phase keeps its last two checkpoints.  Saves are synchronous and atomic (orbax writes a
temporary directory and renames it), so a process killed at any moment leaves either the new
checkpoint or the previous one, never half of one.

One process at a time: a run holds ``<run_dir>/run.lock`` (:func:`run_lock`; its pid, host and
start time) while it runs, and a second process started on the directory is refused with a
:class:`RunDirInUseError` that names the holder.  A lock left by a killed process (its pid no
longer alive on this host) is taken over, so a resume is never blocked by it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from dcnn_dd.sharding import process0_flag


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint whose structure or shapes do not match the model it is restored into
    (the model changed since it was saved): not damage, nothing to delete."""


class ConfigMismatchError(ValueError):
    """The run directory holds a run with another configuration."""


class DataMismatchError(ConfigMismatchError):
    """The run directory holds a run on other data (other fingerprints)."""


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` crash-safely: a temporary file in the same directory, flushed to
    disk, then ``os.replace`` (a process killed at any moment leaves the old file or the new one)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path, value, **dumps_kw) -> None:
    """``value`` as JSON (``indent=2`` unless given) in ``path``, atomically (:func:`write_text_atomic`)."""
    dumps_kw.setdefault("indent", 2)
    write_text_atomic(path, json.dumps(value, **dumps_kw) + "\n")


def read_json(path, remedy: str = "delete it to have it computed again, or pass --restart"):
    """A JSON side file written by an earlier run; a damaged (e.g. truncated) one is a
    :class:`CheckpointError` that names the file and what to do (``remedy``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is damaged, not valid JSON ({e}); {remedy}") from None


def _diff(a: dict, b: dict, prefix: str = "", defaults: dict | None = None) -> list[str]:
    """The differences of two configurations, one line each; a key ``a`` (the stored one) lacks
    whose value in ``b`` is its default in ``defaults`` (same nesting) is no difference: a field
    added to the configuration since the run was written, at the value the run had."""
    out = []
    defaults = defaults or {}
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        dk = defaults.get(k) if isinstance(defaults, dict) else None
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.", dk if isinstance(dk, dict) else None)
        elif k not in a and k in defaults and vb == dk:
            continue
        elif va != vb:
            out.append(f"  {prefix}{k}: checkpoint {va!r}, now {vb!r}")
    return out


def _normalise(config: dict) -> dict:
    return json.loads(json.dumps(config))  # tuples -> lists, as they come back from disk


# what a run writes besides its checkpoints; --restart removes all of it (a stale compose.json
# or strategy.json would otherwise be reused by the new run)
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "compose.json", "strategy.json", "accuracy.png",
             "phase_times.png", "data.json", "gnet_r_test.json", "snets_test.json", "gnet_t_test.json",
             "preprocessing.json")


def check_data(run_dir, record: dict) -> None:
    """Bind a run directory to its data: write ``record`` (``{split: {..., "fingerprint": ...}}``,
    :meth:`~dcnn_dd.train.setup.Setup.data_record`) as ``<run_dir>/data.json`` (process 0) where
    none is, else compare the fingerprints of every split with the recorded ones: other data is a
    one-line :class:`DataMismatchError` naming both fingerprints and the fixes.  (A run directory
    written before data were recorded gets its record now.)"""
    path = Path(run_dir) / "data.json"
    if path.exists():
        old = read_json(path, "delete it (the run's data are then recorded anew) or pass --restart")
        splits = [k for k, v in {**old, **record}.items() if isinstance(v, dict) and "fingerprint" in v]
        changed = [f"{k} {old.get(k, {}).get('fingerprint')} there, {record.get(k, {}).get('fingerprint')} now"
                   for k in splits if old.get(k, {}).get("fingerprint") != record.get(k, {}).get("fingerprint")]
        if changed:
            raise DataMismatchError(
                f"run directory {Path(run_dir)} holds a run on other data, the data changed (fingerprints: "
                + "; ".join(changed) + "): resume with the same data, choose another run directory, or pass "
                "--restart (restart=True) to discard its checkpoints")
    elif jax.process_index() == 0:
        write_json(path, record, sort_keys=True)


class RunDir:
    """A run directory bound to one configuration (a JSON-able dict)."""

    def __init__(self, path, config: dict, *, restart: bool = False, defaults: dict | None = None):
        """``defaults``: the configuration's default values, nested like ``config``: a run written
        before a field existed resumes when the field holds its default (:func:`_diff`)."""
        self.path = Path(path)
        self.config = _normalise(config)
        cfg_file = self.path / "config.json"
        if restart and self.path.exists() and jax.process_index() == 0:
            shutil.rmtree(self.path / "ckpt", ignore_errors=True)
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
        if cfg_file.exists():
            old = read_json(cfg_file, "delete the run directory or pass --restart")
            diffs = _diff(old, self.config, defaults=_normalise(defaults or {}))
            if diffs:
                raise ConfigMismatchError(
                    f"run directory {self.path} holds a run with another configuration:\n" + "\n".join(diffs)
                    + "\nRe-run with the same settings to resume it, choose another --run-dir, or pass --restart "
                    "to discard its checkpoints."
                )
        elif jax.process_index() == 0:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(cfg_file, self.config, sort_keys=True)

    def phase(self, name: str) -> PhaseCheckpoints:
        return PhaseCheckpoints(self.path / "ckpt" / name)

    def write_metrics(self, histories: dict, phases) -> None:
        """``metrics.jsonl``: one line per epoch record of ``histories[phase]``, ``phases`` in
        order (by the first process only)."""
        if jax.process_index() == 0:
            lines = [json.dumps(r) for ph in phases for r in histories.get(ph, [])]
            write_text_atomic(self.path / "metrics.jsonl", "".join(line + "\n" for line in lines))


class PhaseCheckpoints:
    """The checkpoints of one phase: ``save(step, state, meta)``, ``restore(like) -> (state, meta)``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).absolute()
        self._mgr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False, create=True),
        )

    def latest(self) -> int | None:
        self._mgr.reload()
        return self._mgr.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        step = int(step)
        latest = self.latest()
        if latest is not None and step == latest:  # e.g. an epoch finished after a Ctrl-C save at its last step
            if self.meta(step) == meta:
                return
            self._mgr.delete(step)  # the previous checkpoint (max_to_keep=2) covers a kill here
        elif latest is not None and step < latest:
            raise CheckpointError(f"refusing to save step {step} in {self.directory}: it already holds step {latest}")
        self._mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        self._mgr.wait_until_finished()

    def meta(self, step: int) -> dict:
        return self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, like_state, step: int | None = None):
        """The latest (or ``step``) checkpoint, placed with the shardings of ``like_state``."""
        step = self.latest() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        path = self.directory / str(step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        try:
            out = self._mgr.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
            )
            state, meta = out["state"], out["meta"]
            if not isinstance(meta, dict):
                raise ValueError("the meta record is missing")
        except Exception as e:  # orbax/tensorstore raise many types for damaged files
            mismatch = _structure_mismatch(path / "state", abstract)
            if mismatch:
                raise CheckpointMismatchError(
                    f"checkpoint {path} does not fit the model it is restored into: {mismatch}.\n"
                    "The checkpoint is intact; the model (or its configuration) changed since it was saved. "
                    "Restore it with the model that saved it, or use another run directory (or --restart) for "
                    "the new model."
                ) from e
            raise CheckpointError(
                f"checkpoint {path} cannot be read: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n"
                f"It is damaged (truncated or partly deleted). Remove it to resume from the previous one "
                f"(rm -r '{path}'), or start the run over with --restart."
            ) from e
        return state, meta

    def close(self) -> None:
        self._mgr.close()


class InMemoryCheckpoints:
    """A phase store with the interface of :class:`PhaseCheckpoints` that keeps its last save in
    memory, never on disk: for timing runs (:mod:`experiments.payoff`), where checkpoint I/O is not
    what is measured, and to train a finished phase further (:meth:`reopen`, then
    :func:`~dcnn_dd.train.loop.run_phase` with more epochs continues where it ended)."""

    directory = "<memory>"

    def __init__(self):
        self._last = None

    def latest(self) -> int | None:
        return None if self._last is None else self._last[0]

    def save(self, step: int, state, meta: dict) -> None:
        self._last = (int(step), state, json.loads(json.dumps(meta)))

    def restore(self, like_state=None, step: int | None = None):
        if self._last is None or (step is not None and step != self._last[0]):
            raise CheckpointError(f"no checkpoint of step {step} in memory")
        return self._last[1], json.loads(json.dumps(self._last[2]))

    def reopen(self) -> None:
        """Mark the phase unfinished, so that a longer phase continues from the last save."""
        if self._last is not None:
            self._last[2]["done"] = False

    def close(self) -> None:
        pass


def _names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _structure_mismatch(state_dir: Path, abstract) -> str | None:
    """Why a checkpoint's saved tree does not fit ``abstract`` (the first leaf whose shape differs,
    or the model leaves only one side has), or None when its metadata cannot be read (damage) or
    shows no difference."""
    try:
        saved_tree = ocp.PyTreeCheckpointer().metadata(state_dir).item_metadata.tree
    except Exception:
        return None
    saved = {_names(p): tuple(getattr(m, "shape", ()) or ()) for p, m in jax.tree_util.tree_flatten_with_path(
        saved_tree, is_leaf=lambda x: hasattr(x, "shape"))[0]}
    wanted = {_names(p): tuple(a.shape) for p, a in jax.tree_util.tree_flatten_with_path(abstract)[0]}
    model = ("params", "model_state")
    for key in sorted(set(saved) & set(wanted), key=lambda k: (k[:1] not in [(m,) for m in model], k)):
        if saved[key] != wanted[key]:  # a model leaf first, then the optimizer's copy of it
            return f"leaf {'/'.join(key)} has shape {saved[key]} in the checkpoint, {wanted[key]} in the model"
    # leaves only one side has: the model's first, then the rest of the state (the optimiser's, e.g. a
    # checkpoint written with another optimiser)
    for what, restored, keep in (("the model leaves differ", "the model", lambda k: k[:1] and k[0] in model),
                                 ("the optimiser state differs (another optimiser, or an older version of this "
                                  "one)", "the state restored into", lambda k: True)):
        only_saved = sorted("/".join(k) for k in set(saved) - set(wanted) if keep(k))
        only_wanted = sorted("/".join(k) for k in set(wanted) - set(saved) if keep(k))
        if only_saved or only_wanted:
            return (f"{what}: " + "; ".join(([f"only in the checkpoint {only_saved[:5]}"] if only_saved else [])
                                            + ([f"only in {restored} {only_wanted[:5]}"] if only_wanted else [])))
    return None


def load_variables(run_dir, phase: str, step: int | None = None) -> dict:
    """The model variables (``{'params': ..., 'batch_stats': ...}``) of a phase's latest (or
    ``step``) checkpoint in an Algorithm-1 run directory, as numpy arrays on the host, whatever
    devices saved them.  For ``snets`` every leaf has the K sub-networks stacked on axis 0."""
    directory = Path(run_dir).absolute() / "ckpt" / phase
    store = PhaseCheckpoints(directory)
    step = store.latest() if step is None else step
    store.close()
    if step is None:
        raise CheckpointError(f"no checkpoint of phase {phase!r} in {directory}")
    path = directory / str(step) / "state"
    ckptr = ocp.PyTreeCheckpointer()
    try:
        tree = ckptr.metadata(path).item_metadata.tree
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        state = ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be read: {type(e).__name__}: {e}") from e
    return {"params": state["params"], **(state.get("model_state") or {})}


# ---------------------------------------------------------------------------- the run-directory lock
LOCK_FILE = "run.lock"


class RunDirInUseError(RuntimeError):
    """Another live process holds the run directory's lock (:func:`run_lock`)."""


def _read_first_line(path) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _process_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), None where unknown."""
    stat = _read_first_line(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[1].split() if stat and ")" in stat else None


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), None where unknown: tells a live
    holder from another process that got its pid later."""
    fields = _process_stat(pid)
    return fields[19] if fields else None


def _boot_id() -> str | None:
    return _read_first_line("/proc/sys/kernel/random/boot_id")


def this_process() -> dict:
    """The lock record of this process: pid, host, start time (and what tells it from a later
    process with the same pid)."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "process_start": _process_start(os.getpid()), "boot": _boot_id(), "token": uuid.uuid4().hex}


def holder_alive(holder: dict) -> bool | None:
    """Whether the process of a lock record still runs: True or False on its own host, None on
    another host (its processes cannot be seen from here)."""
    if holder.get("host") != socket.gethostname():
        return None
    if holder.get("boot") and _boot_id() and holder["boot"] != _boot_id():
        return False  # the host rebooted since
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    fields = _process_stat(pid)
    if fields and fields[0] in ("Z", "X"):
        return False  # killed, not yet reaped by its parent
    start = fields[19] if fields else None
    return not (holder.get("process_start") and start and start != holder["process_start"])  # a reused pid: dead


def in_use_message(path: Path, holder: dict | None, alive: bool | None) -> str:
    """The one-line refusal: who holds the lock, and what to do."""
    run_dir = path.parent
    if holder is None:
        return (f"run directory {run_dir} has a lock file that cannot be read ({path}); if no other run uses the "
                f"directory, remove it (rm '{path}') and start again")
    who = f"process {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')})"
    if alive is None:
        return (f"run directory {run_dir} is in use by {who}, on another host; wait for that run to finish or choose "
                f"another --run-dir; if it no longer runs, remove its lock (rm '{path}') and start again")
    return (f"run directory {run_dir} is in use by {who}; wait for that run to finish, stop it, or choose another "
            "--run-dir")


class RunLock:
    """``<run_dir>/run.lock``: created exclusively (``O_EXCL``) with this process's record; a lock
    whose process is dead (:func:`holder_alive` False) is moved aside and taken over."""

    def __init__(self, run_dir):
        self.path = Path(run_dir).absolute() / LOCK_FILE
        self.holder: dict | None = None

    def _read(self, path: Path | None = None) -> dict | None | bool:
        """The record in the lock file; False where the file is gone, None where it cannot be read
        (after waiting a moment for a writer that has created it but not yet written it)."""
        path = path or self.path
        for _ in range(20):
            try:
                text = path.read_text()
            except FileNotFoundError:
                return False
            try:
                record = json.loads(text)
                return record if isinstance(record, dict) else None
            except json.JSONDecodeError:
                time.sleep(0.05)
        return None

    def _create(self, record: dict) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return True

    def _take_over(self, stale: dict) -> None:
        """Move the dead holder's lock aside (atomic: one process wins it); a live lock moved by
        mistake (another process took over first) is put back."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        if self._read(aside) != stale:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        aside.unlink(missing_ok=True)

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = this_process()
        for _ in range(10):
            if self._create(me):
                self.holder = me
                return self
            held = self._read()
            if held is False:
                continue  # released meanwhile
            alive = None if held is None else holder_alive(held)
            if alive is False:
                self._take_over(held)
                continue
            raise RunDirInUseError(in_use_message(self.path, held, alive))
        raise RunDirInUseError(f"run directory {self.path.parent}: its lock {self.path} changed hands repeatedly; "
                               "another process is starting on it")

    def release(self) -> None:
        """Remove the lock if it is still this process's."""
        if self.holder is not None and self._read() == self.holder:
            self.path.unlink(missing_ok=True)
        self.holder = None


_HELD: dict[str, int] = {}  # run directories this process holds -> nesting depth


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold ``<run_dir>/run.lock`` while the body runs; released at its end, on exceptions too.
    A second process on the directory gets a :class:`RunDirInUseError` (one line: the holder's pid,
    host and start time); a lock whose process is dead on this host is taken over.  Re-entrant
    within one process (the CNN-DNN holds the directory around its Algorithm-1 run).

    Multi-process runs (``jax.process_count() > 1``): only process 0 takes the lock (it is the one
    that writes the directory), and every process learns its outcome (a broadcast: each process
    must enter this together, as they enter every run), so a refused run fails on every process
    instead of leaving the others waiting at their next collective."""
    key = str(Path(run_dir).absolute())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    lock, error = None, None
    if jax.process_index() == 0:
        try:
            lock = RunLock(run_dir).acquire()
        except Exception as e:  # noqa: BLE001 - re-raised below, after every process has heard of it
            error = e
    if not process0_flag(error is None):
        raise error if error is not None else RunDirInUseError(
            f"run directory {run_dir} is in use (process 0 could not take its lock: see its error)")
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        if lock is not None:
            lock.release()
