"""Every device busy in the sub-network phase (8 simulated CPU devices, in a subprocess): a
(``subnet``, ``data``) mesh of K rows of 8/K devices for K = 4 and K = 2, each sub-network
data-parallel over its row; Algorithm 1 through the engine on the 2 x 4 mesh equals one device
(to float reduction order), and so does the CNN-DNN on top of it (``run_cnn_dnn``).  Also the
layout's choice and its errors (one device, no subprocess)."""

import json
import sys

import pytest

from tests import runs


@pytest.fixture(scope="module")
def measured():
    p = runs.run([sys.executable, "-m", "tests.subnet_mesh_checks"], devices=8, timeout=600)
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("K, rows", [(4, 2), (2, 4)])
def test_every_device_holds_work(measured, K, rows):  # noqa: N803
    p = measured[str(K)]["placement"]
    assert p["mesh"] == {"subnet": K, "data": rows}
    assert p["state_devices"] == list(range(8)) and p["state_shard_rows"] == [1]  # one sub-network per row
    assert p["batch_devices"] == list(range(8)) and p["batch_shard_rows"] == [32 // rows]  # the batch split
    assert p["all_reduce"] > 0  # the row's gradients are summed: data parallel within a sub-network


def test_engine_on_8_devices_equals_one_device(measured):
    m = measured["2"]  # 2 sub-networks, each data-parallel over 4 devices
    assert m["snets_diff"] < 1e-5 and m["gnet_t_diff"] < 1e-5, m
    assert m["snet_acc"][0] == m["snet_acc"][1] and m["composed"][0] == m["composed"][1]
    assert m["gnet_t"][0] == m["gnet_t"][1]
    assert m["distinct"] > 1e-3  # the K sub-networks really differ


def test_cnn_dnn_on_8_devices_equals_one_device(measured):
    """The CNN-DNN's local CNNs are the engine's SNets (the 2 x 4 mesh); its aggregators and coherent
    model give what one device gives."""
    m = measured["2"]
    assert m["meshes"] == [{"subnet": 1}, {"subnet": 2, "data": 4}]
    one, eight = m["cnn_dnn"]
    assert set(one) == {"local", "dnn", "average", "vote", "logit_sum", "composed", "coherent"}
    assert all(v is not None for v in one.values()), one
    assert one == eight


def test_layout_choice_and_errors():
    import jax

    from dcnn_dd import sharding

    n = len(jax.devices())
    assert sharding.subnet_mesh(4, 1).axis_names == ("subnet",)  # one device: as before
    assert sharding.data_parallel_within(sharding.subnet_mesh(4, 1)) == 1
    with pytest.raises(ValueError, match="multiple of K, at least 2K: 1 device"):
        sharding.subnet_mesh(4, 1, "subnet_data")
    with pytest.raises(ValueError, match="subnet_layout='rows'"):
        sharding.subnet_mesh(4, n, "rows")
    from dcnn_dd.train.config import Config

    with pytest.raises(ValueError, match="subnet_layout='rows'"):
        Config(subnet_layout="rows")
