"""Helpers for tests that run experiments in subprocesses (real kills, several processes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dcnn_dd.train.checkpoint import load_variables

ROOT = Path(__file__).resolve().parents[1]


def env(devices: int | None = None, **extra) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "JAX_NUM_CPU_DEVICES"))}
    e["JAX_PLATFORMS"] = "cpu"
    e["PYTHONPATH"] = str(ROOT)
    if devices is not None:
        e["JAX_NUM_CPU_DEVICES"] = str(devices)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def quickstart_cmd(run_dir, *args) -> list[str]:
    return [sys.executable, "-m", "experiments.quickstart", "--tiny", "--no-progress", "--set", "strategy=sequential",
            "--run-dir", str(run_dir), *map(str, args)]


def run(cmd, *, devices=None, timeout=300, check=True, **extra) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=ROOT, env=env(devices, **extra), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def start(cmd, *, devices=None, **extra) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env(devices, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended ({proc.returncode}) before the condition:\n{out[-2000:]}\n{err[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def checkpoints(run_dir, phase: str) -> list[int]:
    d = Path(run_dir) / "ckpt" / phase
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def cut_in_last_snet_epoch(run_dir, dest, ignore=None) -> list[int]:
    """A copy of the finished Algorithm-1 run ``run_dir`` at ``dest`` as a run killed during the
    SNets' last epoch leaves it: their last checkpoint, GNet-T's checkpoints and the files written
    after the SNets (``compose.json``, ``summary.json``) removed.  Returns the SNets' checkpoint
    steps of the finished run (a resume must write the last one again).  ``ignore``: as for
    ``shutil.copytree``."""
    shutil.copytree(run_dir, dest, ignore=ignore)
    steps = checkpoints(dest, "snets")
    shutil.rmtree(Path(dest) / "ckpt" / "snets" / str(steps[-1]))
    shutil.rmtree(Path(dest) / "ckpt" / "gnet_t")
    for f in ("compose.json", "summary.json"):
        (Path(dest) / f).unlink()
    return steps


def final_params(run_dir, phase: str) -> dict:
    """The parameters of a phase's latest checkpoint as numpy arrays, by leaf path."""
    out = {}

    def walk(t, prefix):
        if isinstance(t, dict):
            for k, v in t.items():
                walk(v, f"{prefix}/{k}")
        else:
            out[prefix] = np.asarray(t)

    walk(load_variables(run_dir, phase)["params"], "")
    return out


def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def read_results(out, experiment: str, preset: str = "tiny") -> dict:
    """An experiment's ``results.json``, checked against the schema :mod:`experiments.results` writes
    (the experiment and preset, the run metadata, the keys of every entry)."""
    on_disk = json.loads((Path(out) / "results.json").read_text())
    assert on_disk["experiment"] == experiment and on_disk["preset"] == preset, (on_disk["experiment"], on_disk["preset"])
    for key in ("date", "backend", "device_kind", "devices", "command", "wall_s"):
        assert key in on_disk["meta"], key
    for e in on_disk["entries"]:
        assert {"table", "row", "metric", "value"} <= set(e), e
    return on_disk
