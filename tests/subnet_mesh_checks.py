"""Run in a subprocess with 8 simulated CPU devices (tests/test_subnet_mesh.py): the sub-network
phase on a (``subnet``, ``data``) mesh.  For K = 4 (a 4 x 2 mesh) and K = 2 (2 x 4): where the
states and batches live (every device holds work); for K = 2, Algorithm 1 through the engine on
all 8 devices against one device (the SNets, the composed network, GNet-T), then the CNN-DNN
(``run_cnn_dnn``: its local CNNs are those SNets, resumed from the same run directory; the
features, the DNN and the coherent model on the 8 devices).  Prints one JSON line."""

import json
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from dcnn_dd.cnn_dnn import CNNDNNConfig, run_cnn_dnn
from dcnn_dd.data import from_arrays
from dcnn_dd.train import run_algorithm1
from dcnn_dd.train.config import Config
from dcnn_dd.train.setup import build_setup
from dcnn_dd.train.state import phase_rng
from dcnn_dd.train.steps import Steps, subnet_batch_sharding, subnet_state

GRIDS = {4: {"parts": 2, "size": 16}, 2: {"origins": [[0, 0], [0, 12]], "size": [28, 16]}}


def data():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (192, 28, 28, 1), dtype=np.uint8)
    labels = (imgs[:, :14].mean((1, 2, 3)) > imgs[:, 14:].mean((1, 2, 3))).astype(np.int32)
    imgs[labels == 1, 4:10, 4:10] = 255  # something to learn
    return from_arrays(imgs[:128], labels[:128], num_classes=2), from_arrays(imgs[128:], labels[128:], num_classes=2)


def config(K, strategy, layout="auto"):  # noqa: N803
    return Config(dataset="toy", model={"name": "plain", "features": [8, 8, 16, 16], "pool_after": [1, 3], "fc": [16]},
                  K=K, grid=GRIDS[K], batch_size=32, eval_batch_size=64, snet_epochs=2, gnet_t_epochs=1,
                  gnet_r_epochs=0, plateau_patience=None, strategy=strategy, subnet_layout=layout, augment="fashion")


def placement(K):  # noqa: N803
    """One training step of the K sub-networks on all 8 devices: the mesh, the devices holding
    each state leaf and batch, the shard shapes, and whether the step all-reduces."""
    train, test = data()
    setup = build_setup(config(K, "shard_map"), train=train, test=test)
    steps = Steps(setup)
    state = subnet_state(setup, setup.subnet_init(jax.random.PRNGKey(0)), "shard_map")
    images, labels = train.take(np.arange(32))
    batch = [jax.make_array_from_callback(a.shape, subnet_batch_sharding(setup, "shard_map"), lambda i, a=a: a[i])
             for a in (images, labels, np.arange(32))]
    step = steps.subnet_train("shard_map")
    lrs = jnp.full((K,), 1e-3, jnp.float32)
    hlo = step.lower(state, *batch, jnp.int32(0), lrs, phase_rng(0, "snets")).compile().as_text()
    new, _ = step(state, *batch, jnp.int32(0), lrs, phase_rng(0, "snets"))
    leaf = jax.tree.leaves(new.params)[0]
    return {"mesh": dict(setup.subnet_mesh.shape),
            "state_devices": sorted({d.id for x in jax.tree.leaves(new.params) for d in x.devices()}),
            "state_shard_rows": sorted({s.data.shape[0] for s in leaf.addressable_shards}),
            "batch_devices": sorted(d.id for d in batch[0].devices()),
            "batch_shard_rows": sorted({s.data.shape[0] for s in batch[0].addressable_shards}),
            "all_reduce": hlo.count("all-reduce")}


def engine(K, devices, strategy, layout="auto"):  # noqa: N803
    """Algorithm 1, then the CNN-DNN on the same run directory (its Algorithm-1 part resumes), on
    ``devices`` devices."""
    train, test = data()
    c, quiet = config(K, strategy, layout), (lambda *a, **k: None)
    setup = build_setup(c, train=train, test=test, num_devices=devices)
    with tempfile.TemporaryDirectory() as d:
        res = run_algorithm1(c, d, progress=False, log=quiet, setup=setup)
        cd = run_cnn_dnn(c, CNNDNNConfig(dnn_epochs=1, coherent_epochs=1, transfer_epochs=0), d, progress=False,
                         log=quiet, setup=setup)
    s = res.summary
    return {"snet_acc": s["snet_acc"], "composed": s["gnet_t_init_acc"], "gnet_t": s["gnet_t_trained_acc"],
            "snets": res.snets, "gnet_t_vars": res.gnet_t, "mesh": dict(setup.subnet_mesh.shape),
            "cnn_dnn": {k: v for k, v in cd["acc"].items() if k in ("local", "dnn", "average", "vote", "logit_sum",
                                                                   "composed", "coherent")}}


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a),
                                                                                  jax.tree.leaves(b)))


def main():
    assert jax.device_count() == 8, jax.devices()
    out = {str(K): {"placement": placement(K)} for K in (4, 2)}  # noqa: N806
    K = 2  # noqa: N806  (the 2 x 4 mesh: 4 devices per sub-network; the engine runs are the costly part)
    one, eight = engine(K, 1, "sequential"), engine(K, 8, "shard_map")
    out[str(K)].update({
        "snet_acc": [one["snet_acc"], eight["snet_acc"]], "composed": [one["composed"], eight["composed"]],
        "gnet_t": [one["gnet_t"], eight["gnet_t"]], "meshes": [one["mesh"], eight["mesh"]],
        "cnn_dnn": [one["cnn_dnn"], eight["cnn_dnn"]],
        "snets_diff": max_diff(one["snets"], eight["snets"]),
        "gnet_t_diff": max_diff(one["gnet_t_vars"], eight["gnet_t_vars"]),
        "distinct": float(np.abs(np.asarray(jax.tree.leaves(one["snets"]["params"])[0][0])
                                 - np.asarray(jax.tree.leaves(one["snets"]["params"])[0][-1])).max()),
    })
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
