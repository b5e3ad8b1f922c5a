"""The training engine: Algorithm 1 of Gu et al. as a resumable, concurrent, data-parallel run.

==================  ==========================================================================
``state``           ``TrainState``, the pure ``train_step`` / ``eval_step`` of one network
``concurrent``      the K sub-network problems at once: ``vmap``, ``sequential``, ``shard_map``,
                    and ``choose`` (measure, then pick)
``parallel``        ``data`` / ``subnet`` meshes, ``NamedSharding``, global arrays (multi-process)
``schedules``       the paper's piecewise learning rates and the sqrt(10) plateau rule
``checkpoint``      run directories, orbax checkpoints, config checks, damaged-checkpoint errors
``loop``            the epoch loop: resume mid-epoch, Ctrl-C, NaN guard, progress bars
``algorithm1``      GNet-R, SNets -> compose -> GNet-T; summary, ``metrics.jsonl``, plots
``config``          the run configuration, model and grid builders
``plots``           accuracy curves (Fig. 3.2 style) and phase-time bars (Fig. 3.1 style)
``distributed``     ``jax.distributed.initialize`` from command-line flags (loopback, Slurm)
==================  ==========================================================================
"""

from dcnn_dd.train.checkpoint import CheckpointError, ConfigMismatchError, RunDir
from dcnn_dd.train.concurrent import STRATEGIES, choose, kmap
from dcnn_dd.train.config import Config, build_grid, build_model, register_model
from dcnn_dd.train.loop import Interrupted, NonFiniteLossError, Phase, run_phase
from dcnn_dd.train.schedules import PAPER_SCHEDULES, Piecewise, Plateau
from dcnn_dd.train.state import TrainState, create_state, eval_step, train_step

__all__ = [
    "PAPER_SCHEDULES", "STRATEGIES", "CheckpointError", "Config", "ConfigMismatchError", "Experiment", "Interrupted",
    "NonFiniteLossError", "Phase", "Piecewise", "Plateau", "RunDir", "TrainState", "build_grid", "build_model", "register_model",
    "choose", "create_state", "eval_step", "kmap", "run", "run_phase", "summary_table", "train_step",
]


def __getattr__(name):  # the pipeline pulls in the data package; import it on first use
    if name in ("Experiment", "run", "summary_table"):
        from dcnn_dd.train import algorithm1

        return getattr(algorithm1, name)
    raise AttributeError(name)
