"""Layer-parallel training of ODE-ResNets with MGRIT (Guenther et al. 2020, Sec. 4): layer-serial
training against exact layer-parallel and simultaneous (one-shot) layer-parallel training.

    python -m experiments.layer_parallel --preset paper       # the paper's sizes (hours on a CPU)
    python -m experiments.layer_parallel --preset gpu-small   # fewer layers and steps
    python -m experiments.layer_parallel --preset cpu-smoke   # minutes on 2 CPU cores
    python -m experiments.layer_parallel --preset tiny        # seconds (the test suite)
    python -m experiments.layer_parallel --set steps=50 --set budget=3   # any Problem field, both problems

Two problems, each trained three ways from the same initial parameters with Adam
(:mod:`dcnn_dd.layer_parallel.train`):

* ``peaks`` - the paper's 2-D, 5-class "peaks" problem (generated, :mod:`dcnn_dd.layer_parallel.data`),
  a dense ODE-ResNet (width 8, tanh, T = 5), full-batch gradient steps;
* ``fashion`` - Fashion-MNIST (offline IDX files) with a convolutional ODE-ResNet (3x3 opening conv
  with stride 2 to 14x14, 3x3 SAME convolutions in the residual steps, dense classifier), minibatches.

Methods: ``serial`` (``jax.grad`` through the ``lax.scan``), ``exact`` (MGRIT forward and adjoint to
``rtol`` = 1e-5 of the initial residual, at most 30 iterations, from u_0 at every layer: a warm start
would shrink the initial residual that ``rtol`` is relative to, down to float32 rounding), ``one-shot`` (the paper's simultaneous
variant: ``budget`` forward and adjoint iterations per step; for peaks the states are warm-started from
the previous step; for Fashion-MNIST the batch changes every step, so the previous states are not a
warm start for it and every solve starts from u_0 at every layer - a deviation from the paper's
full-batch setting).  The validation accuracy is always computed with the serial forward pass of
the current parameters.  Wall time counts the optimiser steps only (compiled ahead, evaluation
excluded).  Every training step reports both solves' iteration counts; per layer-parallel method the
results record the most iterations used and how many solves used all ``max_iter`` (for ``exact`` such a
solve may not have reached ``rtol``: a ``RuntimeWarning`` and a line in the notes say so; otherwise
the notes state that every solve stopped at ``rtol``).  Outputs under ``results/layer_parallel/``: ``results.json`` / ``results.md``,
``peaks.png`` and ``fashion.png`` (loss and validation accuracy against iterations and against wall
time).

Presets (N = layers, m = coarsening factor):

* ``paper`` - peaks: N = 1024, 5000 / 1000 points, 1000 steps; fashion: N = 256, 8 channels, all
  60,000 images, batch 100, 3000 steps; m = 4, levels down to >= 4 coarse steps.  Not run here.
* ``gpu-small`` - peaks N = 256, 500 steps; fashion N = 64, 4 channels, 20,000 images, 1000 steps.
* ``cpu-smoke`` - peaks N = 64 (3 levels), 2000 / 1000 points, 300 steps; fashion N = 16 (2 levels),
  4 channels, 5000 / 1000 images, batch 100, 150 steps.  Measured on 2 CPU cores: 155 s wall;
  validation accuracy peaks serial / exact / one-shot 0.935 / 0.937 / 0.876, fashion 0.813 / 0.813
  / 0.815; layer-parallel steps 10-20x slower than serial in wall time on one CPU device.
* ``tiny`` - peaks N = 8, fashion N = 8, a few steps; seconds, mostly compilation; nothing is learnt.

What it should reach: the three methods' curves against iterations lie on top of each other for
``exact`` (same gradients to the tolerance) and close for ``one-shot`` (inexact gradients, the
paper's observation that they train about as well); on this CPU the layer-parallel methods are
slower in wall time (no parallel hardware: the chunks run one after another).

``--set key=value`` changes a field of both problems (:class:`~experiments.layer_parallel.config.Problem`:
``n_layers``, ``steps``, ``lr``, ``cfactor``, ``budget``, ``rtol``, ...) on top of the preset.
Layout: :mod:`experiments.layer_parallel.config` (the presets), :mod:`.analysis` (data, training,
table, notes), :mod:`.figures`.
"""

from experiments.layer_parallel.analysis import load, main, run, train_problem
from experiments.layer_parallel.config import PRESETS, Problem
from experiments.layer_parallel.figures import draw

__all__ = ["PRESETS", "Problem", "draw", "load", "main", "run", "train_problem"]
