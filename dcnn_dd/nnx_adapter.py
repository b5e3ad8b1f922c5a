"""Flax NNX modules and states in the functional API (the NNX dialect).

:func:`~dcnn_dd.planning.plan_for`, :func:`~dcnn_dd.verify.check_composition`,
:func:`~dcnn_dd.composition.compose` and :func:`~dcnn_dd.composition.decompose` take either dialect:

* **Linen**: ``nn.Module`` definitions and variable dicts ``{collection: {...}}``; leaf paths
  ``params/Conv_0/kernel``, ``batch_stats/BatchNorm_0/mean``.
* **NNX**: ``nnx.Module`` instances (global and one sub-network, each built for its own input
  size, since an NNX layer fixes its input width when it is built) and ``nnx.State`` objects
  (``nnx.split`` / ``nnx.state``).  Leaf paths are the state's own attribute paths, without a
  collection: ``conv1/kernel``, ``bn/mean``, ``blocks/0/kernel`` (an ``nnx.List`` index is a path
  element).  ``compose(plan, state)`` returns an ``nnx.State`` with the same Variable types
  (``nnx.Param``, ``nnx.BatchStat``, ...) that ``nnx.update(global_model, state)`` and
  ``nnx.merge(graphdef, state)`` accept; ``decompose`` returns the sub-networks' state stacked on
  axis 0, as ``nnx.split`` of K sub-networks built under ``nnx.vmap`` holds it.

:mod:`dcnn_dd.composition` itself knows only nested dicts: this module registers ``nnx.State`` with
it (:func:`~dcnn_dd.composition.register_tree_kind`, when the package is imported), so
``compose(plan, state)`` and ``decompose(plan, state)`` take and return states.

The plan covers every ``nnx.Variable`` of the model except RNG state (``nnx.RngState``: keys and
counts of a module's own ``nnx.Rngs``, not weights) and sown values (``nnx.Intermediate``).  Those
are dropped from a state given to compose / decompose; ``nnx.update`` keeps the model's own.

:class:`NNXModel` gives an ``nnx.Module`` the two methods the machinery uses, Linen's
``init(key, x)`` and ``apply(variables, x, capture_intermediates=..., mutable=...)``, with the
variables as the pure dict of the module's state (``nnx.to_pure_dict``).  ``init`` returns the
module's current values: an NNX module is initialised when it is built, so the key is unused.
``capture_intermediates`` records the output of every submodule's ``__call__``, as Linen does, so
:func:`~dcnn_dd.verify.check_composition` compares layer by layer without the model's cooperation.
It wraps ``__call__`` on the classes that define the submodules' ``__call__`` for the duration of
the call (as ``nnx.capture(..., method_outputs=...)`` wraps methods) and records the calls of the
module's own submodules; modules an ``nnx`` transform copies (e.g. layers under ``nnx.scan``) are
checked only through the module that calls the transform.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections.abc import Callable, Mapping

import jax

from dcnn_dd.composition import TreeKind, register_tree_kind

# attributes recorded per submodule (the same ones planning.module_kinds reads from Linen modules)
_ATTRS = ("feature_group_count", "use_running_average", "num_groups", "group_size", "padding", "num_heads")


def flax_nnx():
    """flax.nnx if it is imported (an object can only be an NNX object if it is)."""
    return sys.modules.get("flax.nnx")


def is_nnx_module(obj) -> bool:
    nnx = flax_nnx()
    return nnx is not None and isinstance(obj, nnx.Module)


def is_nnx_state(obj) -> bool:
    nnx = flax_nnx()
    return nnx is not None and isinstance(obj, nnx.State)


def unplanned_variables():
    """The Variable types a plan leaves out: RNG state and sown intermediates."""
    nnx = flax_nnx()
    return nnx.Any(nnx.RngState, nnx.Intermediate)


def state_path(path) -> str:
    """'conv1/kernel' for an ``nnx.State`` path tuple such as ``('conv1', 'kernel')``."""
    return "/".join(str(p) for p in path)


def planned_state(state):
    """The part of an ``nnx.State`` a plan covers (no RNG state, no sown intermediates)."""
    nnx = flax_nnx()
    return nnx.filter_state(state, nnx.Not(unplanned_variables()))


def state_leaves(state) -> dict[str, object]:
    """{leaf path: array} of the planned part of an ``nnx.State``."""
    return {state_path(p): v.get_value() for p, v in flax_nnx().to_flat_state(planned_state(state))}


def map_state(state, fn: Callable[[str, object], object]):
    """The planned part of ``state`` with every leaf's value replaced by ``fn(path, value)``: the
    same paths and Variable types (and metadata), new values."""
    nnx = flax_nnx()
    return nnx.map_state(lambda p, v: v.replace(fn(state_path(p), v.get_value())), planned_state(state))


class NNXModel:
    """An ``nnx.Module`` with Linen's ``init`` / ``apply``, for :func:`~dcnn_dd.planning.plan_for`
    and :func:`~dcnn_dd.verify.check_composition` (see the module doc).  The module itself is
    never changed: every ``apply`` runs a fresh ``nnx.merge`` of its graph and the given values.

    ``collections=False`` (the functional API): the variables are the state's pure dict, leaf paths
    ``conv1/kernel``.  ``collections=True`` (the engine, :mod:`dcnn_dd.nnx_engine`): Linen's layout,
    one collection per Variable type named as ``flax.nnx.bridge`` names it
    (``nnx.variable_name_from_type``: ``params``, ``batch_stats``), leaf paths
    ``params/conv1/kernel``, and ``apply(..., mutable=[...])`` returns the mutable collections as
    Linen does.  ``train=`` (if given to ``init`` / ``apply``) goes to the module's ``__call__`` if
    that takes it, else it sets the mode with ``module.train()`` / ``module.eval()``."""

    def __init__(self, module, *, collections: bool = False):
        nnx = flax_nnx()
        self.module = module
        self.collections = collections
        self.graphdef, self.state, self.rest = nnx.split(module, nnx.Not(unplanned_variables()), ...)
        flat = list(nnx.to_flat_state(self.state))
        self._paths = [(p, self._leaf_name(p, v)) for p, v in flat]

    @property
    def leaf_prefix(self) -> str:
        """Where a layer's leaves live in the variables: ``params/`` in Linen's layout, else nothing."""
        return "params/" if self.collections else ""

    def _leaf_name(self, path, variable) -> str:
        name = state_path(path)
        return f"{collection_of(variable)}/{name}" if self.collections else name

    def __repr__(self) -> str:
        return f"NNXModel({type(self.module).__name__})"

    @property
    def name(self) -> str:
        return type(self.module).__name__

    # ------------------------------------------------------------------ Linen's face
    def variables(self) -> dict:
        """The module's current values as a pure dict (the ``variables`` of ``apply``)."""
        return self._as_variables(self.state)

    def _as_variables(self, state) -> dict:
        nnx = flax_nnx()
        if not self.collections:
            return nnx.to_pure_dict(state)
        out: dict = {}
        for path, v in nnx.to_flat_state(state):
            d = out.setdefault(collection_of(v), {})
            for p in path[:-1]:
                d = d.setdefault(str(p), {})
            d[str(path[-1])] = v.get_value()
        return out

    def init(self, key, x, *args, **kwargs) -> dict:
        """The module's current values (``key`` unused: an NNX module is initialised when built),
        after checking that the module runs on ``x`` (an NNX layer's input width is fixed when
        it is built, so a sub-network must be built for the sub-images)."""
        del key
        variables = self.variables()
        try:
            jax.eval_shape(lambda v, a: self.apply(v, a, *args, **kwargs), variables, x)
        except ZeroDivisionError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised with what to do about it
            raise ValueError(
                f"the NNX module {self.name} does not run on inputs of shape {tuple(x.shape)} "
                f"({type(e).__name__}: {e}); an NNX layer's input width is fixed when the module is built, "
                f"so build the global network for the global inputs and the sub-network for the sub-images"
            ) from e
        return variables

    def merged(self, variables, rng=None):
        """A fresh module with ``variables`` (a pure dict, arrays or tracers) in place; ``rng``: a
        key its random streams are drawn from (:func:`reseeded`), else the module's own."""
        nnx = flax_nnx()
        flat = dict(nnx.to_flat_state(self.state))
        leaves = _leaves(variables)
        missing = [name for _, name in self._paths if name not in leaves]
        if missing:
            raise ValueError(f"the variables lack leaves of the NNX module {self.name}: {missing[:5]}")
        new = nnx.from_flat_state([(p, flat[p].replace(leaves[name])) for p, name in self._paths])
        return nnx.merge(self.graphdef, new, self.rest if rng is None else reseeded(self.rest, rng))

    def apply(self, variables, x, *args, capture_intermediates: bool = False, mutable=False, rngs=None, **kwargs):
        """Run the module with ``variables``.  Like Linen: the output, or with ``mutable`` the pair
        (output, ``{'intermediates': ..., 'variables': ...}``), where ``intermediates`` holds every
        submodule's ``__call__`` outputs as Linen lays them out (``{'conv1': {'__call__': (y,)},
        '__call__': (out,)}``; capture_intermediates=True) and ``variables`` the values after the
        call (BatchNorm statistics in training mode change).  ``rngs={"dropout": key}`` (Linen's
        form): every random stream of the module (``nnx.Dropout``'s) is drawn from ``key``
        (:func:`reseeded`); the streams' state is not returned (it is not a variable)."""
        nnx = flax_nnx()
        module = self.merged(variables, None if rngs is None else rngs["dropout"])
        kwargs = set_mode(module, kwargs)
        caps: dict = {}
        if capture_intermediates:
            with recording(module, lambda path, mdl, kw, out: _store(caps, path, out)):
                out = _call(module, x, *args, **kwargs)
        else:
            out = _call(module, x, *args, **kwargs)
        if not mutable:
            return out
        after = self._as_variables(nnx.state(module, nnx.Not(unplanned_variables())))
        if self.collections:  # Linen: the mutable collections (and the captured intermediates)
            cols = None if mutable is True else ({mutable} if isinstance(mutable, str) else set(mutable))
            state = {c: t for c, t in after.items() if cols is None or c in cols}
        else:
            state = {"variables": after}
        if capture_intermediates:
            state["intermediates"] = caps
        return out, state

    def module_kinds(self, variables, x, init_kwargs: Mapping | None = None) -> dict[str, tuple[str, dict]]:
        """Every called submodule's path -> (class name, a few attributes), in the order the calls
        complete (children before their parents, the root last as '(output)'), from an abstract run."""
        kinds: dict[str, tuple[str, dict]] = {}

        def record(path, mdl, kw, out):
            attrs = {a: getattr(mdl, a) for a in _ATTRS if hasattr(mdl, a)}
            if "use_running_average" in kw and kw["use_running_average"] is not None:
                attrs["use_running_average"] = kw["use_running_average"]  # a call argument overrides
            kinds.setdefault(state_path(path) or "(output)", (type(mdl).__name__, attrs))

        def run(v, a):
            module = self.merged(v)
            kwargs = set_mode(module, dict(init_kwargs or {}))
            with recording(module, record):
                return _call(module, a, **kwargs)

        jax.eval_shape(run, variables, x)
        return kinds


