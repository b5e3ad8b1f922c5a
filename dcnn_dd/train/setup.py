"""What one configuration runs on: its data, models, grid, optimiser and device meshes.

:func:`build_setup` turns a :class:`~dcnn_dd.train.config.Config` into a :class:`Setup` record
(nothing is compiled or trained here).  The step builders of :mod:`.steps` and the runs of
:mod:`.composed_training` and :mod:`dcnn_dd.cnn_dnn` take a ``Setup``; so can your own code.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from dcnn_dd import sharding
from dcnn_dd.composition import Plan
from dcnn_dd.data import augment as aug
from dcnn_dd.data import sources
from dcnn_dd.grid import Grid
from dcnn_dd.models.pooling import with_regional_pool
from dcnn_dd.planning import plan_for
from dcnn_dd.train.config import Config, build_grid, build_model
from dcnn_dd.train.state import default_tx
from dcnn_dd.tree import init_variables

# Config fields a Setup is built from; Setup.reconfigured may change any other field.
BUILT_FROM = ("dataset", "train_size", "test_size", "image_size", "model", "K", "grid", "augment", "batch_size",
              "eval_batch_size")


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """Data, models, grid, optimiser and meshes of one configuration.

    ``model``: the global network (GNet); ``sub``: the sub-network (``model.subnet(K)``);
    ``plan``: how K trained ``sub`` compose into ``model`` ((2.11)-(2.14), checked layer by
    layer: :func:`~dcnn_dd.planning.plan_for`), derived in ``plan_s`` seconds (None for a setup
    built with ``plan=False``);
    ``data_mesh``: the global phases' data-parallel mesh; ``subnet_mesh``: the sub-network
    phase's mesh for ``shard_map``; ``eval_batch``: the evaluation batch, a multiple of the data
    mesh's devices; ``mean``: the training set's channel mean (the input normalisation)."""

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

    def prep(self, images, ids, epoch, train: bool):
        """Normalisation and (``train``) the augmentation of (seed, epoch, sample id), on device."""
        return aug.preprocess(images, ids, seed=self.config.seed, epoch=epoch, mean=self.mean, cfg=self.augment,
                              train=train)

    def reconfigured(self, **changes) -> Setup:
        """The same data, models and meshes under a configuration with other training settings
        (``seed``, ``strategy``, epochs, rates...); a field the setup is built from cannot change."""
        built = sorted(set(changes) & set(BUILT_FROM))
        if built:
            raise ValueError(f"Setup.reconfigured: {built} change the data or models; build a new setup")
        return dataclasses.replace(self, config=self.config.replace(**changes))

    # ---------------------------------------------------------------- initial variables
    def global_init(self, key) -> dict:
        """GNet's initial variables (for GNet-R: key ``phase_keys(seed)[0]``)."""
        return init_variables(self.model, key, (1, *self.image_shape))

    def subnet_init(self, key) -> dict:
        """The K sub-networks' initial variables from K independent keys, stacked on axis 0 (on the host)."""
        keys = jax.random.split(key, self.config.K)
        shape = (1, *self.grid.sub_shape, self.image_shape[-1])
        return jax.tree.map(lambda *xs: np.stack(xs), *[jax.device_get(init_variables(self.sub, k, shape)) for k in keys])


def models_for(config: Config, image_shape, num_classes):
    """``(model, sub, grid)`` of ``config`` for images of ``image_shape`` (H, W, C) and
    ``num_classes`` classes: the global network, the sub-network (``model.subnet(K)``) and the grid,
    as :func:`build_setup` builds them (and :func:`~dcnn_dd.train.trained.load_trained` again, from a
    run directory, without the data)."""
    c = config
    model = build_model(c.model, num_classes)
    grid = build_grid(c.grid, image_shape)
    if grid.K != c.K:
        raise ValueError(f"the grid has {grid.K} sub-images, K={c.K}")
    if getattr(model, "pooling", None) == "regional":  # the regions come from the grid
        model = with_regional_pool(model, grid, (1, *image_shape))
    return model, model.subnet(c.K), grid


def build_setup(config: Config, *, data_path=None, data_dir=None, num_devices: int | None = None,
                plan: bool = True) -> Setup:
    """Make ``config``'s device meshes, load its data, build its models and grid, and derive and
    check the plan that composes them, in that order.  Every check that can fail does so here,
    before anything is trained or written (a network that cannot be composed included).
    ``plan=False``: no plan (``setup.plan`` None), for a setup that only times or trains the
    networks and never composes them (:mod:`~dcnn_dd.train.timing`)."""
    c = config  # a Config checks its fields when it is made
    if c.augment not in aug.PRESETS:
        raise ValueError(f"augment={c.augment!r}: choose one of {sorted(aug.PRESETS)}")
    # ---- meshes (an invalid num_devices or batch size fails before the data is loaded)
    data_mesh, subnet_mesh = sharding.data_mesh(num_devices), sharding.subnet_mesh(c.K, num_devices)
    sharding.check_batch(c.batch_size, data_mesh)
    # ---- data
    kw = {"path": data_path, "data_dir": data_dir, "image_size": c.image_size}
    train_source = sources.load(c.dataset, "train", **kw)
    test_source = sources.load(c.dataset, "test", **kw)
    if c.train_size is not None:
        train_source = train_source.subset(c.train_size)
    if c.test_size is not None:
        test_source = test_source.subset(c.test_size)
    image_shape = tuple(train_source.image_shape)
    mean = np.asarray(sources.channel_mean(train_source), np.float32)
    # ---- models and grid
    model, sub, grid = models_for(c, image_shape, train_source.num_classes)
    # ---- the plan (2.11)-(2.14), checked; its time is charged to GNet-T's pipeline (compose_s)
    t0 = time.perf_counter()
    checked = plan_for(model, sub, grid, input_shape=(1, *image_shape)) if plan else None
    plan_s = time.perf_counter() - t0 if plan else 0.0
    n = data_mesh.devices.size
    return Setup(config=c, train_source=train_source, test_source=test_source, image_shape=image_shape, mean=mean,
                 augment=aug.PRESETS[c.augment], model=model, sub=sub, grid=grid, tx=default_tx(), plan=checked,
                 plan_s=plan_s, data_mesh=data_mesh, subnet_mesh=subnet_mesh,
                 eval_batch=-(-c.eval_batch_size // n) * n)
