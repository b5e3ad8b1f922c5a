"""CNN-DNN (Klawonn, Weber, Lanser, arXiv 2408.14442 and 2302.06564): local CNNs on sub-images,
their class probabilities aggregated by a DNN, by averaging, by majority vote or by the logit sum
(Gu et al.'s composed network); the coherent CNN-DNN from random initialisation and with transfer
learning; and the global CNN trained directly.  K in {4, 16}, with and without overlap.

    python -m experiments.cnn_dnn --preset cpu-smoke   # offline, Fashion-MNIST, ~3 min on 2 CPU cores (measured 190 s)
    python -m experiments.cnn_dnn --preset tiny        # ~30 s; the test suite's variant
    python -m experiments.cnn_dnn --preset gpu-small   # CIFAR-10 (TFDS), ResNet20, a tenth of the epochs (not run yet)
    python -m experiments.cnn_dnn --preset paper       # CIFAR-10 (TFDS), ResNet32, paper scale (not run yet; many GPU hours)
    python -m experiments.report                       # then: results/REPORT.md includes results/cnn_dnn/
    python -m experiments.cnn_dnn --preset tiny --set cnn_dnn.dnn_epochs=5 --set seed=1   # overrides (experiments.cli)

What runs, per case (K, overlap): the K local CNNs (the global architecture with its widths divided
by K, trained concurrently as the sub-networks of Algorithm 1), then from their frozen outputs the
aggregators (DNN trained on them, average, majority vote, logit sum, and the composed network of
Gu et al. before fine-tuning), then the coherent CNN-DNN trained end to end from random
initialisation and from the pre-trained local CNNs + DNN (transfer learning).  The global CNN is
trained directly once (in the first case).  Every phase's wall time is recorded.

Outputs in ``results/cnn_dnn/``: ``results.json`` (the schema of :mod:`experiments.results`; table
``cnn_dnn`` (accuracies), ``cnn_dnn-time`` (wall times), ``cnn_dnn-local`` (each local CNN)),
``results.md``, ``cnn_dnn.png`` (accuracies and phase wall times per case), ``cases/<case>/``
(engine run directories: re-running the same command resumes where it stopped).

Presets (epochs and models are our choices - only the abstract of Klawonn et al. is available to
us, so neither their schedules nor their numbers are reproduced or claimed):

* ``paper``: CIFAR-10 (TFDS; ``python -m dcnn_dd.data.prepare cifar10``), CIFAR ResNet32 (widths
  64/128/256, divisible by 16), flip+shift augmentation, batch 128; K=4 on 2x2 sub-images of 20x20
  (overlap) / 16x16, K=16 on 4x4 of 10x10 (overlap) / 8x8; local CNNs 100 epochs, global CNN and
  coherent CNN-DNN 200, DNN 50, transfer 50; the Section 3.1.1 schedules of Gu et al. scaled to
  these epochs.  Should reach, if the CNN-DNN papers' claims carry over: the DNN at or above the
  average and the vote, the transfer model above the coherent model from random init, and both
  close to the global CNN.
* ``gpu-small``: the same with ResNet20 and a tenth of the epochs.
* ``cpu-smoke``: Fashion-MNIST (8000 training / 2000 test images) standing in for CIFAR-10; a
  VGG-style CNN (same padding, conv 32-32-pool-64-64-pool, global average pooling, FC 128) standing
  in for the ResNet; K=4 on 2x2 of 16x16 (overlap) / 14x14, K=16 on 4x4 of 10x10 (overlap) / 7x7;
  batch 128; local CNNs 4 epochs, global CNN 4, DNN 10, coherent 4, transfer 2.
* ``tiny``: seconds scale for the tests: 512 / 256 images, K=4 overlap and K=16 non-overlap only.

``--set key=value`` changes a field of every case's :class:`~dcnn_dd.train.config.Config` (``seed=1``)
or, prefixed ``cnn_dnn.``, of its :class:`~dcnn_dd.cnn_dnn.train.CNNDNNConfig`
(``cnn_dnn.dnn_epochs=5``) on top of the preset.  Layout: :mod:`experiments.cnn_dnn.config` (the
presets), :mod:`.analysis` (the runs, tables, notes), :mod:`.figures`.
"""

from experiments.cnn_dnn.analysis import accuracy_table, entries, main, notes, run, targets, time_table
from experiments.cnn_dnn.config import (OVERLAP_NAME, PRESETS, ROWS, TIME_ROWS, Case, Preset, cpu_smoke, gpu_small,
                                        paper, tiny)
from experiments.cnn_dnn.figures import figure

__all__ = ["OVERLAP_NAME", "PRESETS", "ROWS", "TIME_ROWS", "Case", "Preset", "accuracy_table", "cpu_smoke", "entries",
           "figure", "gpu_small", "main", "notes", "paper", "run", "targets", "tiny", "time_table"]
