"""What one configuration runs on: its data, models, grid, optimiser and device meshes.

:func:`build_setup` turns a :class:`~dcnn_dd.train.config.Config` into a :class:`Setup` record
(nothing is compiled or trained here).  The step builders of :mod:`.steps` and the runs of
:mod:`.composed_training` and :mod:`dcnn_dd.cnn_dnn` take a ``Setup``; so can your own code.
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from dcnn_dd import sharding
from dcnn_dd.composition import Plan
from dcnn_dd.data import augment as aug
from dcnn_dd.data import sources
from dcnn_dd.grid import Grid
from dcnn_dd.models.pooling import with_regional_pool
from dcnn_dd.planning import plan_for
from dcnn_dd.models.registry import build_model
from dcnn_dd.train.config import PHASE_OPTIMIZERS, Config, build_grid
from dcnn_dd.train.optimizers import make_tx, optimizer_spec
from dcnn_dd.train.tasks import CLASSIFICATION, Task, get_task
from dcnn_dd.tree import call_kwargs, init_variables

# Config fields a Setup is built from; Setup.reconfigured may change any other field.
BUILT_FROM = ("dataset", "train_size", "test_size", "val_fraction", "val_seed", "image_size", "model", "K", "grid",
              "augment", "batch_size", "eval_batch_size", "task")


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """Data, models, grid, optimiser and meshes of one configuration.

    ``model``: the global network (GNet); ``sub``: the sub-network (``model.subnet(K)``);
    ``plan``: how K trained ``sub`` compose into ``model`` ((2.11)-(2.14), checked layer by
    layer: :func:`~dcnn_dd.planning.plan_for`), derived in ``plan_s`` seconds (None for a setup
    built with ``plan=False``);
    ``data_mesh``: the global phases' data-parallel mesh; ``subnet_mesh``: the sub-network
    phase's mesh for ``shard_map`` (``subnet``, or ``subnet`` x ``data``: ``Config.subnet_layout``); ``eval_batch``: the evaluation batch, a multiple of the data
    mesh's devices; ``mean``: the training set's channel mean (the input normalisation, with the
    training source's ``pixel_scale``).  ``val_source``: what the per-epoch evaluation (plateau rule,
    stopping rule, time-to-target) runs on: the very ``test_source`` unless a validation split was
    held out (``Config.val_fraction``) or given (``build_setup(..., val=...)``).
    ``task``: the loss, metrics and composed head (:mod:`~dcnn_dd.train.tasks`, ``Config.task``).
    ``tx``: the configuration's ``optimizer`` (:func:`~dcnn_dd.train.optimizers.make_tx`), the
    default of every phase; ``txs``: the phases with an optimiser of their own (``snets``,
    ``gnet_t``, ``gnet_r``, from ``snet_optimizer``...), read with :meth:`tx_for`."""

    config: Config
    train_source: object
    test_source: object
    image_shape: tuple
    mean: np.ndarray
    augment: aug.Augment
    model: object
    sub: object
    grid: Grid
    tx: object
    plan: Plan | None
    plan_s: float
    data_mesh: jax.sharding.Mesh
    subnet_mesh: jax.sharding.Mesh
    eval_batch: int
    task: Task = CLASSIFICATION
    val_source: object = None  # None: the test source
    txs: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.val_source is None:
            object.__setattr__(self, "val_source", self.test_source)

    @property
    def pixel_scale(self) -> float:
        """What the images are divided by before the mean is subtracted: 255.0 (uint8) or 1.0 (float)."""
        return float(getattr(self.train_source, "pixel_scale", 255.0))

    @property
    def held_out(self) -> bool:
        """Whether validation is not the test set (a held-out or a given validation source)."""
        return self.val_source is not self.test_source

    def tx_for(self, phase: str | None = None):
        """The optimiser of ``phase`` (``"snets"``, ``"gnet_t"``, ``"gnet_r"``; any other name or
        None: the default one, ``tx``)."""
        return self.txs.get(phase, self.tx) if phase is not None else self.tx

    def prep(self, images, ids, epoch, train: bool):
        """Normalisation and (``train``) the augmentation of (seed, epoch, sample id), on device."""
        return aug.preprocess(images, ids, seed=self.config.seed, epoch=epoch, mean=self.mean, cfg=self.augment,
                              train=train, pixel_scale=self.pixel_scale)

    def data_record(self) -> dict:
        """What a run directory records of the data (``data.json``): the configuration's ``dataset``
        (a name, or a label), per split (``train``, ``val`` where it is not the test set, ``test``)
        :func:`dcnn_dd.data.describe` (size, shapes, classes, pixel scale, fingerprint), and the
        normalisation's ``mean``."""
        splits = {"train": self.train_source, **({"val": self.val_source} if self.held_out else {}),
                  "test": self.test_source}
        return {"dataset": self.config.dataset, **{k: sources.describe(v) for k, v in splits.items()},
                "mean": [float(m) for m in np.asarray(self.mean).reshape(-1)]}

    def reconfigured(self, **changes) -> Setup:
        """The same data, models and meshes under a configuration with other training settings
        (``seed``, ``strategy``, epochs, rates, optimisers...); a field the setup is built from
        cannot change."""
        built = sorted(set(changes) & set(BUILT_FROM))
        if built:
            raise ValueError(f"Setup.reconfigured: {built} change the data or models; build a new setup")
        config = self.config.replace(**changes)
        if {"optimizer", *PHASE_OPTIMIZERS.values()} & set(changes):
            tx, txs = optimizers(config)
            return dataclasses.replace(self, config=config, tx=tx, txs=txs)
        return dataclasses.replace(self, config=config)

    # ---------------------------------------------------------------- initial variables
    def global_init(self, key) -> dict:
        """GNet's initial variables (for GNet-R: key ``phase_keys(seed)[0]``)."""
        return init_variables(self.model, key, (1, *self.image_shape))

    def subnet_init(self, key) -> dict:
        """The K sub-networks' initial variables from K independent keys, stacked on axis 0 (on the host)."""
        keys = jax.random.split(key, self.config.K)
        shape = (1, *self.grid.sub_shape, self.image_shape[-1])
        return jax.tree.map(lambda *xs: np.stack(xs), *[jax.device_get(init_variables(self.sub, k, shape)) for k in keys])


