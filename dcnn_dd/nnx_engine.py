"""A Flax NNX model in the engine: Algorithm 1, the CNN-DNN and the experiments train it by name.

Register the ``nnx.Module`` class (or a ``functools.partial`` of it) with
:func:`dcnn_dd.train.register_model`; ``Config(model={"name": ..., **kwargs})`` then builds an
:class:`NNXNet`, the engine-facing object with the interface the engine uses for Linen modules:
``init(key, x, train=False)``, ``apply(variables, x, train=False, mutable=...)`` and
``subnet(K)``.  What the class must provide:

* ``__init__(..., num_classes, input_shape, rngs, **kwargs)``: the network for inputs of
  ``input_shape`` = ``(H, W, C)`` (one sample, no batch) - an NNX layer fixes its input width when
  it is built, so the engine builds the global network for the images and the sub-networks for
  the sub-images;
* ``subnet(self, K, *, input_shape, rngs)``: the same network with its hidden widths divided by K
  ((2.7)-(2.8)), built for ``input_shape`` (the sub-images).  The engine calls it on the global
  network built (abstractly, no weights) for the sub-images: only its configuration is read;
* ``__call__(x)`` (train / eval mode by ``module.train()`` / ``module.eval()``, the NNX way) or
  ``__call__(x, train=False)``.

Why not ``flax.nnx.bridge.ToLinen``: the bridge gives the same variable layout (one collection per
Variable type, ``{'params': {'conv1': {'kernel': ...}}, 'batch_stats': {'bn': ...}}``, which this
wrapper also uses), but the wrapped NNX layers are invisible to Linen, so
:func:`~dcnn_dd.planning.plan_for`'s verification would see only the network's output, not each
layer's, and could neither name a deviating layer nor tell that a BatchNorm is in inference
mode.  :class:`NNXNet` runs the module through :class:`~dcnn_dd.nnx_adapter.NNXModel`, which
records every submodule's call: the plan is verified layer by layer as for Linen, its leaf paths
are the module's own attribute paths under the collection (``params/conv1/kernel``), and the
composition is the same exact block-diagonal one.

``init(key)`` builds the module with ``nnx.Rngs(key)`` (so the K sub-networks, initialised with K
keys, start independently); ``apply`` merges the values into a fresh copy of the module (built
once per input shape, abstractly) and returns the updated ``batch_stats`` when they are mutable,
as Linen does.  Without ``train`` the module runs in eval mode (Linen's ``train=False``).
Random streams (``nnx.Dropout(rate, rngs=rngs)``, or any layer that keeps an ``nnx.Rngs``): the
engine's training step passes ``rngs={"dropout": key}`` as for Linen (a key per step and per
sub-network, from the seed and the phase), and ``apply`` merges the module with fresh streams
drawn from that key (:func:`~dcnn_dd.nnx_adapter.reseeded`: each stream's key is the given one
folded with the stream's path, its count 0).  The streams' state is not a variable: it is neither
checkpointed nor composed, and a resumed run draws the same masks.  Evaluation runs in eval mode
(no draws).  Regional pooling
(``model={"pooling": "regional"}``) is a Linen zoo option and not applied to NNX models.
``subnet(K)`` tries the class's ``subnet`` at once, abstractly, on 224x224x3 inputs, so a width
that K does not divide is an error when the configuration is checked, as for Linen.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping

from dcnn_dd.nnx_adapter import NNXModel, flax_nnx


PROBE_SHAPE = (224, 224, 3)  # inputs on which subnet(K) is tried when K is given (see NNXNet._probe)


def nnx_class(factory):
    """The ``nnx.Module`` subclass a factory builds (the class itself, or a ``functools.partial``
    of it), or None for anything else (e.g. a Linen module class)."""
    from flax import nnx

    while isinstance(factory, functools.partial):
        factory = factory.func
    return factory if isinstance(factory, type) and issubclass(factory, nnx.Module) else None


def is_nnx_factory(factory) -> bool:
    return nnx_class(factory) is not None


def _bind_check(fn, what: str, *args, **kwargs) -> None:
    """A ``TypeError`` naming ``what`` where ``fn`` cannot take these arguments.  ``fn``: a
    function, an ``nnx.Module`` class (its ``__init__``; NNX's metaclass hides the signature) or a
    ``functools.partial`` of one."""
    while isinstance(fn, functools.partial):
        args, kwargs = (*fn.args, *args), {**fn.keywords, **kwargs}
        fn = fn.func
    if isinstance(fn, type):
        fn, args = fn.__init__, (None, *args)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{what}: {e}") from None


@dataclasses.dataclass(frozen=True, eq=False)
class NNXNet:
    """A registered NNX model as the engine uses it (see the module doc): the global network
    (``K=None``) or its sub-network for ``K``, built for the input shape it is called on."""

    name: str
    factory: Callable
    kwargs: Mapping
    K: int | None = None  # noqa: N815
    _models: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    pooling = None  # the engine's regional pooling is for the Linen zoo
    leaf_prefix = "params/"  # where a layer's leaves live (dcnn_dd.verify)

    @classmethod
    def build_spec(cls, name: str, factory, kwargs: Mapping) -> NNXNet:
        """The engine's object for ``factory(**kwargs)``; a ``ValueError`` (as for Linen) where the
        class has no ``subnet`` or does not take the arguments."""
        klass = nnx_class(factory)
        if not callable(getattr(klass, "subnet", None)):
            raise ValueError(f"model {name!r}: {klass.__name__} has no subnet(K) method, which gives the "
                             "sub-network with widths divided by K ((2.7)-(2.8)); see register_model")
        try:
            _bind_check(factory, f"{klass.__name__}(...)", input_shape=(1, 1, 1), rngs=None, **kwargs)
        except TypeError as e:
            raise ValueError(f"model {name!r}: {e} (an NNX model is built as factory(num_classes=..., "
                             "input_shape=(H, W, C), rngs=nnx.Rngs(key), **kwargs))") from None
        return cls(name, factory, dict(kwargs))

    def __repr__(self) -> str:
        return f"NNXNet({self.name!r}{'' if self.K is None else f', subnet K={self.K}'})"

    # ------------------------------------------------------------------ building
    def subnet(self, K: int) -> NNXNet:  # noqa: N803
        """The sub-network for ``K``: the class's ``subnet(K, input_shape=..., rngs=...)``, called
        when the shape of the sub-images is known (at ``init`` / ``apply``)."""
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"K={K!r}: expected an integer >= 1")
        if self.K is not None:
            raise ValueError(f"{self!r} is already a sub-network")
        klass = nnx_class(self.factory)
        self_arg = (None,) if inspect.isfunction(klass.subnet) else ()  # a plain method, not a classmethod
        _bind_check(klass.subnet, f"{klass.__name__}.subnet", *self_arg, K, input_shape=(1, 1, 1), rngs=None)
        sub = dataclasses.replace(self, K=K, _models={})
        sub._probe()
        return sub

    def _probe(self) -> None:
        """The user's ``subnet(K)`` tried at once, abstractly, on inputs of :data:`PROBE_SHAPE`, so a
        width that K does not divide is an error when the configuration is checked (as for Linen),
        not when the sub-networks are first initialised.  Where the global network cannot be built
        for that shape (a class that insists on its own), the check waits for the real shape."""
        nnx = flax_nnx()
        try:
            nnx.eval_shape(lambda: self.factory(input_shape=PROBE_SHAPE, rngs=nnx.Rngs(0), **self.kwargs))
        except Exception:  # noqa: BLE001 - not this shape: checked at the first init instead
            return
        nnx.eval_shape(lambda: self.build(PROBE_SHAPE, nnx.Rngs(0)))

    def build(self, input_shape, rngs):
        """The ``nnx.Module`` for inputs of ``input_shape`` (one sample, ``(H, W, C)``)."""
        nnx = flax_nnx()
        shape = tuple(int(n) for n in input_shape)
        if self.K is None:
            module = self.factory(input_shape=shape, rngs=rngs, **self.kwargs)
        else:
            template = nnx.eval_shape(lambda: self.factory(input_shape=shape, rngs=nnx.Rngs(0), **self.kwargs))
            module = template.subnet(self.K, input_shape=shape, rngs=rngs)
        what = f"{self.name}" + ("" if self.K is None else f".subnet({self.K})")
        if not isinstance(module, nnx.Module):
            raise TypeError(f"model {what} built a {type(module).__name__}, not an nnx.Module")
        return module

    def model(self, input_shape) -> NNXModel:
        """The module's graph for inputs of ``input_shape`` (built once per shape, abstractly)."""
        shape = tuple(int(n) for n in input_shape)
        if shape not in self._models:
            nnx = flax_nnx()
            self._models[shape] = NNXModel(nnx.eval_shape(lambda: self.build(shape, nnx.Rngs(0))), collections=True)
        return self._models[shape]

    # ------------------------------------------------------------------ Linen's face
    def init(self, key, x, *args, train: bool = False, **kwargs) -> dict:
        """Fresh variables ``{'params': ..., 'batch_stats': ...}``: the module built with
        ``nnx.Rngs(key)`` for inputs shaped like ``x`` (checked to run on ``x``)."""
        module = self.build(x.shape[1:], flax_nnx().Rngs(key))
        return NNXModel(module, collections=True).init(key, x, *args, train=train, **kwargs)

    def apply(self, variables, x, *args, train: bool = False, **kwargs):
        """As Linen's ``apply``: the output, or with ``mutable`` (output, mutable collections);
        ``rngs={"dropout": key}``: the module's random streams, drawn from ``key``."""
        return self.model(x.shape[1:]).apply(variables, x, *args, train=train, **kwargs)

    def module_kinds(self, variables, x, init_kwargs: Mapping | None = None):
        """Every called submodule's path -> (class name, a few attributes) (for verify)."""
        kw = {"train": False, **dict(init_kwargs or {})}
        return self.model(x.shape[1:]).module_kinds(variables, x, kw)


__all__ = ["NNXNet", "is_nnx_factory", "nnx_class"]
