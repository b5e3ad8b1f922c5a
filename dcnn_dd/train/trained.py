"""Trained networks out of a run: :func:`load_trained` and :class:`Trained` (``predict``).

A run of Algorithm 1 (:func:`~dcnn_dd.train.composed_training.run_algorithm1`) leaves three trained
networks in its run directory: ``gnet_t`` (the composed network, fine-tuned), ``gnet_r`` (the
baseline, trained from random initialisation) and ``snets`` (the K sub-networks, stacked on axis 0).
:func:`load_trained` rebuilds one of them from the directory alone (``config.json``, the phase's
last checkpoint and ``preprocessing.json``, which the run writes before it trains: the training
set's channel mean, the pixel scale, the image shape and the number of classes), so no data is
needed.  :meth:`Trained.predict` applies exactly the preprocessing the engine evaluated with
(normalisation by the training mean, no augmentation; for the sub-networks the decomposition into
the K sub-images (2.6)) and the engine's evaluation step, so the argmax of ``predict`` on the raw
test images gives the accuracies of ``summary.json``.

:meth:`Algorithm1Result.trained <dcnn_dd.train.composed_training.Algorithm1Result.trained>` gives
the same record from a run just finished, without reading the checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dcnn_dd.data import augment as aug
from dcnn_dd.grid import Grid, decompose_input
from dcnn_dd.models import registry
from dcnn_dd.train.checkpoint import CheckpointError, PhaseCheckpoints, load_variables, read_json, write_json
from dcnn_dd.train.config import Config
from dcnn_dd.tree import call_kwargs

NETWORKS = ("gnet_t", "gnet_r", "snets")
PREPROCESSING = "preprocessing.json"


@dataclasses.dataclass(frozen=True, eq=False)
class Trained:
    """One trained network of a run and the preprocessing it was trained with.

    ``network``: ``"gnet_t"``, ``"gnet_r"`` or ``"snets"``; ``model``: the Flax module (the global
    network, or for ``snets`` the sub-network); ``variables``: its variables as host (numpy) arrays,
    for ``snets`` the K sub-networks stacked on axis 0; ``config``: the run's configuration;
    ``grid``: its sub-image grid; ``mean``: the training set's channel mean that the inputs are
    normalised by, and ``pixel_scale`` the scale images are divided by first (255 for uint8 images:
    ``x / 255 - mean``); ``finished``: False where the phase was interrupted (the variables are
    then those of its last checkpoint)."""

    network: str
    model: object
    variables: dict
    config: Config
    grid: Grid
    mean: np.ndarray
    pixel_scale: float = 255.0
    finished: bool = True

    def preprocess(self, images) -> jax.Array:
        """Raw images (N, H, W, C) -> the network's inputs: the normalisation the engine evaluates
        with (:meth:`dcnn_dd.train.setup.Setup.prep` with ``train=False``: no augmentation)."""
        ids = jnp.zeros(np.shape(images)[:1], jnp.int32)
        return aug.preprocess(images, ids, seed=self.config.seed, epoch=0, mean=self.mean,
                              cfg=aug.PRESETS[self.config.augment], train=False, pixel_scale=self.pixel_scale)

    @functools.cached_property
    def _forward(self):
        """The jitted evaluation: preprocessing, then the network in evaluation mode, as the
        engine's ``eval_step`` applies it (its outputs)."""
        model, grid = self.model, self.grid

        def one(variables, x):
            return model.apply(variables, x, **call_kwargs(model, False))

        if self.network == "snets":  # K sub-networks, each on its own sub-images (2.6)
            return jax.jit(lambda v, images: jax.vmap(one)(v, decompose_input(self.preprocess(images), grid)))
        return jax.jit(lambda v, images: one(v, self.preprocess(images)))

    def predict(self, images, batch_size: int | None = None) -> np.ndarray:
        """The network's outputs (logits) on raw ``images`` (N, H, W, C), as the training images
        came (e.g. uint8): (N, outputs), or for ``snets`` (K, N, outputs); outputs are the classes,
        or for regression the targets flattened (``prod(target_shape)``; for ``snets`` each
        sub-network's own estimate: the composed network's is their mean, (2.22)).  In batches of
        ``batch_size`` (default: the run's ``eval_batch_size``), the last one padded, as the
        engine evaluates."""
        images = np.asarray(images)
        uint8 = images.dtype == np.uint8
        if uint8 != (self.pixel_scale == 255.0):
            trained = "uint8 images (0..255)" if self.pixel_scale == 255.0 else "float images"
            raise ValueError(f"predict: {images.dtype} images, but this {self.network} was trained on {trained}: "
                             "pass them as the training data came (the normalisation divides by "
                             f"{self.pixel_scale:g} before subtracting the mean)")
        shape = tuple(self.input_shape)
        if images.ndim != len(shape) + 1 or tuple(images.shape[1:]) != shape:
            raise ValueError(f"predict: images of shape {images.shape}; this {self.network} takes (N, *{shape}), "
                             "the shape it was trained on")
        n = images.shape[0]
        if n == 0:
            raise ValueError("predict: no images")
        batch = int(batch_size or self.config.eval_batch_size)
        out = []
        for start in range(0, n, batch):
            x = images[start:start + batch]
            if x.shape[0] < batch:  # padded with the first sample, as dcnn_dd.data.pipeline.evaluate_batches
                x = np.concatenate([x, np.repeat(images[:1], batch - x.shape[0], axis=0)])
            out.append(np.asarray(self._forward(self.variables, x)))
        axis = 1 if self.network == "snets" else 0
        return np.concatenate(out, axis=axis)[(slice(None),) * axis + (slice(0, n),)]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image's shape (H, W, C), as the network was trained on (before decomposition)."""
        return (*self.grid.shape, int(np.shape(self.mean)[-1]))

    @classmethod
    def from_setup(cls, setup, network: str, variables, finished: bool = True) -> Trained:
        """The record of ``variables`` of ``network`` trained on ``setup`` (a run still in memory)."""
        check_network(network)
        return cls(network, setup.sub if network == "snets" else setup.model, variables, setup.config, setup.grid,
                   np.asarray(setup.mean, np.float32), setup.pixel_scale, finished)