def load_data(config: Config, *, train=None, test=None, val=None, data_path=None, data_dir=None) -> tuple:
    """``(train, val, test)``: the sources ``config`` trains, validates and tests on.

    ``train`` and ``test`` (together) are sources of your own (:func:`dcnn_dd.data.from_arrays`,
    :func:`~dcnn_dd.data.image_folder`, :func:`~dcnn_dd.data.tfds_source`, ...; ``config.dataset``
    is then a label), or None: ``config.dataset`` names them (:func:`dcnn_dd.data.load`, with
    ``data_path``, ``data_dir`` and ``config.image_size``).  Then ``train_size`` / ``test_size``
    cut them, and validation is ``val`` if given, else ``config.val_fraction`` of the training data
    held out (:func:`~dcnn_dd.data.holdout`, seeded with ``val_seed``), else the test source
    itself (the paper's protocol).  Each source is checked against the protocol and all against
    each other (:func:`~dcnn_dd.data.check_splits`): a one-line error otherwise."""
    c = config
    if (train is None) != (test is None):
        raise ValueError("pass train= and test= together (or neither: config.dataset names the data)")
    if val is not None and c.val_fraction > 0:
        raise ValueError(f"val_fraction={c.val_fraction} holds out validation data, and val= gives some: pass one")
    if train is None:
        kw = {"path": data_path, "data_dir": data_dir, "image_size": c.image_size}
        train, test = sources.load(c.dataset, "train", **kw), sources.load(c.dataset, "test", **kw)
    for split, src in (("train", train), ("test", test), *((("val", val),) if val is not None else ())):
        sources.check_source(src, f"the {split} data")
        if c.image_size is not None and tuple(src.image_shape[:2]) != tuple(c.image_size):
            raise ValueError(f"image_size={tuple(c.image_size)}, but the {split} data ({src.name}) has images of "
                             f"{tuple(src.image_shape[:2])}: resize them, or leave image_size None")
    if c.train_size is not None:
        train = train.subset(c.train_size)
    if c.test_size is not None:
        test = test.subset(c.test_size)
    if c.val_fraction > 0:
        train, val = sources.holdout(train, c.val_fraction, seed=c.val_seed)
    sources.check_splits(train=train, val=val, test=test)
    return train, (test if val is None else val), test



def models_for(config: Config, image_shape, num_classes):
    """``(model, sub, grid)`` of ``config`` for images of ``image_shape`` (H, W, C) and
    ``num_classes`` outputs (classes, or the task's output width): the global network, the sub-network (``model.subnet(K)``) and the grid,
    as :func:`build_setup` builds them (and :func:`~dcnn_dd.train.trained.load_trained` again, from a
    run directory, without the data)."""
    c = config
    model = build_model(c.model, num_classes, c.dtype)
    grid = build_grid(c.grid, image_shape)
    if grid.K != c.K:
        raise ValueError(f"the grid has {grid.K} sub-images, K={c.K}")
    if getattr(model, "pooling", None) == "regional":  # the regions come from the grid
        model = with_regional_pool(model, grid, (1, *image_shape))
    return model, model.subnet(c.K), grid



