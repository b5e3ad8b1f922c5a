"""The configuration of an Algorithm-1 run, as plain JSON-able data.

Everything that changes the trained parameters is in :class:`Config` and is stored in the run
directory; re-running with a different configuration is an error (resume needs the same one).
Settings that do not (progress bars, the data path, the run directory) are arguments of
:func:`dcnn_dd.train.algorithm1.run` instead.
"""

from __future__ import annotations

import dataclasses
import json

from dcnn_dd import models
from dcnn_dd.grid import Grid, paper_grid

MODELS = {
    "plain": models.PlainCNN,
    "cifar_resnet": models.CifarResNet,
    "bottleneck_resnet": models.BottleneckResNet,
    "vgg16": models.VGG16,
    "resnet50": models.ResNet50,
    "resnet101": models.ResNet101,
    "dogs_cats": models.DogsCatsCNN,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One run of Algorithm 1 (SNets -> compose -> GNet-T) and its GNet-R baseline.

    ``*_lr`` are :class:`~dcnn_dd.train.schedules.Piecewise` in JSON form (``{"base": 1e-3,
    "milestones": [[80, 0.1], ...]}``) or a constant.  ``extra_epochs``: GNet-T may train that
    many epochs beyond ``gnet_t_epochs`` until its validation accuracy reaches GNet-R's final
    one (for ``time_to_gnet_r_acc_s``); the paper's comparison uses ``gnet_t_epochs``.
    ``compose_opt_state``: GNet-T's Adam state is the sub-networks' composed like their weights
    (beyond the paper; default: a fresh optimiser, as in the paper).  Regional pooling for GAP
    networks is a model option: ``model={"name": "cifar_resnet", ..., "pooling": "regional"}``
    (:mod:`dcnn_dd.models.pooling`).
    Validation is the test split, as in the paper (Section 3: "10k validation images")."""

    dataset: str = "fashion_mnist_idx"
    train_size: int | None = None  # first n training samples (None: all)
    test_size: int | None = None
    image_size: tuple[int, int] | None = None  # resize (TFDS datasets with variable-size images)
    model: dict = dataclasses.field(default_factory=lambda: {"name": "plain"})
    K: int = 4  # noqa: N815
    grid: dict = dataclasses.field(default_factory=lambda: {"parts": 2, "size": 16})
    augment: str = "none"
    batch_size: int = 128
    steps_per_epoch: int | None = None  # None: full passes; Section 3.1.2: 300 batches per epoch
    eval_batch_size: int = 1000
    snet_epochs: int = 2
    gnet_t_epochs: int = 1
    gnet_r_epochs: int = 3
    extra_epochs: int = 0
    snet_lr: object = 1e-3
    gnet_t_lr: object = 1e-3
    gnet_r_lr: object = 1e-3
    plateau_patience: int | None = 5  # None: no plateau rule
    compose_opt_state: bool = False  # GNet-T starts from the SNets' composed Adam moments (train.state.compose_opt_state)
    strategy: str = "auto"  # vmap | sequential | shard_map | auto
    inner: str = "sequential"  # per-device strategy inside shard_map
    seed: int = 0

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, d: dict) -> Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if d.get("image_size") is not None:
            d["image_size"] = tuple(d["image_size"])
        return cls(**d)

    def replace(self, **kw) -> Config:
        return dataclasses.replace(self, **kw)


def register_model(name: str, factory) -> None:
    """Make a model of your own available to the engine - Algorithm 1, the CNN-DNN, the experiments -
    as ``Config(model={"name": name, **kwargs})``.

    ``factory(num_classes=..., **kwargs)`` (typically the Flax module class itself) returns a module
    with ``__call__(x, train=False)`` and ``subnet(K)``, the same module with its hidden widths
    divided by K ((2.7)-(2.8); :func:`dcnn_dd.models.divide_widths` does the division with a clear
    error).  List-valued kwargs arrive as tuples.  The composition rules are inferred from the shapes
    (:func:`dcnn_dd.plan_for`), as for any module.  A name of the zoo cannot be replaced."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name {name!r}: give a non-empty string")
    if not callable(factory):
        raise TypeError(f"register_model({name!r}, ...): the factory must be callable, got {type(factory).__name__}")
    if MODELS.get(name, factory) is not factory:
        raise ValueError(f"model name {name!r} is already registered (to {MODELS[name]!r}); choose another name")
    MODELS[name] = factory


def build_model(spec: dict, num_classes: int):
    """``{"name": "plain", "features": [32, 32, 64, 64], ...}`` -> the Flax module (a model of the
    zoo or one registered with :func:`register_model`)."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"model name {name!r}: choose one of {sorted(MODELS)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    kwargs.setdefault("num_classes", num_classes)
    try:
        model = MODELS[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r}: {e}") from e
    if not callable(getattr(model, "subnet", None)):
        raise ValueError(f"model {name!r}: {type(model).__name__} has no subnet(K) method, which gives the "
                         "sub-network with widths divided by K ((2.7)-(2.8)); see register_model")
    return model


def build_grid(spec: dict, image_shape) -> Grid:
    """``{"paper": "cifar-overlap"}``, ``{"parts": 2, "size": 16}`` (or ``overlap``/``crop``), or
    ``{"origins": [[0, 0], ...], "size": [16, 16]}`` for images of ``image_shape`` (H, W, C)."""
    spec = dict(spec)
    spatial = tuple(image_shape[:-1])
    if "paper" in spec:
        grid = paper_grid(spec["paper"])
    elif "origins" in spec:
        grid = Grid.from_origins(spatial, spec["origins"], spec["size"])
    else:
        grid = Grid.uniform(spatial, spec.pop("parts"), **spec)
    if grid.shape != spatial:
        raise ValueError(f"grid {spec} is for inputs {grid.shape}, the images are {spatial}")
    return grid