def check_network(network: str) -> None:
    if network not in NETWORKS:
        raise ValueError(f"network={network!r}: choose one of {list(NETWORKS)}")


def write_preprocessing(run_dir, setup) -> None:
    """``<run_dir>/preprocessing.json`` (process 0; kept where it exists, so a resumed run keeps the
    values its checkpoints were trained with): what :func:`load_trained` needs besides the
    configuration and the checkpoints - the training set's channel mean (float32 values, exact in
    JSON), the pixel scale, the image shape and the output width the models are built for (the
    classes, or the task's ``prod(target_shape)``)."""
    path = Path(run_dir) / PREPROCESSING
    if jax.process_index() != 0 or path.exists():
        return
    write_json(path, {"mean": [float(m) for m in np.asarray(setup.mean, np.float32).reshape(-1)],
                      "pixel_scale": setup.pixel_scale, "image_shape": [int(n) for n in setup.image_shape],
                      "num_classes": setup.task.output_width(setup.train_source), "task": setup.config.task})


def load_trained(run_dir, network: str) -> Trained:
    """The trained ``network`` (``"gnet_t"``, ``"gnet_r"`` or ``"snets"``) of the Algorithm-1 run in
    ``run_dir``, from its last checkpoint, with the preprocessing it was trained with: a
    :class:`Trained` whose ``predict(images)`` takes raw images.  No data is read.  A model of your
    own must be registered (:func:`dcnn_dd.train.register_model`) under the run's name first, and so
    must a task of your own (:func:`dcnn_dd.train.register_task`).
    Every failure is one line (a ``ValueError`` or :class:`~dcnn_dd.train.checkpoint.CheckpointError`)."""
    from dcnn_dd.train.setup import models_for

    check_network(network)
    run_dir = Path(run_dir)
    cfg_file = run_dir / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{run_dir} holds no Algorithm-1 run (no config.json)")
    record = read_json(cfg_file, "it is not a run directory this version can read")
    if not isinstance(record, dict) or "config" not in record or "cnn_dnn" in record:
        raise CheckpointError(f"{run_dir} is not an Algorithm-1 run directory (its config.json has no 'config', or "
                              "is a CNN-DNN's: load from the run directory above it)")
    name = (record["config"].get("model") or {}).get("name")
    if name not in registry.MODELS:
        raise ValueError(f"{run_dir} was trained with model {name!r}, which is not registered: register it with "
                         "dcnn_dd.train.register_model before load_trained")
    config = Config.from_json(record["config"])
    prep_file = run_dir / PREPROCESSING
    if not prep_file.exists():
        raise CheckpointError(f"{run_dir} has no {PREPROCESSING} (a run from before it was written): re-run the same "
                              "command once to write it (a finished run trains nothing again)")
    prep = read_json(prep_file)
    with quiet_absl():  # orbax's warning about a metadata file these checkpoints do not need
        store = PhaseCheckpoints(run_dir.absolute() / "ckpt" / network)
        step = store.latest()
        meta = store.meta(step) if step is not None else {}
        store.close()
        if step is None:
            why = (f"{network}_epochs=0 in its configuration: it was not trained"
                   if getattr(config, f"{network}_epochs", 1) == 0 else "the run has not trained it yet: re-run it")
            raise CheckpointError(f"{run_dir} has no {network} checkpoint ({why})")
        variables = load_variables(run_dir, network, step)
    image_shape = tuple(int(n) for n in prep["image_shape"])
    model, sub, grid = models_for(config, image_shape, prep["num_classes"])
    return Trained(network, sub if network == "snets" else model, variables, config, grid,
                   np.asarray(prep["mean"], np.float32), float(prep["pixel_scale"]), bool(meta.get("done", False)))


@contextlib.contextmanager
def quiet_absl():
    """absl's log (orbax's) at ERROR level while the body runs."""
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


__all__ = ["NETWORKS", "Trained", "load_trained"]
