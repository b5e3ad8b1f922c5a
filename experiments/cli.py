"""The experiments' command line: the parser every experiment shares, the generic ``--set key=value``
override of its configuration, the clean-message error path and the main runner.

An experiment package defines its presets (functions returning its configurations, in its
``config.py``) and calls :func:`main` with its own ``run``; results are written by
:mod:`experiments.results`.

Presets: ``paper`` is the paper's setting (TFDS data, GPUs), ``gpu-small`` the same data at a
fraction of the cost, ``cpu-smoke`` an offline Fashion-MNIST stand-in that runs on 2 CPU cores in
minutes, ``tiny`` a seconds-scale variant of it for the test suite.

``--set key=value`` (repeatable) changes one field of the experiment's configuration dataclass
(:class:`dcnn_dd.train.config.Config`, unless the experiment names others) on top of the preset,
in every configuration of a multi-configuration experiment:

* ``key`` is a field name (``seed=1``); a dotted key sets an entry of a dict-valued field
  (``model.features=[8,8,16,16]``, ``grid.size=16``); a key starting with a named target's prefix
  goes to that target (``cnn_dnn.dnn_epochs=5`` in :mod:`experiments.cnn_dnn`);
* ``value`` is JSON when it parses as JSON (``[8,8]``, ``1e-3``, ``null``, ``true``, ``{"base": 1e-3}``),
  else the string itself (``strategy=vmap``);
* ``--import MODULE`` (repeatable) imports a module of yours first, so that names it registers
  (``register_dataset``, ``register_model``, ``register_task``, ``register_optimizer``) can be
  named: ``--import my_data.py --set dataset=my_data``;
* an unknown key is an error naming the known ones; the overrides are recorded in the results'
  metadata (``meta["overrides"]``) and in ``<out>/overrides.json``: a results directory's cached
  measurements belong to one set of overrides (:func:`experiments.results.check_overrides`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

PRESET_NAMES = ("paper", "gpu-small", "cpu-smoke", "tiny")


# ============================================================ --set key=value
def parse_value(text: str):
    """JSON when ``text`` parses as JSON (numbers, lists, dicts, ``null``, ``true``), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_sets(items) -> dict:
    """``["a=1", "model.features=[8,8]"]`` -> ``{"a": 1, "model.features": [8, 8]}`` (in order; a
    later value of the same key wins).  A ``ValueError`` for an item without ``=`` or with an empty key."""
    out: dict = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key or any(not part for part in key.split(".")):
            raise ValueError(f"--set {item!r}: expected key=value (e.g. seed=1, model.features=[8,8,16,16])")
        out[key] = parse_value(value)
    return out


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def known_keys(targets: dict) -> list[str]:
    """Every key ``--set`` accepts for ``targets`` (``{prefix: dataclass}``; prefix ``""``: bare field names)."""
    return [f"{prefix}.{name}" if prefix else name for prefix, cls in targets.items() for name in _fields(cls)]


def split_overrides(overrides: dict, targets: dict) -> dict[str, dict]:
    """Group ``overrides`` by target: ``{prefix: {key within the target: value}}``.  A key whose first
    part is a (non-empty) target prefix goes to that target, every other key to the ``""`` target.
    A key naming no field of its target is a ``ValueError`` listing the known keys."""
    out: dict[str, dict] = {prefix: {} for prefix in targets}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        prefix, sub = (head, rest) if head in targets and head and rest else ("", key)
        if prefix not in targets or sub.partition(".")[0] not in _fields(targets[prefix]):
            raise ValueError(f"--set {key}: unknown key; known keys: {', '.join(known_keys(targets))} "
                             "(a dotted key sets an entry of a dict-valued field, e.g. model.features)")
        out[prefix][sub] = value
    return out


def _set_path(d: dict, path: list[str], value, key: str) -> dict:
    d = dict(d)
    if len(path) == 1:
        d[path[0]] = value
        return d
    inner = d.get(path[0], {})
    if not isinstance(inner, dict):
        raise ValueError(f"--set {key}: {path[0]!r} holds {inner!r}, not a dict")
    d[path[0]] = _set_path(inner, path[1:], value, key)
    return d


