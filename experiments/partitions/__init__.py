"""Section 3.1.2 of Gu et al.: Tables 3.4-3.5 and Figs. 3.5-3.6 (Food101, ResNet50/101, K = 4, 8, 16).

    python -m experiments.partitions --preset cpu-smoke   # offline, Fashion-MNIST stand-in, ~3 min on 2 CPU cores (measured 175 s)
    python -m experiments.partitions --preset tiny        # ~1.5 min; the test suite's variant
    python -m experiments.partitions --preset gpu-small   # Food101 (TFDS), ResNet50, 1/10 of the epochs
    python -m experiments.partitions --preset paper       # the paper's setting: days on 4 GPUs
    python -m experiments.report                          # then: results/REPORT.md

What runs: for each network, Algorithm 1 with K = 4, 8 and 16 partitions of the network and of
the input (GNet-R, the random-init baseline, once per network, in the K=4 run): Table 3.5 (top-1
and top-5 of GNet-T before and after training and of GNet-R), Fig. 3.6 (their validation curves),
Fig. 3.5 (training times of the two strategies); and Table 3.4: parameters and FLOPs of the
global network and one sub-network, and the time of 10 epochs of the global network and of the K
sub-networks, measured on one device and on all devices there are (the paper: 1 and 4 GPUs).

Input layouts (Section 3.1.2, :func:`dcnn_dd.grid.paper_grid`): K=4: 2x2 sub-images of 140x140 with
overlap; K=8: ours in the spirit of Fig. 3.4 - the K=4 rows split once more across the width,
2 rows x 4 columns of 140x80 with overlap; K=16: crop 24 px to 176x176, then 4x4 of 70x70 with
overlap.  The stand-in presets scale the same layouts to 28x28: 2x2 of 16x16; 2x4 of 16x10;
crop 2 px, 4x4 of 8x8.

Presets:

* ``paper``: Food101 (TFDS, 224x224; ``python -m dcnn_dd.data.prepare food101``), ResNet50 and
  ResNet101 with a 1024-wide hidden FC, batch 128, 300 iterations per epoch, the schedules of
  Section 3.1.2 (GNet-R 200 epochs, SNets 100, GNet-T 100, plateau rule), rotate/zoom/flip/shift
  augmentation.  Should reach Table 3.5 (GNet-T-4-trained ~75% top-1; GNet-T before training
  falling from ~49% (K=4) to ~14% (K=16) top-1).
* ``gpu-small``: Food101, ResNet50 only, the same schedules at 1/10 of the epochs.
* ``cpu-smoke``: Fashion-MNIST (10000 training / 2000 test images) standing in for Food101, a small
  bottleneck ResNet (stages of 1 block, widths 16/32, stem 16, hidden FC 64: divisible by 16)
  standing in for ResNet50; 30 iterations of batch 128 per epoch; the schedules at 1/20 of the
  epochs (GNet-R 10, SNets 5, GNet-T 5).
* ``tiny``: the cpu-smoke experiment at seconds scale with K = 4 and 16, for the tests (``vmap``:
  at this scale compilation dominates, and one vmapped sub-network compiles faster than 16
  unrolled ones).

Resumable: each Algorithm-1 run checkpoints under ``<out>/cases/``, each timing under ``<out>/timing/``.

``--set key=value`` changes a field of every :class:`~dcnn_dd.train.config.Config` of the preset
on top of it (``--set strategy=vmap``).  Layout: :mod:`experiments.partitions.config` (the
presets), :mod:`.analysis` (the runs, tables, notes), :mod:`.figures`.
"""

from experiments.partitions.analysis import (accuracy_entries, complexity_entries, main, notes, run, tables,
                                             timing_entries)
from experiments.partitions.config import (FASHION_GRIDS, FOOD_GRIDS, PRESETS, SMALL, Preset, cpu_smoke, gpu_small,
                                           paper, tiny)

__all__ = ["FASHION_GRIDS", "FOOD_GRIDS", "PRESETS", "SMALL", "Preset", "accuracy_entries", "complexity_entries",
           "cpu_smoke", "gpu_small", "main", "notes", "paper", "run", "tables", "timing_entries", "tiny"]
