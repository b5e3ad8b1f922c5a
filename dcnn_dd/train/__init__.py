"""The training engine: Algorithm 1 of Gu et al. (and the CNN-DNN) as resumable runs of phases.

A configuration goes down one path: :class:`Config` -> :func:`build_setup` (checks, meshes, data,
models, grid, the checked plan) -> the step builders of :mod:`.steps` -> a list of phases ->
:func:`run_phases` (epoch loop, checkpoints, metrics) -> the summary.

=====================  =====================================================================
``config``             :class:`Config` (JSON-able), the grid builder; ``register_model`` and
                       ``build_model`` (the registry, :mod:`dcnn_dd.models.registry`)
``setup``              :class:`Setup`: what one configuration runs on; :func:`build_setup`
``tasks``              ``Task``: the loss, the metrics and their directions, the composed head;
                       ``classification``, ``regression`` (2.22), ``multilabel``, ``register_task``
``state``              ``TrainState``, the pure ``train_step`` / ``eval_step`` of one network
                       (for a task), the optimiser's rate as its state, Dropout's streams
                       (``phase_rng``), the composed optimiser state
``optimizers``         any optax optimiser by name (``make_tx``), ``register_optimizer``
``steps``              the jitted steps: data-parallel (global) and stacked (K sub-networks),
                       ``evaluate``, ``Steps`` (one pipeline's compiled steps), strategy choice
``loop``               the epoch loop of one phase: resume mid-epoch, Ctrl-C, NaN guard, bars
``phases``             ``Train`` / ``Deferred`` / ``Compute`` entries and ``run_phases``
``composed_training``  Algorithm 1 as a phase list, one function per phase: GNet-R, SNets ->
                       compose -> GNet-T; ``run_algorithm1`` (an ``Algorithm1Result``: the
                       summary, its time-to-accuracy figures, the trained variables)
``schedules``          the paper's piecewise learning rates, per-step warm-up / cosine
                       (``schedule_from_json``) and the sqrt(10) plateau rule (max/min)
``trained``            the trained networks out of a run directory: ``load_trained``, ``Trained.predict``
                       (with the training preprocessing)
``checkpoint``         run directories, orbax checkpoints, config checks, damaged-checkpoint errors, the
                       run-directory lock
``timing``             seconds per step and memory of one configuration (Tables 3.2, 3.4)
``plots``              accuracy curves (Fig. 3.2 style) and phase-time bars (Fig. 3.1 style)
``distributed``        ``initialize``: join a multi-process run (Slurm, or a coordinator); CLI flags
=====================  =====================================================================

Meshes, ``kmap`` and the strategies live one floor down in :mod:`dcnn_dd.sharding`, pytree
helpers in :mod:`dcnn_dd.tree`, the theorem checks in :mod:`dcnn_dd.theorems`.
"""

from dcnn_dd.models.registry import build_model, register_model
from dcnn_dd.train import distributed  # noqa: F401  (dcnn_dd.train.distributed.initialize)
from dcnn_dd.train.checkpoint import CheckpointError, ConfigMismatchError, RunDir, RunDirInUseError
from dcnn_dd.train.config import Config, build_grid
from dcnn_dd.train.loop import Interrupted, NonFiniteLossError, Phase, TrainData, run_phase
from dcnn_dd.train.optimizers import make_tx, register_optimizer
from dcnn_dd.train.schedules import PAPER_SCHEDULES, Piecewise, Plateau, schedule_from_json
from dcnn_dd.train.state import TrainState, create_state, default_tx, eval_step, phase_rng, train_step
from dcnn_dd.train.tasks import CLASSIFICATION, MULTILABEL, REGRESSION, TASKS, Task, get_task, register_task

# these pull in the data package (the input pipeline): imported on first use
_LAZY = {
    "setup": ("Setup", "build_setup"),
    "steps": ("Steps", "choose_strategy", "data_parallel_eval_step", "data_parallel_train_step", "epoch_metrics",
              "evaluate", "global_eval_step", "global_state", "global_train_step", "subnet_eval_step",
              "subnet_sharding", "subnet_state", "subnet_train_step", "with_rng"),
    "phases": ("Compute", "Deferred", "Train", "run_phases"),
    "composed_training": ("Algorithm1Result", "algorithm1_phases", "phase_keys", "run_algorithm1", "summary_table"),
    "trained": ("Trained", "load_trained"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "PAPER_SCHEDULES", "CheckpointError", "Config", "ConfigMismatchError", "Interrupted", "NonFiniteLossError", "Phase",
    "Piecewise", "Plateau", "RunDir", "RunDirInUseError", "TrainData", "TrainState", "build_grid", "build_model",
    "create_state", "default_tx", "eval_step", "make_tx", "phase_rng", "register_model", "register_optimizer",
    "run_phase", "schedule_from_json", "train_step", *sorted(_WHERE),
    "CLASSIFICATION", "MULTILABEL", "REGRESSION", "TASKS", "Task", "get_task", "register_task",
]


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"dcnn_dd.train.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'dcnn_dd.train' has no attribute {name!r}")
