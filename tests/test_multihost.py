"""Multi-process: the tiny quickstart run as 2 JAX processes on loopback (gloo CPU collectives,
one device each) gives the same parameters as 1 process with 2 devices."""

import json
import socket
import sys

import numpy as np

from tests import runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
    single = tmp_path / "single"
    multi = tmp_path / "multi"
    ref = runs.start(runs.quickstart_cmd(single, "--set", "strategy=shard_map"), devices=2)
    port = _free_port()
    procs = [
        runs.start(runs.quickstart_cmd(multi, "--set", "strategy=shard_map", "--coordinator", f"127.0.0.1:{port}",
                                       "--num-processes", 2, "--process-id", i), devices=1)
        for i in range(2)
    ]
    for p in [ref, *procs]:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, f"{p.args}\n{out[-2000:]}\n{err[-3000:]}"
    summary_single = (single / "summary.json").read_text()
    summary_multi = (multi / "summary.json").read_text()
    assert '"processes": 2' in summary_multi and '"processes": 1' in summary_single
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
