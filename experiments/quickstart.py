"""Quickstart: Algorithm 1 of Gu et al. on Fashion-MNIST, offline, on a laptop CPU.

    python -m experiments.quickstart              # what `make demo` runs
    python -m experiments.quickstart --model resnet   # CIFAR-style ResNet-8 (GAP, same padding, BN)
    python -m experiments.quickstart --tiny       # seconds; the test suite's variant

K = 4 sub-networks on 2x2 overlapping 16x16 sub-images of the 28x28 images (origins 0 and 12,
aligned with the network's total stride 4), trained concurrently; composed by (2.11)-(2.14);
fine-tuned as GNet-T; against GNet-R, the same network from random initialisation trained for
as many epochs as SNets + GNet-T together (the paper's protocol).  GNet-T may then train up to
``--extra-epochs`` more epochs to reach GNet-R's final accuracy.

Time to accuracy, one seed, the same rule on both sides (``summary.json``): the GNet-T pipeline
(strategy selection, SNets, compose, the composed network's evaluation, GNet-T's epochs, each
with its compilation and per-epoch evaluation: ``time_to_gnet_r_acc_s``) against GNet-R's first
epoch at or above its own final accuracy (``gnet_r_first_hit_s``); ``payoff_ratio`` is their
quotient.  The multi-seed protocol with the variants is ``python -m experiments.payoff``.

Default network: the theorem-exact setting (valid padding, max-pooling, flatten + FC head), so
the composed network's logits equal the sum of the sub-networks' logits (Theorem 2.1) to float
rounding.  ``--model resnet`` leaves that setting (global average pooling, same padding,
BatchNorm): the composed network then only approximates the sum (see tests/test_deviations.py).

Cost (2 CPU cores): about 5 minutes with the defaults.  What it should reach: see docs/engine.md
(measured numbers with this command).  Writes ``results/quickstart/``: ``summary.json`` (the
keys of issue 3), ``metrics.jsonl``, ``accuracy.png``, ``phase_times.png``, checkpoints.  Killing
it and re-running the same command resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json

from dcnn_dd.train import distributed
from dcnn_dd.train.config import Config
from experiments.common import cli_errors

PLAIN = {"name": "plain", "features": [32, 32, 64, 64], "pool_after": [1, 3], "fc": [128]}
RESNET = {"name": "cifar_resnet", "depth": 8, "widths": [32, 64, 128]}


def config(model: str = "plain", *, tiny: bool = False, train_size: int | None = 20000, strategy: str = "auto",
           extra_epochs: int = 4, seed: int = 0) -> Config:
    spec = PLAIN if model == "plain" else RESNET
    c = Config(
        dataset="fashion_mnist_idx", train_size=train_size, model=spec, K=4, grid={"parts": 2, "size": 16},
        augment="none", batch_size=128, eval_batch_size=1000, snet_epochs=4, gnet_t_epochs=1, gnet_r_epochs=5,
        extra_epochs=extra_epochs, snet_lr=1e-3, gnet_t_lr=1e-3, gnet_r_lr=1e-3, plateau_patience=5,
        strategy=strategy, seed=seed,
    )
    if tiny:
        small = ({"name": "plain", "features": [8, 8, 16, 16], "pool_after": [1, 3], "fc": [32]} if model == "plain"
                 else {"name": "cifar_resnet", "depth": 8, "widths": [8, 8, 16]})
        c = c.replace(model=small, train_size=512, test_size=256, batch_size=64, eval_batch_size=256,
                      snet_epochs=1, gnet_t_epochs=1, gnet_r_epochs=2, extra_epochs=1)
    return c


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m experiments.quickstart", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["plain", "resnet"], default="plain")
    p.add_argument("--tiny", action="store_true", help="a seconds-long variant (tests)")
    p.add_argument("--train-size", type=int, default=20000, help="training images used (0: all 60000)")
    p.add_argument("--strategy", default="auto", choices=["auto", "vmap", "sequential", "shard_map"])
    p.add_argument("--extra-epochs", type=int, default=4,
                   help="GNet-T epochs allowed beyond the protocol to reach GNet-R's accuracy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default="results/quickstart")
    p.add_argument("--data", help="directory with the Fashion-MNIST IDX files (default: $DCNN_DD_DATA, then "
                                  "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--num-devices", type=int, help="devices of the data mesh (default: all)")
    p.add_argument("--restart", action="store_true", help="discard the run directory's checkpoints first")
    p.add_argument("--no-progress", action="store_true")
    distributed.add_arguments(p)
    args = p.parse_args(argv)
    distributed.initialize_from_args(args)

    from dcnn_dd.train import run_algorithm1  # after jax.distributed.initialize

    with cli_errors():
        c = config(args.model, tiny=args.tiny, train_size=args.train_size or None, strategy=args.strategy,
                   extra_epochs=args.extra_epochs, seed=args.seed)
        summary = run_algorithm1(c, args.run_dir, restart=args.restart, progress=not args.no_progress, data_path=args.data,
                      num_devices=args.num_devices)
    print(f"wrote {args.run_dir}/summary.json")
    return summary


if __name__ == "__main__":
    json.dumps(main())
