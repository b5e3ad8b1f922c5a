"""One process of a 2-process loopback run of the tiny quickstart with ``strategy="auto"`` whose
strategy timings disagree across processes (each process finds another strategy fastest, as close
real timings can: 0.0222 s vs 0.0226 s).  Prints the strategy this process trained with and its
sub-networks' accuracies as one JSON line.  Started by tests/test_multihost.py.

    python -m tests.strategy_agreement RUN_DIR COORDINATOR PROCESS_ID
"""

import json
import sys

from dcnn_dd.train import distributed


def main(run_dir: str, coordinator: str, process_id: int) -> None:
    distributed.initialize(coordinator, 2, process_id)  # gloo CPU collectives, then jax.distributed
    from dcnn_dd import sharding
    from dcnn_dd.train import run_algorithm1 as run
    from experiments import quickstart

    favourite = ("sequential", "vmap")[process_id]

    def choose(strategies, build, repeats=3):  # what this process "measures"; nothing is compiled or run
        timings = {s: 0.0222 if s == favourite else 0.0226 for s in strategies}
        return min(timings, key=timings.get), timings

    sharding.choose = choose
    result = run(quickstart.config(tiny=True, strategy="auto"), run_dir, progress=False, log=lambda *a, **k: None)
    summary = result.summary
    print(json.dumps({"process": process_id, "favourite": favourite, "strategy": summary["strategy"]["strategy"],
                      "snet_acc": summary["snet_acc"]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