def reseeded(rest, key):
    """``rest`` (a module's RNG state: the ``nnx.RngKey`` and ``nnx.RngCount`` of its streams, e.g.
    each ``nnx.Dropout``'s) with every stream's key ``fold_in(key, crc32(its path))`` and its count
    0: fresh streams from one raw key, different per stream, the same for the same key (so a
    training step's masks depend only on the key it is given, and a resumed run draws them again)."""
    import zlib

    import jax.numpy as jnp

    nnx = flax_nnx()

    def one(path, v):
        if isinstance(v, nnx.RngKey):
            salt = zlib.crc32(state_path(path).encode()) & 0x7FFFFFFF
            k = jax.random.fold_in(key, salt)
            return v.replace(k if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(k))
        if isinstance(v, nnx.RngCount):
            return v.replace(jnp.zeros((), jnp.uint32))
        return v

    return nnx.map_state(one, rest)


def collection_of(variable) -> str:
    """The Linen collection of an ``nnx.Variable``, as ``flax.nnx.bridge`` names it: ``params`` for
    ``nnx.Param``, ``batch_stats`` for ``nnx.BatchStat``, the registered or snake-case name else."""
    return flax_nnx().variable_name_from_type(type(variable), allow_register=True)


def takes_train(module) -> bool:
    """Whether the module's ``__call__`` takes a ``train`` argument (or any keyword)."""
    try:
        params = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return False
    return "train" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def set_mode(module, kwargs: Mapping) -> dict:
    """``kwargs`` for calling ``module``: a ``train`` argument stays where ``__call__`` takes it;
    otherwise it is removed and sets the mode as NNX does, ``module.train()`` (BatchNorm on the
    batch's statistics, updating the running ones; dropout on) or ``module.eval()``."""
    kwargs = dict(kwargs)
    if "train" not in kwargs or takes_train(module):
        return kwargs
    train = kwargs.pop("train")
    if not isinstance(train, bool):
        raise TypeError(f"train={train!r}: give True or False")
    module.train() if train else module.eval()
    return kwargs


