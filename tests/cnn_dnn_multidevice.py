"""Run in a subprocess with 2 simulated CPU devices (tests/test_cnn_dnn.py): three data-parallel
training steps of the coherent CNN-DNN (BatchNorm local CNNs, both inner strategies) on a 2-device
``data`` mesh against one device.  Prints one JSON line."""

import json

import jax
import numpy as np
import optax

from dcnn_dd.cnn_dnn import CNNDNN, DNN
from dcnn_dd.grid import Grid
from dcnn_dd.models import PlainCNN
from dcnn_dd.tree import init_variables
from tests.multidevice_checks import max_diff, steps_on_data_mesh


def main():
    assert jax.device_count() == 2, jax.devices()
    local = PlainCNN(features=(4, 4), pool_after=(0,), fc=(8,), padding="SAME", head="gap", batchnorm=True)
    out = {}
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (3, 16, 12, 12, 1)))
    y = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (3, 16), 0, 10))
    tx = optax.identity()  # plain gradient steps (see tests/multidevice_checks.data_parallel)
    for inner in ("vmap", "sequential"):
        model = CNNDNN(local, DNN(10, (16,)), Grid.uniform((12, 12), 2, size=8), inner)
        variables = init_variables(model, jax.random.PRNGKey(0), (1, 12, 12, 1))
        res = {n: steps_on_data_mesh(model, tx, variables, x, y, n) for n in (1, 2)}
        out[inner] = {"params_diff": max_diff(res[1][0].params, res[2][0].params),
                      "batch_stats_diff": max_diff(res[1][0].model_state, res[2][0].model_state),
                      "moved": max_diff(res[1][0].params, variables["params"]),
                      "loss_diff": abs(res[1][1] - res[2][1]),
                      "devices": len(jax.tree.leaves(res[2][2].params)[0].devices())}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
