"""What a network learns: its loss, its metrics with their directions, and the composed head.

A :class:`Task` is a small frozen record the engine scores outputs with: the per-sample ``loss``
that training minimises, the per-sample ``metrics`` that every evaluation averages (recorded as
``val_<name>``, with ``val_loss`` always among them), each metric's direction (``max``: higher is
better), the metric that drives the plateau rule, GNet-T's stopping rule and the time-to-target by
default (``monitor``), and how the K sub-networks' outputs compose (``head``).  ``Config.task``
names one of the registry, :data:`TASKS`:

==================  ====================================  =================================  ==========  ===========
task                loss (per sample)                     metrics ``val_<name>``              monitor     head
==================  ====================================  =================================  ==========  ===========
``classification``  softmax cross-entropy, integer        ``acc``, ``top5`` (max),            ``val_acc`` sum (2.14),
                    labels (N,)                           ``loss`` (min)                                  (2.16)
``regression``      squared error, mean over the          ``mse``, ``mae``, ``loss`` (min)    ``val_loss`` mean (2.22)
                    target's entries; float targets
``multilabel``      sigmoid cross-entropy, mean over      ``label_acc``, ``exact`` (max),     ``val_loss`` sum (2.14)
                    the C labels; 0/1 targets (N, C)      ``loss`` (min)
==================  ====================================  =================================  ==========  ===========

The output width of the network (the zoo's ``num_classes`` argument) is the number of classes for
``classification``, and ``prod(target_shape)`` otherwise (:meth:`Task.output_width`): the network
outputs a flat vector, and the losses and metrics flatten each target alike.  ``multilabel``
monitors ``val_loss`` (smooth, where the exact-match accuracy moves in coarse steps on a small
validation set); ``Config.monitor='val_label_acc'`` is the other natural choice.

Your own loss: :func:`register_task` with a record of your own, e.g. a Huber-loss regression::

    import dataclasses, optax
    from dcnn_dd.train import REGRESSION, Config, register_task

    def huber(outputs, targets):  # per sample: outputs (B, n), targets (B, *target_shape)
        return optax.huber_loss(outputs, targets.reshape(outputs.shape), delta=1.0).mean(-1)

    register_task("huber", dataclasses.replace(REGRESSION, name="huber", loss=huber))
    config = Config(task="huber", ...)          # monitor 'auto': val_loss (the Huber loss), min

The metric functions run inside the jitted steps (JAX arrays in and out); the engine sums them
over the unmasked samples of each evaluation batch and divides by the count.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
import optax

TARGET_KINDS = ("labels", "binary", "values")  # integer class labels; 0/1 vectors; floats of any shape
MODES = ("max", "min")


# ==================================================================== per-sample losses and metrics
def cross_entropy(logits, labels):
    """Softmax cross-entropy with integer labels, per sample (the classification loss)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def correct(logits, labels):
    """1 where the largest logit is the label's (top-1), per sample."""
    return jnp.argmax(logits, -1) == labels


def top_k_correct(logits, labels, k: int = 5):
    """1 where the label is among the ``k`` largest logits (all of them when there are fewer
    classes); ties are counted as a hit only when the label's logit is strictly among the top k:
    the label is a hit iff fewer than k classes have a strictly larger logit."""
    label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)
    return jnp.sum(logits > label_logit, axis=-1) < k


def top5_correct(logits, labels):
    """:func:`top_k_correct` with k = 5 (``val_top5``)."""
    return top_k_correct(logits, labels, 5)


def _rows(outputs, targets):
    """``outputs`` (B, n) and ``targets`` (B, *target_shape) as two (B, n) float arrays."""
    return outputs.reshape(outputs.shape[0], -1), targets.reshape(targets.shape[0], -1).astype(outputs.dtype)


def squared_error(outputs, targets):
    """Mean over the target's entries of (output - target)^2, per sample (the regression loss, MSE)."""
    o, t = _rows(outputs, targets)
    return jnp.mean((o - t) ** 2, -1)


def absolute_error(outputs, targets):
    """Mean over the target's entries of |output - target|, per sample (MAE)."""
    o, t = _rows(outputs, targets)
    return jnp.mean(jnp.abs(o - t), -1)


def sigmoid_cross_entropy(logits, targets):
    """Sigmoid (binary) cross-entropy of each of the C labels, averaged over them, per sample
    (the multi-label loss); ``targets`` 0/1 of shape (B, C)."""
    o, t = _rows(logits, targets)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(o, t), -1)


def label_accuracy(logits, targets):
    """The fraction of the C labels predicted right (logit > 0 for a 1), per sample."""
    o, t = _rows(logits, targets)
    return jnp.mean((o > 0) == (t > 0.5), -1)


def exact_match(logits, targets):
    """1 where all C labels are predicted right (subset accuracy), per sample."""
    o, t = _rows(logits, targets)
    return jnp.all((o > 0) == (t > 0.5), -1)


