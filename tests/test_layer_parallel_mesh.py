"""Layer- and data-parallel MGRIT on 8 simulated CPU devices (in a subprocess,
tests/layer_parallel_mesh_checks.py): on a 2 x 4 and a 4 x 2 (``layers`` x ``data``) mesh the
forward and adjoint states, the loss, the gradients and two training steps equal one device
(``vmap``, no mesh) to float32 reduction order, all 8 devices hold work (chunks split over
``layers``, the batch over ``data``), a batch or chunk count the mesh does not divide is a
one-line ValueError, and the example of docs/layer_parallel.md runs."""

import json
import sys

import pytest

from tests import runs

N, B, W = 16, 8, 3  # as in tests/layer_parallel_mesh_checks.py
RTOL, ATOL = 1e-5, 1e-6  # measured: relative <= 3.5e-7, absolute <= 3.6e-7


@pytest.fixture(scope="module")
def measured():
    p = runs.run([sys.executable, "-m", "tests.layer_parallel_mesh_checks"], devices=8)
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("i", [0, 1], ids=["2x4", "4x2"])
def test_layers_x_data_equals_one_device(measured, i):
    assert measured["devices"] == 8 and measured["ref_devices"] == 1
    r = measured["cases"][i]
    for what in ("states", "adjoint", "grads", "step_params"):
        assert r[f"{what}_abs"] < ATOL and r[f"{what}_rel"] < RTOL, (what, r)
    assert r["loss_abs"] < ATOL and r["step_loss_abs"] < ATOL and r["step_warm_abs"] < ATOL, r


@pytest.mark.parametrize("i", [0, 1], ids=["2x4", "4x2"])
def test_every_device_holds_work(measured, i):
    r = measured["cases"][i]
    L, D = r["mesh"]  # noqa: N806
    assert L * D == 8 and r["states_devices"] == r["grad_K_devices"] == 8, r
    # states and adjoint states (N+1, B, W): the batch split over data (replicated over layers)
    assert r["states_shards"] == r["adjoint_shards"] == r["step_warm_shards"] == [[N + 1, B // D, W]], r
    assert r["step_batch_shards"] == [[B // D, 2]] and r["step_params_replicated"], r
    # per-layer gradients (N, W, W): the layers split over layers (summed over data: an all-reduce)
    assert r["grad_K_shards"] == [[N // L, W, W]] and r["all_reduce_in_program"], r
    # inside the shard_map, per device: the finest level's F-relaxation on 8/L chunks of B/D samples,
    # the per-layer gradient vjps on N/L layers of B/D samples; no dot anywhere on the whole batch
    chunk = [tuple(s) for s in r["chunk_dot_shapes"]]
    assert (8 // L, B // D, W) in chunk and (N // L, B // D, W) in chunk, r
    assert all(tuple(s[-2:]) != (B, W) for s in r["chunk_dot_shapes"] + r["other_dot_shapes"]), r


def test_indivisible_batch_or_chunks_is_a_clear_error(measured):
    assert measured["errors"] == [
        "batch 6 of the states is not divisible by the 'data' axis size 4",
        "2 chunks on the finest level (N=16, m=8) are not divisible by the 'layers' axis size 4",
        "batch 6 is not divisible by the 'data' axis size 4",
    ]


def test_docs_example(measured):
    """docs/layer_parallel.md, "Several devices: layers x data": 64 of the 256 samples and their 33
    warm-start states on each device, and a finite loss near log(5) = 1.61 after one step."""
    shapes, loss = measured["docs_example"].strip().rsplit(" ", 1)
    assert shapes == "(64, 2) (33, 64, 8)" and 1.0 < float(loss) < 2.5, measured["docs_example"]