def _call(module, *args, **kwargs):
    """``module(*args, **kwargs)`` inside ``nnx.capture`` with no Variable types: values the module
    sows (``Module.sow``) are discarded instead of being stored on it (deprecated outside capture)."""
    return flax_nnx().capture(lambda m, *a, **kw: m(*a, **kw))(module, *args, **kwargs)


def _leaves(tree) -> dict[str, object]:
    from dcnn_dd.tree import leaves_by_path

    return leaves_by_path(tree)


def _store(caps: dict, path: tuple, out) -> None:
    d = caps
    for p in path:
        d = d.setdefault(str(p), {})
    d["__call__"] = d.get("__call__", ()) + (out,)


@contextlib.contextmanager
def recording(module, record: Callable):
    """While active, every call of ``module`` or one of its submodules reports
    ``record(path, submodule, kwargs, output)`` when it returns (children before parents).
    ``__call__`` is wrapped on the classes that define it (restored on exit); calls of modules
    that are not ``module``'s own (e.g. copies inside an ``nnx`` transform) are not reported."""
    nnx = flax_nnx()
    keep = list(nnx.iter_modules(module))  # the modules stay alive, so their ids stay valid while recording
    paths = {id(m): p for p, m in keep}
    patched: dict[type, object] = {}

    def wrap(original):
        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            path = paths.get(id(self))
            if path is not None:
                record(path, self, kwargs, out)
            return out

        return wrapper

    try:
        for _, m in keep:
            owner = next((c for c in type(m).__mro__ if "__call__" in vars(c)), None)
            if owner is None or owner in patched:
                continue
            patched[owner] = vars(owner)["__call__"]
            setattr(owner, "__call__", wrap(patched[owner]))
        yield
    finally:
        for owner, original in patched.items():
            setattr(owner, "__call__", original)


