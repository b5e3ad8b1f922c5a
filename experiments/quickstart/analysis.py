"""Running the quickstart: the command line and one Algorithm-1 run (the engine writes the summary,
the metrics and the figures into the run directory)."""

from __future__ import annotations

import argparse

from dcnn_dd.train import distributed
from experiments import cli
from experiments.quickstart.config import config


def main(argv=None) -> dict:
    import experiments.quickstart as pkg

    p = argparse.ArgumentParser(prog="python -m experiments.quickstart", description=pkg.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["plain", "resnet"], default="plain")
    p.add_argument("--tiny", action="store_true", help="a seconds-long variant (tests)")
    cli.add_set_argument(p)
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

    with cli.cli_errors():
        cli.import_modules(args.imports)
        overrides = cli.split_overrides(cli.parse_sets(args.set), cli.config_targets())[""]
        c = cli.override(config(args.model, tiny=args.tiny), overrides)
        result = run_algorithm1(c, args.run_dir, restart=args.restart, progress=not args.no_progress,
                                data_path=args.data, num_devices=args.num_devices)
    print(f"wrote {args.run_dir}/summary.json")
    return result.summary
