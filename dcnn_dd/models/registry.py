"""The model registry: names -> model factories (the zoo's and yours), and :func:`build_model`.

``Config(model={"name": ..., **kwargs})`` names a model; :func:`build_model` turns that spec into
the Flax module the engine trains (:mod:`dcnn_dd.train`).  :func:`register_model` adds a module
of your own under a name (Linen, or an NNX class: :mod:`dcnn_dd.nnx_engine`).  Also reachable as
``dcnn_dd.train.register_model`` / ``dcnn_dd.train.build_model``.
"""

from __future__ import annotations

from dcnn_dd import models

MODELS = {
    "plain": models.PlainCNN,
    "cifar_resnet": models.CifarResNet,
    "bottleneck_resnet": models.BottleneckResNet,
    "vgg16": models.VGG16,
    "resnet50": models.ResNet50,
    "resnet101": models.ResNet101,
    "dogs_cats": models.DogsCatsCNN,
}


def register_model(name: str, factory) -> None:
    """Make a model of your own available to the engine - Algorithm 1, the CNN-DNN, the experiments -
    as ``Config(model={"name": name, **kwargs})``.

    ``factory(num_classes=..., **kwargs)`` (typically the Flax module class itself; ``num_classes``
    only where it takes one) returns a module with ``__call__(x)`` or ``__call__(x, train=False)``
    (the engine passes ``train`` where the module takes it, and the Dropout stream as
    ``rngs={"dropout": key}``) and ``subnet(K)``, the same module with its hidden widths divided by
    K ((2.7)-(2.8); :func:`dcnn_dd.models.divide_widths` does the division with a clear error).
    List-valued kwargs arrive as tuples.  The composition rules are inferred from the shapes
    (:func:`dcnn_dd.plan_for`), as for any module.  A name of the zoo cannot be replaced.

    A Flax NNX model: register the ``nnx.Module`` class (or a ``functools.partial`` of it); it is
    built as ``cls(num_classes=..., input_shape=(H, W, C), rngs=nnx.Rngs(key), **kwargs)`` for the
    images and ``subnet(K, input_shape=..., rngs=...)`` gives the sub-network for the sub-images
    (:mod:`dcnn_dd.nnx_engine`)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name {name!r}: give a non-empty string")
    if not callable(factory):
        raise TypeError(f"register_model({name!r}, ...): the factory must be callable, got {type(factory).__name__}")
    if MODELS.get(name, factory) is not factory:
        raise ValueError(f"model name {name!r} is already registered (to {MODELS[name]!r}); choose another name")
    MODELS[name] = factory


def build_model(spec: dict, num_classes: int, dtype=None):
    """``{"name": "plain", "features": [32, 32, 64, 64], ...}`` -> the Flax module (a model of the
    zoo or one registered with :func:`register_model`; for an NNX class the engine's
    :class:`~dcnn_dd.nnx_engine.NNXNet`).  ``dtype``: the compute dtype (``Config.dtype``, e.g.
    ``"bfloat16"``; None or ``"float32"``: the model's own default), passed as ``dtype=`` to a
    factory that takes one (every model of the zoo does); a factory that takes none is a one-line
    error for any other dtype than float32."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"model name {name!r}: choose one of {sorted(MODELS)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    if dtype is not None and str(dtype) != "float32":
        if "dtype" in kwargs:
            raise ValueError(f"model {name!r}: dtype is given twice, in the model spec ({kwargs['dtype']!r}) and as the "
                             f"configuration's compute dtype ({dtype!r}): set Config.dtype only")
        if not takes_argument(MODELS[name], "dtype"):
            raise ValueError(f"model {name!r}: Config(dtype={str(dtype)!r}) needs a model factory with a dtype argument "
                             "(the compute dtype its layers get, e.g. nn.Conv(..., dtype=self.dtype)); "
                             f"{getattr(MODELS[name], '__name__', MODELS[name])!s} takes none: add one, or use "
                             "dtype='float32'")
        import jax.numpy as jnp

        kwargs["dtype"] = jnp.dtype(str(dtype)).type
    from dcnn_dd.nnx_engine import NNXNet, is_nnx_factory

    if is_nnx_factory(MODELS[name]):  # built for its input shape when the engine initialises it
        return NNXNet.build_spec(name, MODELS[name], {"num_classes": num_classes, **kwargs})
    if takes_num_classes(MODELS[name]):  # else the module's own output width (e.g. the README's MyNet)
        kwargs.setdefault("num_classes", num_classes)
    try:
        model = MODELS[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r}: {e}") from e
    if not callable(getattr(model, "subnet", None)):
        raise ValueError(f"model {name!r}: {type(model).__name__} has no subnet(K) method, which gives the "
                         "sub-network with widths divided by K ((2.7)-(2.8)); see register_model")
    return model


def takes_num_classes(factory) -> bool:
    """Whether ``factory`` takes a ``num_classes`` argument (or any keyword): the engine passes the
    dataset's number of classes only to one that does."""
    return takes_argument(factory, "num_classes", unknown=True)


def takes_argument(factory, name: str, unknown: bool = False) -> bool:
    """Whether ``factory`` takes the keyword argument ``name`` (or any keyword); ``unknown`` where
    its signature cannot be read."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return unknown
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
