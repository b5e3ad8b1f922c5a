"""Quickstart: Algorithm 1 of Gu et al. on Fashion-MNIST, offline, on a laptop CPU.

    python -m experiments.quickstart              # what `make demo` runs
    python -m experiments.quickstart --model resnet   # CIFAR-style ResNet-8 (GAP, same padding, BN)
    python -m experiments.quickstart --tiny       # seconds; the test suite's variant
    python -m experiments.quickstart --set seed=1 --set strategy=vmap   # any Config field (experiments.cli)

K = 4 sub-networks on 2x2 overlapping 16x16 sub-images of the 28x28 images (origins 0 and 12,
aligned with the network's total stride 4), trained concurrently; composed by (2.11)-(2.14);
fine-tuned as GNet-T; against GNet-R, the same network from random initialisation trained for
as many epochs as SNets + GNet-T together (the paper's protocol).  GNet-T may then train up to
``extra_epochs`` more epochs to reach GNet-R's final accuracy.

Time to accuracy, one seed, the same rule on both sides (``summary.json``): the GNet-T pipeline
(strategy selection, SNets, compose, the composed network's evaluation, GNet-T's epochs, each
with its compilation and per-epoch evaluation: ``time_to_gnet_r_acc_s``) against GNet-R's first
epoch at or above its own final accuracy (``gnet_r_first_hit_s``); ``payoff_ratio`` is their
quotient.  The multi-seed protocol with the variants is ``python -m experiments.payoff``.

Default network: the theorem-exact setting (valid padding, max-pooling, flatten + FC head), so
the composed network's logits equal the sum of the sub-networks' logits (Theorem 2.1) to float
rounding.  ``--model resnet`` leaves that setting (global average pooling, same padding,
BatchNorm): the composed network then only approximates the sum (see tests/test_deviations.py).

The configuration (:mod:`experiments.quickstart.config`): 20,000 training images, strategy
``auto``, 4 extra epochs, seed 0; ``--set key=value`` changes any field of
:class:`~dcnn_dd.train.config.Config` on top of it (``--set train_size=null``: all 60,000 images;
``--set extra_epochs=0``, ``--set model.features=[16,16,32,32]``).

Cost (2 CPU cores): about 8 minutes of training with the defaults (2026-12-07: GNet-R 221 s,
the SNets 16 s, GNet-T 177 s), plus start-up and data loading.  What it should reach: see docs/engine.md
(measured numbers with this command).  Writes ``results/quickstart/``: ``summary.json`` (the
keys of issue 3), ``metrics.jsonl``, ``accuracy.png``, ``phase_times.png``, ``config.json`` (the
configuration run, overrides included), checkpoints.  Killing it and re-running the same command
resumes where it stopped.
"""

from experiments.quickstart.analysis import main
from experiments.quickstart.config import PLAIN, RESNET, config

__all__ = ["PLAIN", "RESNET", "config", "main"]