def override(obj, overrides: dict):
    """``obj`` (a dataclass instance, e.g. a :class:`~dcnn_dd.train.config.Config`) with ``overrides``
    (``{key: value}``, dotted keys into dict-valued fields) applied by :func:`dataclasses.replace`, so
    the class validates the result (``Config`` does in ``__post_init__``).  Unknown keys: ``ValueError``."""
    if not overrides:
        return obj
    names = _fields(type(obj))
    changes: dict = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ValueError(f"--set {key}: unknown key; known keys: {', '.join(names)}")
        if rest:
            base = changes.get(head, getattr(obj, head))
            if not isinstance(base, dict):
                raise ValueError(f"--set {key}: {head} is not a dict-valued field (it holds {base!r})")
            changes[head] = _set_path(base, rest.split("."), value, key)
        else:
            changes[head] = value
    return dataclasses.replace(obj, **changes)


def override_all(obj, overrides: dict):
    """``obj`` with every instance of a class in ``overrides`` (``{class: {key: value}}``) - anywhere in
    its dataclass fields, lists, tuples and dict values (an experiment's plan) - replaced by
    :func:`override` of it; the rest is kept (the same objects where nothing changed)."""
    for cls, sets in overrides.items():
        if isinstance(obj, cls):
            return override(obj, sets)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changed = {}
        for f in dataclasses.fields(obj):
            old = getattr(obj, f.name)
            new = override_all(old, overrides)
            if new is not old:
                changed[f.name] = new
        return dataclasses.replace(obj, **changed) if changed else obj
    if isinstance(obj, (list, tuple)):
        new = [override_all(v, overrides) for v in obj]
        return obj if all(a is b for a, b in zip(new, obj)) else type(obj)(new)
    if isinstance(obj, dict):
        new = {k: override_all(v, overrides) for k, v in obj.items()}
        return obj if all(new[k] is v for k, v in obj.items()) else new
    return obj


def apply(obj, args):
    """``obj`` (a configuration, or a plan holding several) with the command's ``--set`` overrides
    (``args.overrides`` by target prefix, ``args.targets``: the prefixes' classes, set by :func:`main`)."""
    return override_all(obj, {args.targets[prefix]: sets for prefix, sets in args.overrides.items() if sets})


def config_targets() -> dict:
    """The default ``--set`` target: Algorithm 1's :class:`~dcnn_dd.train.config.Config`."""
    from dcnn_dd.train.config import Config

    return {"": Config}


def add_set_argument(p: argparse.ArgumentParser, what: str = "the configuration (dcnn_dd.train.config.Config)") -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set",
                   help=f"override a field of {what} on top of the preset (repeatable): e.g. --set seed=1 "
                        "--set model.features=[8,8,16,16] --set strategy=vmap; values are JSON when they parse "
                        "(null, true, 1e-3, [8,8]), else strings")
    p.add_argument("--import", action="append", default=[], metavar="MODULE", dest="imports",
                   help="import a module of yours first (repeatable), e.g. one that calls register_dataset, "
                        "register_model, register_task or register_optimizer, so that --set dataset=NAME, "
                        "model.name=NAME, task=NAME find your names; MODULE is a dotted name on the path (the "
                        "current directory included) or a path to a .py file")


