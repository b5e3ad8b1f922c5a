"""What every experiment writes: run metadata, the results files, cached measurements, a run's metrics.

Results go to ``results/<experiment>/`` (``--out``):

* ``results.json`` - the schema :mod:`experiments.report` reads: ``experiment``, ``preset``,
  ``meta`` (date, backend, device kind and count, processes, jax version, command, wall time, the
  ``--set`` overrides), ``stand_in`` (what a small preset runs instead of the paper's setting),
  ``entries`` (flat records keyed like ``experiments/paper_numbers.json``: ``table``, ``row``,
  ``metric``, ``dataset``, ``model``, ``overlap``, ``K``, ``batch_size``, ``augment``, ``devices``;
  ``value``), ``tables_md``, ``figures``, ``notes``;
* ``results.md`` - the experiment's tables as markdown;
* PNG figures, and ``cases/<name>/`` - one engine run directory per Algorithm-1 run (checkpoints:
  re-running the same command resumes every case where it stopped).
"""

from __future__ import annotations

import datetime
import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path


def metadata(name: str, argv, t0: float, preset: str) -> dict:
    import jax

    dev = jax.devices()[0]
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "preset": preset,
        "backend": jax.default_backend(),
        "device_kind": getattr(dev, "device_kind", str(dev)),
        "devices": len(jax.devices()),
        "processes": jax.process_count(),
        "jax": jax.__version__,
        "command": " ".join(["python", "-m", f"experiments.{name}", *map(shlex.quote, argv)]),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def write_results(out: Path, results: dict) -> Path:
    """``results.json`` and ``results.md`` (the tables, figures and notes) in ``out`` (atomically)."""
    from dcnn_dd.train.checkpoint import write_json, write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    meta = results["meta"]
    md = [f"# {results['experiment']} ({results['preset']})", "",
          f"{meta['date']}, {meta['backend']} ({meta['device_kind']}, {meta['devices']} device(s)), "
          f"`{meta['command']}`, {meta['wall_s']:.0f} s", ""]
    if meta.get("overrides"):
        md += ["Overrides (`--set`): " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in meta["overrides"].items()), ""]
    if results.get("stand_in"):
        md += [f"Stand-in: {results['stand_in']}", ""]
    for name, table in results.get("tables_md", {}).items():
        md += [f"## {name}", "", table, ""]
    for name, fig in results.get("figures", {}).items():
        md += [f"![{name}]({fig})", ""]
    if results.get("notes"):
        md += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    write_text_atomic(out / "results.md", "\n".join(md))
    return out / "results.json"


def run_case(config, run_dir: Path, args, log=print) -> dict:
    """One Algorithm-1 run (resumable) in ``run_dir``; returns its summary with its histories."""
    from dcnn_dd.train import run_algorithm1

    result = run_algorithm1(config, run_dir, restart=args.restart, progress=not args.no_progress, data_path=args.data,
                            data_dir=args.data_dir, num_devices=args.num_devices, log=log)
    return {**result.summary, "histories": read_metrics(run_dir)}


def read_metrics(run_dir: Path) -> dict:
    """A run's ``metrics.jsonl`` as ``{phase: [records]}``."""
    out: dict[str, list] = {}
    path = Path(run_dir) / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            out.setdefault(r["phase"], []).append(r)
    return out


def cached(path: Path, restart: bool, compute: Callable[[], dict]) -> dict:
    """``compute()`` once, stored as JSON in ``path`` (re-runs reuse it unless ``restart``).  Written
    atomically; a damaged file is a :class:`~dcnn_dd.train.checkpoint.CheckpointError` naming it."""
    from dcnn_dd.train.checkpoint import read_json, write_json

    path = Path(path)
    if path.exists() and not restart:
        return read_json(path, "delete it to measure again, or pass --restart")
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, value)
    return value


def run_cache(directory: Path, restart: bool) -> Callable[[str, Callable[[], dict]], dict]:
    """:func:`cached` for one invocation over ``directory``: ``get(name, compute)`` is
    ``directory/name.json``, read or computed once per invocation however often the run asks for
    it, so ``restart`` measures each entry again, but once."""
    seen: dict = {}

    def get(name: str, compute: Callable[[], dict]) -> dict:
        if name not in seen:
            seen[name] = cached(Path(directory) / f"{name}.json", restart, compute)
        return seen[name]
    return get


def check_overrides(out: Path, overrides: dict, restart: bool, write: bool = True) -> None:
    """The cached measurements of a results directory belong to one set of ``--set`` overrides: they
    are recorded in ``<out>/overrides.json`` (``write``: by process 0), and a later command with
    other overrides on the same directory is a ``ValueError`` (use another ``--out``, or ``--restart``
    to measure again) - the caches (:func:`cached`) are keyed by measurement, not by configuration.
    A directory from before the overrides were recorded counts as measured without any."""
    from dcnn_dd.train.checkpoint import read_json, write_json

    out = Path(out)
    path = out / "overrides.json"
    if not restart:
        if path.exists():
            before = read_json(path, "delete it, or pass --restart")
        else:
            measured = out.exists() and any(p.name not in ("results.json", "results.md") for p in out.iterdir())
            before = {} if measured else overrides
        if before != overrides:
            raise ValueError(f"{out} holds measurements made with --set overrides {before or 'none'}, not "
                             f"{overrides or 'none'}: choose another --out, or pass --restart to measure again")
    if write:
        out.mkdir(parents=True, exist_ok=True)
        write_json(path, overrides)


def previous_wall(out: Path, preset: str) -> float:
    """Wall time of the earlier finished invocations of the same preset on this results directory
    (``results.json`` is written at the end), so a re-run that resumed from the checkpoints - e.g.
    to redraw the figures - reports the total (``wall_total_s``).  An interrupted invocation
    writes nothing, so its time is not counted."""
    try:
        old = json.loads((out / "results.json").read_text())
        if old.get("preset") == preset:
            return float(old["meta"].get("wall_total_s", old["meta"]["wall_s"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return 0.0


def timed_s(record: dict) -> float | None:
    """A timing record's (:func:`dcnn_dd.train.timing.time_training`) time of its epochs, or None
    where the batch did not fit (``oom``: the paper's "-")."""
    return None if record.get("oom") else record["time_s"]
