"""Does the method pay off?  Time-to-accuracy of Algorithm 1 (GNet-T) against GNet-R, honestly.

    python -m experiments.payoff                     # cpu-smoke (default): offline Fashion-MNIST, ~14 min on 2 CPU cores
    python -m experiments.payoff --preset screen     # every variant on a held-out seed, ~9 min
    python -m experiments.payoff --preset tiny       # ~100 s; the test suite's variant
    python -m experiments.payoff --preset device     # one GPU, one seed (benchmarks.device_check)
    python -m experiments.payoff --seeds 5 --networks exact   # more seeds, one network
    python -m experiments.payoff --preset full --variants base,K=16   # a subset of a preset's variants
    python -m experiments.payoff --set train_size=8000 --set batch_size=64   # any Config field (experiments.cli)

The protocol (issue 13):

* **One wall clock per pipeline**, started before anything of it runs.  GNet-T's covers the
  sub-network strategy selection (when ``strategy="auto"``), every compilation, the SNets, their
  evaluation after each epoch, ``plan_for`` + compose, the composed network's evaluation and the
  GNet-T epochs with their evaluations; GNet-R's covers its compilations, its epochs and their
  evaluations.  **Evaluation is counted on both sides; compilation is counted on both sides**:
  no compiled function is shared between pipelines (each builds its own
  :class:`dcnn_dd.train.Steps`) and the persistent XLA compilation cache is switched off.
  Data loading (once, before everything), the eager initialisation kernels (warmed once per
  network before any clock: :func:`warm_eager`) and checkpoint I/O (none: the phases keep their
  state in memory) are excluded on both sides.
* **Target** = GNet-R's final accuracy after its budget (``gnet_r_epochs``), mean over seeds.
  Both pipelines are charged their *first* evaluation at or above it; both may train up to
  ``cap_epochs`` global epochs to get there (null: never reached).  ratio = GNet-T pipeline's
  first-hit time / GNet-R's, per seed (same seed); ``ratio_mean`` and ``ratio_sd`` over seeds.
* **The baseline is tuned like our method**: GNet-R's learning rate is the best final accuracy of
  the same sweep that GNet-T's variants get (``lr_sweep``, warm-up included), on the first seed.
* Sub-network phases with several budgets (``snet_epochs`` 2/4/8/16) are one SNet run: the
  GNet-T pipeline of budget b starts from the SNets' state and clock reading after epoch b (the
  same computation as a b-epoch run, measured once); variants that differ only after
  composition share the SNets in the same way, each with its own compilations.

Variants (each also a :class:`~dcnn_dd.train.config.Config` option of the engine):

* ``base``: the paper's Algorithm 1 (fresh Adam, GNet-T lr 1e-3, K=4, 4 SNet epochs);
* ``adam-state``: GNet-T starts from the SNets' Adam moments composed with the same plan
  (``Config.compose_opt_state``);
* ``lr=3e-4``, ``warmup`` (GNet-T's first epoch at 1e-4, then 1e-3);
* ``K=16``: 16 sub-networks (widths / 16) on 4x4 sub-images of 16x16;
* ``snets=2/8/16``: the sub-network budget in epochs;
* ``snets=16+warmup``, ``snets=32+warmup``: the two best single changes of a one-seed screen
  together (formed after the screen; the default preset measures snets=32+warmup on seeds the
  ``screen`` preset does not use);
* ``regional`` (ResNet only): regional pooling (:mod:`dcnn_dd.models.pooling`), model option
  ``pooling="regional"``: the composed ResNet pools channel block k over sub-network k's region.

Networks: ``exact`` - the demo network (valid padding, max-pooling, flatten + FC: Theorem 2.1
holds); ``resnet`` - a CIFAR ResNet-8 at widths 16/32/64 (same padding, BatchNorm, global average
pooling) standing in for the paper's ResNets.

Presets:

* ``cpu-smoke`` (default): Fashion-MNIST, the first 4,000 training / 2,000 test images, batch 128,
  GNet-R 4 epochs (both sides may train up to 6 global epochs to reach the target), SNets at
  1e-3, strategy ``sequential`` (measured faster than ``vmap`` here); seeds 0, 1, 2; ``exact``
  with ``base`` and ``snets=32+warmup``, ``resnet`` with ``base`` and ``regional``.  Cost: 824 s
  (13.7 min) on 2 CPU cores (machine B of docs/payoff.md; machine A's GNet epochs took twice as
  long).  Should reach: the regional composed ResNet above its best sub-network (0.602 against
  0.589); snets=32+warmup at a ratio of at most 0.6 (0.54 on machine A; 0.76 on machine B, where
  the sub-networks' small steps gain less from the faster CPU than the global network's).
* ``screen``: every ``exact`` variant on one seed (``SCREEN_SEED`` = 3, held out from the default
  preset's seeds): the variants one by one (550 s on 2 CPU cores, machine B).
* ``full``: every case on seeds 0, 1, 2 (about an hour and a half on 2 CPU cores; not run yet).
* ``device``: ``exact`` with base, snets=16+warmup and snets=32+warmup for one seed, 20,000
  training / 10,000 test images (GNet-R swept over 1e-3 and warm-up: the rates these variants
  use); run by :mod:`benchmarks.device_check` on a GPU.
* ``tiny``: 512 / 256 images, tiny networks, 1 seed (about 100 s; the tests).

Outputs in ``results/payoff/``: ``results.json`` (``cases``: one per (network, variant), with
``network``, ``variant``, ``seeds``, ``snet_acc``, ``composed_acc``, ``logit_sum_acc``,
``gnet_t_first_hit_s``, ``gnet_r_first_hit_s``, ``ratios``, ``ratio_mean``, ``ratio_sd``,
``gnet_t_final_acc``, ``gnet_r_final_acc``, ``curves``; and ``strategy_check``: per network, every
sub-network strategy's time per step on this machine, measured once outside the clocks, and whether
the preset's fixed strategy is the fastest), ``results.md`` and ``payoff.png``
(accuracy against wall time, every seed of both pipelines).  Measurements are cached per
pipeline in ``cache/``: re-running the command resumes (``--restart`` measures again).

``--set key=value`` changes a field of every pipeline's :class:`~dcnn_dd.train.config.Config` on
top of the preset (:func:`experiments.payoff.config._config`); the variants' settings (GNet-T's
learning rate, the SNet budget, the Adam state, K, pooling) and the seeds (``--seeds``) are the
protocol's and apply after it.  The cache is keyed by pipeline, not by configuration, so a
results directory keeps the overrides it was measured with (``overrides.json``; other overrides on
the same ``--out`` are refused: choose another ``--out``, or pass ``--restart``).

The pipelines are built from the engine's phase functions (:mod:`dcnn_dd.train.composed_training`:
``gnet_r_phase``, ``snet_init``, ``select_strategy``, ``snets_phase``, ``compose_snets``,
``gnet_t_phase``), the variant's settings applied as configuration fields, so any configuration the
engine runs can be measured; each ``Train`` entry runs under the pipeline's clock with in-memory
checkpoints (docs/payoff.md lists what differs from ``run_algorithm1``).

Layout: :mod:`experiments.payoff.config` (presets, variants), :mod:`.analysis` (the protocol, the
pipelines, the table), :mod:`.figures`.
"""

from experiments.payoff.analysis import (Clock, GlobalRun, first_hit, gnet_r, gnet_t, main, ratio_stats,
                                         snets, strategy_check, summed_logits_check, table, warm_eager)
from experiments.payoff.config import (CONFIRMED, DEFAULT, EXACT_VARIANTS, GRIDS, LR_SWEEP, PLAIN, PRESETS, RESNET,
                                       RESNET_VARIANTS, SCREEN_SEED, Preset, Variant)
from experiments.payoff.figures import figure

__all__ = ["CONFIRMED", "DEFAULT", "EXACT_VARIANTS", "GRIDS", "LR_SWEEP", "PLAIN", "PRESETS", "RESNET", "RESNET_VARIANTS",
           "SCREEN_SEED", "Clock", "GlobalRun", "Preset", "Variant", "figure", "first_hit", "gnet_r", "gnet_t",
           "main", "ratio_stats", "snets", "strategy_check", "summed_logits_check", "table", "warm_eager"]
