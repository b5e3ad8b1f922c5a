"""Pytrees of network variables: path strings, stacks of K networks, initialisation.

Every package uses these - the composition (:mod:`dcnn_dd.composition`), the models, the
MGRIT solver and the training engine - so they live here, below all of them.

* paths:  :func:`path_str` (``'params/Conv_0/kernel'`` for a key path), :func:`leaves_by_path`
* stacks: :func:`stack` (K trees -> one tree with a leading axis K), :func:`unstack`,
  :func:`take` (network k of a stack), :func:`pad` (repeat the last network up to a length)
* variables: :func:`init_variables` (``model.init`` on zeros, without ``intermediates``),
  :func:`split_variables` (``params`` and the other collections)
* calls: :func:`call_kwargs` (``train=`` for models that take it, Dropout's ``rngs``)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

DROP = ("intermediates",)  # collections the models ``sow`` for inspection; never kept


def path_str(path) -> str:
    """'params/Conv_0/kernel' for a jax key path."""
    parts = []
    for p in path:
        for attr in ("key", "name", "idx"):
            if hasattr(p, attr):
                parts.append(str(getattr(p, attr)))
                break
        else:
            parts.append(str(p))
    return "/".join(parts)


def leaves_by_path(tree) -> dict[str, object]:
    """``{path string: leaf}`` of a pytree."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {path_str(p): v for p, v in flat}


def stack(trees: Sequence):
    """K sub-network variable trees -> one tree with a leading axis K."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, K: int) -> list:  # noqa: N803
    """The inverse of :func:`stack`: K trees."""
    return [take(tree, k) for k in range(K)]


def take(tree, k: int):
    """Network ``k`` of a stacked tree."""
    return jax.tree_util.tree_map(lambda a: a[k], tree)


def pad(tree, length: int):
    """A stacked tree padded to ``length`` networks with copies of its last one."""

    def one(a):
        extra = length - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])

    return jax.tree_util.tree_map(one, tree)


def init_variables(model, key, input_shape) -> dict:
    """``model.init`` on zeros of ``input_shape`` (with batch), without ``intermediates``."""
    variables = model.init(key, jnp.zeros(tuple(input_shape), jnp.float32), **call_kwargs(model, False))
    return {k: v for k, v in dict(variables).items() if k not in DROP}


def split_variables(variables) -> tuple[Any, dict]:
    """``(params, the other collections)``, without ``intermediates``."""
    variables = {k: v for k, v in dict(variables).items() if k not in DROP}
    params = variables.pop("params")
    return params, variables


@functools.cache
def _takes(cls: type, method: str, arg: str) -> bool:
    """Whether ``cls.method`` takes a keyword ``arg`` (or any keyword); inspected once per class."""
    try:
        params = inspect.signature(getattr(cls, method)).parameters
    except (TypeError, ValueError, AttributeError):
        return True  # no signature to read: pass it, as before
    return arg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def call_kwargs(model, train: bool, rng=None) -> dict:
    """The keyword arguments of ``model.init`` / ``model.apply`` in the engine: ``train`` where the
    model takes it (a Linen module's ``__call__``, any other model's ``apply``: one without it is
    called without it), and ``rngs={"dropout": rng}`` when ``rng`` is given (Linen's Dropout
    stream; a model whose ``apply`` takes no ``rngs`` is called without them)."""
    import flax.linen as nn

    linen = isinstance(model, nn.Module)
    kw = {}
    if _takes(type(model), "__call__" if linen else "apply", "train"):
        kw["train"] = train
    if rng is not None and (linen or _takes(type(model), "apply", "rngs")):
        kw["rngs"] = {"dropout": rng}
    return kw