# ==================================================================== the record
@dataclasses.dataclass(frozen=True)
class Task:
    """How the engine scores a network's outputs (see the module docstring).

    ``loss(outputs, targets) -> (B,)``: the per-sample loss, its batch mean is minimised;
    ``metrics``: ``{name: fn(outputs, targets) -> (B,)}``, per-sample values that evaluation
    averages into ``val_<name>`` (``val_loss``, the loss's average, is always recorded besides);
    ``directions``: ``{name: 'max' | 'min'}`` for every metric (the loss is ``min``);
    ``monitor``: the default monitored record key (``'val_<name>'``);
    ``head``: ``'sum'`` (the composed outputs are the sum of the sub-networks', (2.14), (2.16)) or
    ``'mean'`` (their mean, (2.22): regression);
    ``targets``: what :meth:`check` accepts - ``'labels'`` (integer class labels, (N,)),
    ``'binary'`` (0/1 vectors, (N, C)) or ``'values'`` (float targets of any shape);
    ``train_metric``: a metric whose batch mean the training step reports as ``accuracy`` (the
    epoch record's ``train_acc``), or None."""

    name: str
    loss: Callable
    metrics: Mapping[str, Callable]
    directions: Mapping[str, str]
    monitor: str = "val_loss"
    head: str = "sum"
    targets: str = "values"
    train_metric: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "metrics", types.MappingProxyType(dict(self.metrics)))
        object.__setattr__(self, "directions", types.MappingProxyType(dict(self.directions)))
        where = f"Task {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Task name {self.name!r}: give a non-empty string")
        if not callable(self.loss):
            raise TypeError(f"{where}: loss must be callable (outputs, targets) -> per-sample losses (B,)")
        bad = [k for k, f in self.metrics.items() if not isinstance(k, str) or not k or not callable(f)]
        if bad or "loss" in self.metrics:
            raise ValueError(f"{where}: metrics must map names (not 'loss', recorded anyway) to callables, got "
                             f"{sorted(map(str, self.metrics))}")
        if set(self.directions) != set(self.metrics) or any(v not in MODES for v in self.directions.values()):
            raise ValueError(f"{where}: directions must give 'max' or 'min' for every metric {sorted(self.metrics)}, "
                             f"got {dict(self.directions)}")
        if self.monitor not in self.keys:
            raise ValueError(f"{where}: monitor={self.monitor!r}: choose one of {list(self.keys)}")
        if self.head not in ("sum", "mean"):
            raise ValueError(f"{where}: head={self.head!r}: choose 'sum' (classification, (2.14)) or 'mean' "
                             "(regression, (2.22))")
        if self.targets not in TARGET_KINDS:
            raise ValueError(f"{where}: targets={self.targets!r}: choose one of {list(TARGET_KINDS)}")
        if self.train_metric is not None and self.train_metric not in self.metrics:
            raise ValueError(f"{where}: train_metric={self.train_metric!r} is not one of its metrics "
                             f"{sorted(self.metrics)}")

    # ---------------------------------------------------------------- names and directions
    @property
    def names(self) -> tuple[str, ...]:
        """The metric names evaluation reports: the task's metrics, then ``loss``."""
        return (*self.metrics, "loss")

    @property
    def keys(self) -> tuple[str, ...]:
        """The epoch records' validation keys: ``val_<name>`` for each of :attr:`names`."""
        return tuple(f"val_{m}" for m in self.names)

    def direction(self, name: str) -> str:
        """``'max'`` or ``'min'`` for a metric name (``loss``: min)."""
        return "min" if name == "loss" else self.directions[name]

    def monitored(self, monitor: str = "auto", mode: str = "auto") -> tuple[str, str]:
        """``(record key, 'max' | 'min')`` of the metric that drives the plateau rule, the stopping
        rule and the time-to-target (``Config.monitor`` / ``Config.monitor_mode``; ``auto``: the
        task's default, the metric's declared direction)."""
        key = self.monitor if monitor == "auto" else monitor
        if key not in self.keys:
            raise ValueError(f"monitor={monitor!r}: the task {self.name!r} records {list(self.keys)}; choose one of "
                             f"them, or 'auto' ({self.monitor})")
        if mode == "auto":
            return key, self.direction(key[len("val_"):])
        if mode not in MODES:
            raise ValueError(f"monitor_mode={mode!r}: choose 'max' (higher is better), 'min' or 'auto'")
        return key, mode

    # ---------------------------------------------------------------- the data
    def check(self, source, role: str = "training") -> None:
        """A one-line ``ValueError`` where ``source``'s targets do not fit the task: integer labels
        for a float task or float targets for classification, labels out of range, non-0/1
        multi-label targets, a target shape the task does not take.  Reads the source's
        ``target_shape`` (default ``()``), ``num_classes`` and its targets: all of them where it holds
        them in memory (a ``targets`` or ``labels`` array), else an evenly spaced sample of 128."""
        where = f"task={self.name!r}: the {role} data {getattr(source, 'name', '')!r}"
        shape = tuple(getattr(source, "target_shape", ()))
        n = len(source)
        if n == 0:
            raise ValueError(f"{where} is empty")
        held = [a for a in (getattr(source, "targets", None), getattr(source, "labels", None))
                if isinstance(a, np.ndarray) and a.shape[:1] == (n,)]
        if held:
            t = held[0]
        else:
            idx = np.unique(np.linspace(0, n - 1, min(n, 128)).round().astype(np.int64))
            t = np.asarray(source.take(idx)[1])
        if t.shape[1:] != shape:
            raise ValueError(f"{where} gives targets of shape {t.shape[1:]} per sample, its target_shape is {shape}")
        integer = np.issubdtype(t.dtype, np.integer) or t.dtype == bool
        if self.targets == "labels":
            if shape != () or not integer:
                what = f"targets of shape {shape}" if shape != () else f"{t.dtype} targets"
                raise ValueError(f"{where} has {what}: this task needs one integer class label per image (choose "
                                 "task='regression' for float targets, 'multilabel' for 0/1 vectors)")
            k = getattr(source, "num_classes", None)
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
                raise ValueError(f"{where} has num_classes={k!r}: this task needs the number of classes")
            if t.size and (t.min() < 0 or t.max() >= k):
                raise ValueError(f"{where} has labels {t.min()}..{t.max()}, outside 0..{k - 1} (num_classes={k})")
        elif self.targets == "binary":
            if len(shape) != 1 or shape[0] < 1:
                raise ValueError(f"{where} has targets of shape {shape}: this task needs 0/1 vectors of C labels, "
                                 "target_shape (C,)")
            if not np.isin(t, (0, 1)).all():
                raise ValueError(f"{where} has targets other than 0 and 1: this task needs 0/1 label vectors")
            k = getattr(source, "num_classes", None)
            if k is not None and k != shape[0]:
                raise ValueError(f"{where} has num_classes={k} but {shape[0]} labels per target")
        else:
            if integer:
                raise ValueError(f"{where} has integer ({t.dtype}) targets: this task needs float targets (e.g. "
                                 "targets.astype('float32')); choose task='classification' for class labels")
            if not np.isfinite(t).all():
                raise ValueError(f"{where} has non-finite targets (NaN or Inf)")

    def output_width(self, source) -> int:
        """The network's output width for ``source`` (the zoo's ``num_classes`` argument): its
        number of classes for class labels, else ``prod(target_shape)``."""
        if self.targets == "labels":
            return int(source.num_classes)
        return int(math.prod(tuple(getattr(source, "target_shape", ()))))

    def replace(self, **changes) -> Task:
        """A copy with ``changes`` (e.g. another ``loss``), checked again."""
        return dataclasses.replace(self, **changes)


