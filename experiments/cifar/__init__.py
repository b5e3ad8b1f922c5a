"""Section 3.1.1 of Gu et al.: Tables 3.1-3.3 and Figs. 3.1-3.3 (CIFAR-10/100, ResNet32/56/110, K=4).

    python -m experiments.cifar --preset cpu-smoke    # offline, Fashion-MNIST stand-in, ~5 min on 2 CPU cores (measured 297 s)
    python -m experiments.cifar --preset tiny         # ~1.5 min; the test suite's variant
    python -m experiments.cifar --preset gpu-small    # CIFAR-10 (TFDS), ResNet32, 1/10 of the epochs
    python -m experiments.cifar --preset paper        # the paper's setting: days on 4 GPUs
    python -m experiments.report                      # then: results/REPORT.md, next to the paper's numbers
    python -m experiments.cifar --preset paper --batch-sizes 32,512,8192   # Table 3.2 at chosen batch sizes
    python -m experiments.cifar --preset tiny --set strategy=vmap   # any Config field, in every run (experiments.cli)

What runs (every preset): for each dataset and ResNet, Algorithm 1 with overlapping and with
non-overlapping 2x2 sub-images (GNet-R, the random-init baseline, is trained once per network,
in the overlap run), giving Table 3.3 (SNet-1..4, GNet-T untrained, GNet-T-trained,
GNet-R-trained), Fig. 3.1 (training times of both strategies), Fig. 3.2 (GNet-T against GNet-R
per epoch) and Fig. 3.3 (overlap against non-overlap); Table 3.1 (parameters and FLOPs of the
global network and one sub-network) from the model definitions; and Table 3.2, the training time
of 10 epochs of the global network against the 4 sub-networks for a sweep of batch sizes, with
and without augmentation, with the memory of each compiled step.

Presets:

* ``paper``: CIFAR-10 and CIFAR-100 (TFDS; prepare with ``python -m dcnn_dd.data.prepare cifar10``),
  ResNet32/56/110 with widths 64/128/256, sub-images 20x20 (overlap) and 16x16, batch 32, the
  schedules of Section 3.1.1 (GNet-R 200 epochs, SNets 120, GNet-T 80; plateau rule), flip+shift
  augmentation; sweep over batch sizes 32 ... 32768.  Should reach Table 3.3 (GNet-T-trained
  ~94% on CIFAR-10, ~74% on CIFAR-100; GNet-T before training above every SNet).
* ``gpu-small``: CIFAR-10, ResNet32, batch 128, the same schedules at 1/10 of the epochs; sweep
  128 ... 8192.  About an hour on one H100-class GPU.
* ``cpu-smoke``: Fashion-MNIST (6000 training / 2000 test images, 28x28) standing in for CIFAR-10;
  a CIFAR-style ResNet-8 (widths 16/32/64: same blocks, GAP, BatchNorm, same padding) standing in
  for ResNet32; sub-images 16x16 (overlap, origins 0 and 12) and 14x14; the paper's schedules at
  1/20 of the epochs (GNet-R 10, SNets 6, GNet-T 4); batch 128; sweep 32 ... 2048.  A
  theorem-exact control runs beside it: the quickstart's valid-padding CNN with a flatten + FC
  head on the overlapping grid, where the composed network computes exactly the sum of the
  sub-networks' logits (Theorem 2.1) - it separates what the theorems guarantee from what the
  ResNet's GAP/BatchNorm/same padding change.
* ``tiny``: the cpu-smoke experiment at seconds scale (512 images, 1-2 epochs), for the tests.

Everything is resumable: each Algorithm-1 run checkpoints under ``<out>/cases/``, each sweep
measurement is stored under ``<out>/sweep/``; re-run the same command after an interruption.

``--set key=value`` changes a field of every :class:`~dcnn_dd.train.config.Config` of the preset
(the cases and the sweep's base) on top of it.  Layout: :mod:`experiments.cifar.config` (the
presets), :mod:`.analysis` (the runs, tables, notes), :mod:`.figures`.
"""

from experiments.cifar.analysis import (accuracy_entries, accuracy_table, complexity_entries, deviation_notes, main, run,
                                        sweep_entries, sweep_table)
from experiments.cifar.config import (FASHION_GRIDS, OVERLAP_NAME, PLAIN_EXACT, PRESETS, Case, Preset, cpu_smoke,
                                      gpu_small, paper, tiny)
from experiments.cifar.figures import sweep_figure

__all__ = ["FASHION_GRIDS", "OVERLAP_NAME", "PLAIN_EXACT", "PRESETS", "Case", "Preset", "accuracy_entries",
           "accuracy_table", "complexity_entries", "cpu_smoke", "deviation_notes", "gpu_small", "main", "paper", "run",
           "sweep_entries", "sweep_figure", "sweep_table", "tiny"]
