"""Optimisers by name: any optax optimiser with a ``learning_rate`` argument, or one of your own.

A configuration names an optimiser as a string or a dict of its keyword arguments::

    "adam"                                                  # optax.adam(), the paper's (the default)
    {"name": "adamw", "weight_decay": 1e-4}
    {"name": "sgd", "momentum": 0.9, "nesterov": True}

The name is looked up among the optimisers registered with :func:`register_optimizer` and then on
``optax`` itself, so every optax optimiser whose first argument is ``learning_rate`` works
(``adamw``, ``sgd``, ``lion``, ``rmsprop``, ``adafactor``, ...).  :func:`make_tx` builds it with
``optax.inject_hyperparams``: the learning rate is optimiser state, which
:func:`~dcnn_dd.train.state.train_step` sets every step from the schedule
(:func:`~dcnn_dd.train.state.with_learning_rate`), so no rate is given here.  Every other keyword
argument stays static, a Python constant as in a direct ``optax.adamw(...)`` call (injected as float32
arrays, Adam's b1, b2 and eps would round differently and change every trained number in the last
digits), so ``make_tx("adam")`` is exactly :func:`~dcnn_dd.train.state.default_tx`.

:func:`check_optimizer` is what :class:`~dcnn_dd.train.Config` runs on its ``*optimizer`` fields:
an unknown name, an unknown keyword or a value the optimiser refuses is a one-line ``ValueError``
(the close names, or the valid keywords) before anything is written.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
from collections.abc import Callable

import jax
import optax

OPTIMIZERS: dict[str, Callable] = {}  # your own, by register_optimizer

# the parameters an optimiser is tried on when a configuration is checked (abstract: a bias and a kernel)
TINY_PARAMS = {"b": jax.ShapeDtypeStruct((3,), "float32"), "w": jax.ShapeDtypeStruct((2, 3), "float32")}


def register_optimizer(name: str, fn: Callable) -> None:
    """Make ``fn(learning_rate, **kwargs) -> optax.GradientTransformation`` available to the
    engine as ``Config(optimizer={"name": name, **kwargs})``.  A name of optax cannot be replaced."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"optimizer name {name!r}: give a non-empty string")
    if not callable(fn):
        raise TypeError(f"register_optimizer({name!r}, ...): give a callable, got {type(fn).__name__}")
    if "learning_rate" not in _parameters(fn):
        raise TypeError(f"register_optimizer({name!r}, ...): {getattr(fn, '__name__', fn)!r} has no learning_rate "
                        "argument (the engine sets the rate through it)")
    if name in optax_names():
        raise ValueError(f"optimizer name {name!r} is optax.{name}; choose another name")
    if OPTIMIZERS.get(name, fn) is not fn:
        raise ValueError(f"optimizer name {name!r} is already registered (to {OPTIMIZERS[name]!r}); choose another name")
    OPTIMIZERS[name] = fn


def _parameters(fn) -> dict:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


@functools.cache
def optax_names() -> tuple[str, ...]:
    """The optax functions that take a ``learning_rate``: the names :func:`make_tx` finds on optax."""
    out = []
    for name in dir(optax):
        fn = getattr(optax, name)
        if name.startswith("_") or isinstance(fn, type) or not callable(fn):
            continue
        if "learning_rate" in _parameters(fn):
            out.append(name)
    return tuple(sorted(out))


def optimizer_spec(spec, field: str = "optimizer") -> tuple[str, dict]:
    """``(name, keyword arguments)`` of a spec (``"adam"`` or ``{"name": "adamw", ...}``), lists as
    tuples; a malformed spec is a ``ValueError`` naming ``field``."""
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        name, kwargs = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise ValueError(f"{field}={spec!r}: give an optimiser name (e.g. 'adam') or a dict with its 'name' and "
                         "keyword arguments, e.g. {'name': 'adamw', 'weight_decay': 1e-4}")
    return name, {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def optimizer_fn(name: str, field: str = "optimizer") -> Callable:
    """The function a name stands for: a registered one, else ``optax.<name>``."""
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    if name in optax_names():
        return getattr(optax, name)
    known = sorted({*OPTIMIZERS, *optax_names()})
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    raise ValueError(f"{field}: unknown optimiser {name!r}" + (f" (did you mean {', '.join(map(repr, close))}?)"
                     if close else "") + "; give any optax optimiser with a learning_rate argument (e.g. 'adam', "
                     "'adamw', 'sgd', 'lion', 'rmsprop') or one registered with dcnn_dd.train.register_optimizer")


def make_tx(spec="adam", field: str = "optimizer") -> optax.GradientTransformation:
    """The optimiser of ``spec`` with its learning rate injected as optimiser state (set by
    :func:`~dcnn_dd.train.state.train_step` every step; 0 until then) and every other argument
    static.  ``make_tx("adam")`` is :func:`~dcnn_dd.train.state.default_tx`."""
    name, kwargs = optimizer_spec(spec, field)
    fn = optimizer_fn(name, field)
    params = _parameters(fn)
    if "learning_rate" in kwargs:
        raise ValueError(f"{field}={spec!r}: the learning rate is the phase's schedule (the *_lr fields), not an "
                         "argument of the optimiser")
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    bad = sorted(k for k in kwargs if k not in params and not takes_any)
    if bad:
        valid = [p for p in params if p != "learning_rate" and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
        raise ValueError(f"{field}={spec!r}: {name} has no argument {', '.join(map(repr, bad))}; its arguments are "
                         f"{', '.join(valid) or 'none besides learning_rate'}")
    static = tuple(p for p in params if p != "learning_rate")
    return optax.inject_hyperparams(fn, static_args=static)(learning_rate=0.0, **kwargs)


def check_optimizer(spec, field: str = "optimizer") -> None:
    """``spec`` builds, and its ``init`` and ``update`` run (abstractly, on a tiny parameter tree):
    an unknown name, an unknown keyword or a value the optimiser refuses is a one-line
    ``ValueError`` naming ``field``."""
    name, _ = optimizer_spec(spec, field)
    make_tx(spec, field)  # the name and the keywords
    _check(json.dumps(spec, sort_keys=True, default=repr), optimizer_fn(name, field), f"{field}={spec!r}")


@functools.lru_cache(maxsize=256)
def _check(key: str, fn, what: str) -> None:
    """The values, once per spec (and function): a Config is checked whenever it is made."""
    spec = json.loads(key)
    tx = make_tx(spec)
    try:
        jax.eval_shape(lambda p: tx.update(p, tx.init(p), p), TINY_PARAMS)
    except Exception as e:  # noqa: BLE001 - the optimiser's own complaint, in one line
        why = " ".join(f"{type(e).__name__}: {e}".split())
        raise ValueError(f"{what}: {optimizer_spec(spec)[0]} cannot run as the engine steps it "
                         f"(tx.update(grads, state, params)): {why[:300]}") from None


def same_optimizer(a, b) -> bool:
    """Whether two specs name the same optimiser with the same arguments (``"adam"`` and
    ``{"name": "adam"}`` included)."""
    return optimizer_spec(a) == optimizer_spec(b)


__all__ = ["OPTIMIZERS", "TINY_PARAMS", "check_optimizer", "make_tx", "optax_names", "optimizer_fn",
           "optimizer_spec", "register_optimizer", "same_optimizer"]
