"""Several devices (4 simulated CPU devices, in a subprocess): every sub-network strategy agrees,
shard_map with K a multiple of the device count and not; the data-parallel step on 4 devices
equals 1 device, BatchNorm statistics included; experiments.partitions times the sub-networks on
1 device and on all 4 (shard_map)."""

import json
import sys

import pytest

from tests import runs


@pytest.fixture(scope="module")
def measured():
    p = runs.run([sys.executable, "-m", "tests.multidevice_checks"], devices=4)
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_strategies_agree_on_4_devices(measured):
    k4, k6 = measured["subnets"]
    assert (k4["K"], k4["mesh"], k4["shard_map_devices"]) == (4, 4, 4)  # one sub-network per device
    assert (k6["K"], k6["mesh"]) == (6, 4)  # 6 on 4 devices: padded to 8, 2 per device
    for r in (k4, k6):
        assert r["shard_map_vs_sequential"] < 1e-6, r
        assert r["vmap_vs_sequential"] < 1e-5, r
        assert r["distinct"] > 1e-3  # the K results are really different networks


def test_data_parallel_on_4_devices_equals_1_device(measured):
    d = measured["data"]
    assert d["replicated"] and d["devices"] == 4
    assert d["params_diff"] < 1e-5 and d["batch_stats_diff"] < 1e-5 and d["loss_diff"] < 1e-5, d


def test_partitions_times_subnets_on_1_and_4_devices(measured):
    t = measured["timing"]
    got = {(r["which"], r["devices"]): r for r in t["rows"]}
    assert set(got) == {("global", 1), ("subnets", 1), ("global", 4), ("subnets", 4)}, t
    assert got[("subnets", 4)]["strategy"] == "shard_map" and got[("subnets", 1)]["strategy"] == "vmap"
    for r in t["rows"]:
        assert not r["oom"] and r["s_per_step"] > 0 and r["time_s"] > r["s_per_step"], r
    assert {(e["row"], e["devices"]) for e in t["entries"]} == {("GNet", 1), ("SNet-4", 1), ("GNet", 4),
                                                                ("SNet-4", 4)}
    assert all(e["K"] == (1 if e["row"] == "GNet" else 4) and e["value"] > 0 for e in t["entries"]), t