def build_setup(config: Config, *, train=None, test=None, val=None, data_path=None, data_dir=None,
                num_devices: int | None = None, plan: bool = True) -> Setup:
    """Make ``config``'s device meshes, load its data, build its models and grid, and derive and
    check the plan that composes them (with the head of ``config.task``), in that order; the data's
    targets are checked against the task (:meth:`~dcnn_dd.train.tasks.Task.check`), and the
    network's output width is the task's (the classes, or ``prod(target_shape)``).  Every check that
    can fail does so here, before anything is trained or written (a network that cannot be composed
    included).  ``train``, ``test`` (together), ``val``: sources of your own instead of
    ``config.dataset``'s (:func:`load_data`).  ``plan=False``: no plan (``setup.plan`` None), for a
    setup that only times or trains the networks and never composes them (:mod:`~dcnn_dd.train.timing`)."""
    c = config  # a Config checks its fields when it is made
    if c.augment not in aug.PRESETS:
        raise ValueError(f"augment={c.augment!r}: choose one of {sorted(aug.PRESETS)}")
    # ---- meshes (an invalid num_devices or batch size fails before the data is loaded)
    data_mesh = sharding.data_mesh(num_devices)
    subnet_mesh = sharding.subnet_mesh(c.K, num_devices, c.subnet_layout)
    sharding.check_batch(c.batch_size, data_mesh)  # then also by the D/K devices of a sub-network mesh's row
    # ---- data
    train_source, val_source, test_source = load_data(c, train=train, test=test, val=val, data_path=data_path,
                                                      data_dir=data_dir)
    image_shape = tuple(train_source.image_shape)
    # ---- the task: targets that fit it, the network's output width (classes, or prod(target_shape))
    task = get_task(c.task)
    task.check(train_source, "training")
    task.check(test_source, "test")
    if val_source is not test_source:
        task.check(val_source, "validation")
    width = task.output_width(train_source)
    if task.output_width(test_source) != width:
        raise ValueError(f"task={c.task!r}: the training data has {width} outputs per target, the test data "
                         f"{task.output_width(test_source)}")
    mean = np.asarray(sources.channel_mean(train_source), np.float32)
    # ---- models and grid
    model, sub, grid = models_for(c, image_shape, width)
    check_outputs(c, model, sub, grid, image_shape, width, task)
    # ---- the plan (2.11)-(2.14) with the task's head ((2.14) sum, (2.22) mean), checked; its time is
    # charged to GNet-T's pipeline (compose_s)
    t0 = time.perf_counter()
    checked = plan_for(model, sub, grid, input_shape=(1, *image_shape), head=task.head) if plan else None
    plan_s = time.perf_counter() - t0 if plan else 0.0
    tx, txs = optimizers(c)
    n = data_mesh.devices.size
    return Setup(config=c, train_source=train_source, test_source=test_source, image_shape=image_shape, mean=mean,
                 augment=aug.PRESETS[c.augment], model=model, sub=sub, grid=grid, tx=tx, plan=checked,
                 plan_s=plan_s, data_mesh=data_mesh, subnet_mesh=subnet_mesh,
                 eval_batch=-(-c.eval_batch_size // n) * n, task=task, val_source=val_source, txs=txs)


def check_outputs(config: Config, model, sub, grid: Grid, image_shape, width: int, task) -> None:
    """The network and its sub-network give ``width`` outputs per sample (the classes, or the
    task's ``prod(target_shape)``), shapes only (``jax.eval_shape``, nothing computed): a model that
    keeps its own output width (a factory without ``num_classes``) or is given another
    ``num_classes`` in its spec is a one-line error here, before anything is written."""
    for net, shape, what in ((model, (1, *image_shape), "the network"),
                             (sub, (1, *grid.sub_shape, image_shape[-1]), "its sub-network")):
        def outputs(net=net, shape=shape):
            variables = init_variables(net, jax.random.PRNGKey(0), shape)
            return net.apply(variables, jnp.zeros(shape, jnp.float32), **call_kwargs(net, False))

        out = jax.eval_shape(outputs)
        if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[-1] != width:
            got = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"model {config.model}: {what} gives outputs of shape {got} per batch, the task "
                             f"{config.task!r} on these data needs (batch, {width}) (the classes, or the targets' "
                             "size): give the model a num_classes argument (the engine sets it) or the right width")


def optimizers(config: Config) -> tuple[object, dict]:
    """``(tx, txs)`` of a :class:`Setup`: the configuration's ``optimizer`` and each phase's
    (:data:`~dcnn_dd.train.config.PHASE_OPTIMIZERS`), one transformation per distinct spec (so
    phases with the same optimiser share their compiled steps); the configuration checked them
    when it was made."""
    built: dict = {}

    def tx_of(spec):
        key = json.dumps(optimizer_spec(spec), sort_keys=True, default=repr)  # "adam" is {"name": "adam"}
        if key not in built:
            built[key] = make_tx(spec)
        return built[key]

    return tx_of(config.optimizer), {phase: tx_of(config.optimizer_for(phase)) for phase in PHASE_OPTIMIZERS}