def import_modules(names) -> None:
    """``--import MODULE``: import each module of the user's (a dotted name, searched on ``sys.path``
    with the current directory first, or a ``.py`` file's path), so its registrations
    (:func:`dcnn_dd.data.register_dataset`, :func:`dcnn_dd.train.register_model`, ...) happen before
    the configuration is read.  A module that cannot be found is a one-line ``ValueError``."""
    import importlib
    import importlib.util

    for name in names or ():
        path = Path(name)
        if name.endswith(".py"):
            if not path.is_file():
                raise ValueError(f"--import {name}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
            continue
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            raise ValueError(f"--import {name}: {e} (give a module on the path or a .py file)") from None


# ============================================================ the parser and the runner
def parser(name: str, doc: str, default_preset: str = "cpu-smoke",
           presets: tuple[str, ...] = PRESET_NAMES, set_help: str | None = None) -> argparse.ArgumentParser:
    from dcnn_dd.train import distributed

    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=doc.split("\n\n")[0],
                                epilog="See the module docstring for what each preset costs and should reach.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=presets, default=default_preset,
                   help="paper: the paper's setting (GPUs, TFDS); gpu-small: same data, a fraction of the cost; "
                        "cpu-smoke: offline Fashion-MNIST, minutes on a CPU; tiny: seconds (tests)"
                        if presets == PRESET_NAMES else "see the module docstring (default: %(default)s)")
    add_set_argument(p, *([set_help] if set_help else []))
    p.add_argument("--out", default=f"results/{name}", help="results directory (default: %(default)s)")
    p.add_argument("--data", help="directory with the Fashion-MNIST IDX files (default: $DCNN_DD_DATA, then "
                                  "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--data-dir", help="TFDS data directory (paper/gpu-small presets)")
    p.add_argument("--num-devices", type=int, help="devices to use (default: all)")
    p.add_argument("--restart", action="store_true", help="discard earlier checkpoints and measurements in --out")
    p.add_argument("--no-progress", action="store_true")
    distributed.add_arguments(p)
    return p


@contextlib.contextmanager
def cli_errors():
    """For a command's main: the engine's known failures (an invalid value - every ``ValueError``,
    e.g. ``--set train_size=-5``, an unknown ``--set`` key or ``--num-devices 0`` -, missing data, a
    run directory of another configuration or in use by another process, a damaged checkpoint, a
    non-finite loss) exit 2 with their message on stderr instead of a traceback; Ctrl-C (the
    checkpoint is saved) exits 130."""
    from dcnn_dd.data.sources import DatasetNotFoundError
    from dcnn_dd.train.checkpoint import CheckpointError, ConfigMismatchError, RunDirInUseError
    from dcnn_dd.train.loop import Interrupted, NonFiniteLossError

    try:
        yield
    except (ValueError, DatasetNotFoundError, ConfigMismatchError, CheckpointError, NonFiniteLossError,
            RunDirInUseError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        raise SystemExit(130) from None


def main(name: str, doc: str, run: Callable[[argparse.Namespace], dict], argv=None,
         extra_args: Callable[[argparse.ArgumentParser], None] | None = None,
         presets: tuple[str, ...] = PRESET_NAMES, default_preset: str = "cpu-smoke",
         targets: Callable[[], dict] = config_targets, set_help: str | None = None) -> dict:
    """Parse, initialise (multi-process if asked), check the ``--set`` keys against ``targets()``
    (``args.overrides``: ``{prefix: {key: value}}``, see :func:`split_overrides`), ``run(args) ->
    results`` (without ``meta``), write the results files; known failures exit with a message
    instead of a traceback."""
    from dcnn_dd.train import distributed
    from experiments.results import check_overrides, metadata, previous_wall, write_results

    p = parser(name, doc, default_preset, presets, set_help)
    if extra_args is not None:
        extra_args(p)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    distributed.initialize_from_args(args)
    import jax

    t0 = time.perf_counter()
    args.out = Path(args.out)
    with cli_errors():
        import_modules(args.imports)
        sets = parse_sets(args.set)
        args.targets = targets()
        args.overrides = split_overrides(sets, args.targets)
        check_overrides(args.out, sets, args.restart, write=jax.process_index() == 0)
        results = run(args)
    meta = metadata(name, argv, t0, args.preset)
    meta["overrides"] = sets
    meta["wall_total_s"] = meta["wall_s"] + (0.0 if args.restart else previous_wall(args.out, args.preset))
    results = {"experiment": name, "preset": args.preset, **results, "meta": meta}
    if jax.process_index() == 0:
        path = write_results(args.out, results)
        print(f"wrote {path} and {args.out / 'results.md'}")
    return results