def improved(value: float, best: float, mode: str) -> bool:
    """Whether ``value`` is strictly better than ``best`` in direction ``mode``."""
    return value > best if mode == "max" else value < best


def reached(value: float, target: float, mode: str) -> bool:
    """Whether ``value`` is at ``target`` or better in direction ``mode`` (the stopping rule and the
    time-to-target)."""
    return value >= target if mode == "max" else value <= target


# ==================================================================== the registry
CLASSIFICATION = Task("classification", cross_entropy, {"acc": correct, "top5": top5_correct},
                      {"acc": "max", "top5": "max"}, monitor="val_acc", head="sum", targets="labels",
                      train_metric="acc")
REGRESSION = Task("regression", squared_error, {"mse": squared_error, "mae": absolute_error},
                  {"mse": "min", "mae": "min"}, monitor="val_loss", head="mean", targets="values")
MULTILABEL = Task("multilabel", sigmoid_cross_entropy, {"label_acc": label_accuracy, "exact": exact_match},
                  {"label_acc": "max", "exact": "max"}, monitor="val_loss", head="sum", targets="binary",
                  train_metric="label_acc")

TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, REGRESSION, MULTILABEL)}
BUILTIN = tuple(TASKS)


def register_task(name: str, task: Task) -> None:
    """Make ``task`` available as ``Config(task=name)`` (stored under ``name``: its ``name``
    field is set to it).  A built-in name cannot be replaced; registering the same record again
    is fine.  See the module docstring for a Huber-loss example."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name {name!r}: give a non-empty string")
    if not isinstance(task, Task):
        raise TypeError(f"register_task({name!r}, ...): give a dcnn_dd.train.Task, got {type(task).__name__}")
    task = task if task.name == name else task.replace(name=name)
    if TASKS.get(name, task) != task:
        raise ValueError(f"task name {name!r} is already registered; choose another name")
    TASKS[name] = task


def get_task(name) -> Task:
    """The registered task ``name`` (a one-line error listing the known names otherwise)."""
    if isinstance(name, Task):
        return name
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"task={name!r}: choose one of {sorted(TASKS)} (or register your own with "
                         "dcnn_dd.train.register_task)")
    return TASKS[name]


def monitor_of(config) -> tuple[str, str]:
    """``(record key, 'max' | 'min')`` monitored by a configuration (``task``, ``monitor``,
    ``monitor_mode`` of a :class:`~dcnn_dd.train.config.Config`)."""
    return get_task(config.task).monitored(config.monitor, config.monitor_mode)
