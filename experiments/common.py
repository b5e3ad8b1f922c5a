"""What every paper experiment shares: presets, the command line, run metadata, the results files.

An experiment module defines ``PRESETS = {"paper": ..., "gpu-small": ..., "cpu-smoke": ...,
"tiny": ...}`` (functions returning its plan) and calls :func:`main` with its own ``run``.  Its
results go to ``results/<experiment>/`` (``--out``):

* ``results.json`` - the schema :mod:`experiments.report` reads: ``experiment``, ``preset``,
  ``meta`` (date, backend, device kind and count, processes, jax version, command, wall time),
  ``stand_in`` (what a small preset runs instead of the paper's setting), ``entries`` (flat
  records keyed like ``experiments/paper_numbers.json``: ``table``, ``row``, ``metric``, ``dataset``,
  ``model``, ``overlap``, ``K``, ``batch_size``, ``augment``, ``devices``; ``value``), ``tables_md``,
  ``figures``, ``notes``;
* ``results.md`` - the experiment's tables as markdown;
* PNG figures, and ``cases/<name>/`` - one engine run directory per Algorithm-1 run (checkpoints:
  re-running the same command resumes every case where it stopped).

Presets: ``paper`` is the paper's setting (TFDS data, GPUs), ``gpu-small`` the same data at a
fraction of the cost, ``cpu-smoke`` an offline Fashion-MNIST stand-in that runs on 2 CPU cores in
minutes, ``tiny`` a seconds-scale variant of it for the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

PRESET_NAMES = ("paper", "gpu-small", "cpu-smoke", "tiny")


def parser(name: str, doc: str, default_preset: str = "cpu-smoke",
           presets: tuple[str, ...] = PRESET_NAMES) -> argparse.ArgumentParser:
    from dcnn_dd.train import distributed

    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=doc.split("\n\n")[0],
                                epilog="See the module docstring for what each preset costs and should reach.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=presets, default=default_preset,
                   help="paper: the paper's setting (GPUs, TFDS); gpu-small: same data, a fraction of the cost; "
                        "cpu-smoke: offline Fashion-MNIST, minutes on a CPU; tiny: seconds (tests)"
                        if presets == PRESET_NAMES else "see the module docstring (default: %(default)s)")
    p.add_argument("--out", default=f"results/{name}", help="results directory (default: %(default)s)")
    p.add_argument("--data", help="directory with the Fashion-MNIST IDX files (default: $DCNN_DD_DATA, then "
                                  "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--data-dir", help="TFDS data directory (paper/gpu-small presets)")
    p.add_argument("--num-devices", type=int, help="devices to use (default: all)")
    p.add_argument("--restart", action="store_true", help="discard earlier checkpoints and measurements in --out")
    p.add_argument("--no-progress", action="store_true")
    distributed.add_arguments(p)
    return p


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


def md_table(headers, rows) -> str:
    """A markdown table; ``None`` cells print as '-'."""
    def cell(v):
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(v) -> str | None:
    return None if v is None else f"{100 * v:.2f}"


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (the experiments only write PNGs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, *, tight: bool = True, dpi: int = 110, **savefig_kw) -> str:
    """Write ``fig`` as a PNG (``tight``: ``tight_layout`` first) and close it; returns the file name
    (what ``results.json``'s ``figures`` lists)."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, **savefig_kw)
    plt.close(fig)
    return Path(path).name


def write_results(out: Path, results: dict) -> Path:
    """``results.json`` and ``results.md`` (the tables, figures and notes) in ``out`` (atomically)."""
    from dcnn_dd.train.checkpoint import write_json, write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    meta = results["meta"]
    md = [f"# {results['experiment']} ({results['preset']})", "",
          f"{meta['date']}, {meta['backend']} ({meta['device_kind']}, {meta['devices']} device(s)), "
          f"`{meta['command']}`, {meta['wall_s']:.0f} s", ""]
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
    from dcnn_dd.train import run_algorithm1 as run

    summary = run(config, run_dir, restart=args.restart, progress=not args.no_progress, data_path=args.data,
                  data_dir=args.data_dir, num_devices=args.num_devices, log=log)
    return {**summary, "histories": read_metrics(run_dir)}


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


def _previous_wall(out: Path, preset: str) -> float:
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


@contextlib.contextmanager
def cli_errors():
    """For a command's main: the engine's known failures (an invalid value - every ``ValueError``,
    e.g. ``--train-size -5`` or ``--num-devices 0`` -, missing data, a run directory of another
    configuration, a damaged checkpoint, a non-finite loss) exit 2 with their message on stderr
    instead of a traceback; Ctrl-C (the checkpoint is saved) exits 130."""
    from dcnn_dd.data.sources import DatasetNotFoundError
    from dcnn_dd.train.checkpoint import CheckpointError, ConfigMismatchError
    from dcnn_dd.train.loop import Interrupted, NonFiniteLossError

    try:
        yield
    except (ValueError, DatasetNotFoundError, ConfigMismatchError, CheckpointError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        raise SystemExit(130) from None


def main(name: str, doc: str, run: Callable[[argparse.Namespace], dict], argv=None,
         extra_args: Callable[[argparse.ArgumentParser], None] | None = None,
         presets: tuple[str, ...] = PRESET_NAMES, default_preset: str = "cpu-smoke") -> dict:
    """Parse, initialise (multi-process if asked), ``run(args) -> results`` (without ``meta``),
    write the results files; known failures exit with a message instead of a traceback."""
    from dcnn_dd.train import distributed

    p = parser(name, doc, default_preset, presets)
    if extra_args is not None:
        extra_args(p)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    distributed.initialize_from_args(args)
    import jax

    t0 = time.perf_counter()
    args.out = Path(args.out)
    with cli_errors():
        results = run(args)
    meta = metadata(name, argv, t0, args.preset)
    meta["wall_total_s"] = meta["wall_s"] + (0.0 if args.restart else _previous_wall(args.out, args.preset))
    results = {"experiment": name, "preset": args.preset, **results, "meta": meta}
    if jax.process_index() == 0:
        path = write_results(args.out, results)
        print(f"wrote {path} and {args.out / 'results.md'}")
    return results