def as_module(model):
    """A Linen module as it is; an ``nnx.Module`` as an :class:`NNXModel`."""
    return NNXModel(model) if is_nnx_module(model) else model


def as_modules(global_model, sub_model):
    """Both as :func:`as_module`; a ``ValueError`` where one is Linen and the other NNX."""
    g, s = as_module(global_model), as_module(sub_model)
    if isinstance(g, NNXModel) != isinstance(s, NNXModel):
        which = ("global network", "sub-network") if isinstance(g, NNXModel) else ("sub-network", "global network")
        raise ValueError(f"the {which[0]} is an nnx.Module and the {which[1]} a Linen module: give both in one dialect")
    return g, s


def _rebuild(state, values: Mapping):
    """``state``'s planned part with the values of ``values`` (by leaf path), same Variable types."""
    return map_state(state, lambda path, value: values[path])


# compose / decompose take and return nnx.State through this kind (dcnn_dd.composition knows only dicts)
register_tree_kind(TreeKind("nnx.State", is_nnx_state, state_leaves, _rebuild))

__all__ = ["NNXModel", "as_module", "as_modules", "collection_of", "is_nnx_module", "is_nnx_state", "map_state",
           "planned_state", "recording", "reseeded", "set_mode", "state_leaves", "state_path", "takes_train"]
