"""Multi-process: the tiny quickstart run as 2 JAX processes on loopback (gloo CPU collectives,
one device each) gives the same parameters as 1 process with 2 devices; one of the two processes
is a user's own script (docs/engine.md's, through ``dcnn_dd.train.distributed.initialize``)."""

import argparse
import json
import socket
import sys

import numpy as np
import pytest

from dcnn_dd.train import distributed
from tests import runs
from tests.docs_pages import own_script_block

# Around docs/engine.md's own-script example: its run_algorithm1 call runs the tiny quickstart in the
# test's directory (what the other process runs); then initialize is called again (no-ops, and a
# conflicting call's error), and the process reports what it saw as one JSON line.
_BEFORE = """
import json, sys
import dcnn_dd.train
from experiments import quickstart

_real, _asked = dcnn_dd.train.run_algorithm1, []

def _run_tiny(config, run_dir, **kwargs):
    _asked.append([config.dataset, config.K, run_dir, sorted(kwargs)])
    return _real(quickstart.config(tiny=True, strategy="shard_map"), RUN_DIR, progress=False)

dcnn_dd.train.run_algorithm1 = _run_tiny
"""
_AFTER = """
import dcnn_dd
import jax
from dcnn_dd.train.distributed import initialize

assert dcnn_dd.train.distributed.initialize is initialize
initialize()
initialize(sys.argv[1], 2, int(sys.argv[3]))
try:
    initialize(sys.argv[1], 2, 1 - int(sys.argv[3]))
    conflict = None
except RuntimeError as e:
    conflict = str(e)
print(json.dumps({"asked": _asked, "processes": jax.process_count(), "process": jax.process_index(),
                  "collectives": jax.config.jax_cpu_collectives_implementation, "conflict": conflict,
                  "snet_acc": result.summary["snet_acc"]}))
"""


def _own_script(tmp_path, run_dir):
    """docs/engine.md's own-script example as a file, its training call pointed at ``run_dir``."""
    page, block = own_script_block()
    path = tmp_path / "train.py"
    path.write_text(f"RUN_DIR = {str(run_dir)!r}\n{_BEFORE}\n# ---- {page}\n{block}\n# ----\n{_AFTER}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
    single = tmp_path / "single"
    multi = tmp_path / "multi"
    ref = runs.start(runs.quickstart_cmd(single, "--set", "strategy=shard_map"), devices=2)
    port = _free_port()
    procs = [  # process 0: the quickstart's command line; process 1: a user's own script
        runs.start(runs.quickstart_cmd(multi, "--set", "strategy=shard_map", "--coordinator", f"127.0.0.1:{port}",
                                       "--num-processes", 2, "--process-id", 0), devices=1),
        runs.start([sys.executable, str(_own_script(tmp_path, multi)), f"127.0.0.1:{port}", "2", "1"], devices=1),
    ]
    outs = []
    try:
        for p in [ref, *procs]:
            out, err = p.communicate(timeout=400)
            assert p.returncode == 0, f"{p.args}\n{out[-2000:]}\n{err[-3000:]}"
            outs.append(out)
    finally:
        for p in [ref, *procs]:
            if p.poll() is None:
                p.kill()
    summary_single = (single / "summary.json").read_text()
    summary_multi = (multi / "summary.json").read_text()
    assert '"processes": 2' in summary_multi and '"processes": 1' in summary_single
    own = json.loads(outs[2].strip().splitlines()[-1])  # the script joined, trained, and saw the run process 0 wrote
    assert own["asked"] == [["fashion_mnist_idx", 4, "/shared/runs/my_run", []]], own
    assert (own["processes"], own["process"], own["collectives"]) == (2, 1, "gloo"), own
    assert own["conflict"].startswith("initialize: this process already joined"), own
    assert own["snet_acc"] == json.loads(summary_multi)["snet_acc"]
    for phase in ("gnet_r", "snets", "gnet_t"):
        a, b = runs.final_params(single, phase), runs.final_params(multi, phase)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=f"{phase}{k}")


def test_two_processes_agree_on_the_auto_strategy(tmp_path):
    """strategy="auto": every process times the strategies itself; process 0's pick is used by all
    (here each process is made to find another one fastest)."""
    port = _free_port()
    procs = [runs.start([sys.executable, "-m", "tests.strategy_agreement", str(tmp_path / "run"),
                         f"127.0.0.1:{port}", str(i)], devices=1) for i in range(2)]
    reports = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, f"{p.args}\n{out[-2000:]}\n{err[-3000:]}"
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [r["favourite"] for r in reports] == ["sequential", "vmap"]
    assert [r["strategy"] for r in reports] == ["sequential", "sequential"], reports
    assert reports[0]["snet_acc"] == reports[1]["snet_acc"]
    assert json.loads((tmp_path / "run" / "strategy.json").read_text())["strategy"] == "sequential"


@pytest.mark.parametrize("args, missing", [(("127.0.0.1:1",), "num_processes, process_id"),
                                           (("127.0.0.1:1", 2), "process_id"), ((None, 2, 0), "coordinator")])
def test_initialize_refuses_half_given_arguments(args, missing):
    """Before joining anything: all three of coordinator, num_processes, process_id, or none."""
    with pytest.raises(ValueError, match=rf"together \(missing: {missing}\)"):
        distributed.initialize(*args)
    with pytest.raises(ValueError, match="'HOST:PORT'"):
        distributed.initialize("127.0.0.1", 2, 0)
    with pytest.raises(ValueError, match="0..num_processes-1"):
        distributed.initialize("127.0.0.1:1", 2, 2)
    with pytest.raises(SystemExit, match="need --coordinator"):
        distributed.initialize_from_args(argparse.Namespace(distributed=True, coordinator=None, num_processes=2,
                                                            process_id=0))
