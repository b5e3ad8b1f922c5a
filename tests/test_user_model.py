"""A user's own Flax module through the engine: registered by name, it trains as the local CNNs of
a CNN-DNN (Algorithm 1's sub-network phase, the DNN, the coherent and the transfer models), its
BatchNorm statistics included."""

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest

from dcnn_dd.models import divide_widths
from dcnn_dd.models import registry as registry_mod


class TinyNet(nn.Module):  # a user's module: widths as attributes, subnet(K) divides them
    width: int = 8
    hidden: int = 16
    num_classes: int = 10

    def subnet(self, K):  # noqa: N803
        return dataclasses.replace(self, width=divide_widths(self.width, K, "width"),
                                   hidden=divide_widths(self.hidden, K, "hidden"))

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(self.width, (3, 3), padding="SAME")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))  # BatchNorm state through every phase
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="SAME")(x)).mean(axis=(1, 2))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(registry_mod, "MODELS", dict(registry_mod.MODELS))
    return registry_mod


def test_register_model_errors(registry):
    registry.register_model("tinynet", TinyNet)
    registry.register_model("tinynet", TinyNet)  # the same factory again is fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("plain", TinyNet)
    with pytest.raises(ValueError, match="non-empty"):
        registry.register_model("", TinyNet)
    with pytest.raises(TypeError, match="callable"):
        registry.register_model("x", 3)
    registry.register_model("nosub", lambda num_classes: nn.Dense(num_classes))
    with pytest.raises(ValueError, match="no subnet"):
        registry.build_model({"name": "nosub"}, 10)
    with pytest.raises(ValueError, match="width width=6 is not divisible by K=4"):
        registry.build_model({"name": "tinynet", "width": 6}, 10).subnet(4)


def test_user_module_as_the_local_cnns_of_a_cnn_dnn(registry, tmp_path):
    from dcnn_dd.cnn_dnn import CNNDNNConfig, run_cnn_dnn as run
    from dcnn_dd.train import Config
    from dcnn_dd.train.checkpoint import load_variables

    registry.register_model("tinynet", TinyNet)
    config = Config(dataset="fashion_mnist_idx", train_size=256, test_size=128, model={"name": "tinynet", "width": 8},
                    K=4, grid={"parts": 2, "size": 16}, batch_size=64, snet_epochs=1, gnet_t_epochs=0,
                    gnet_r_epochs=0, strategy="sequential")
    summary = run(config, CNNDNNConfig(dnn_epochs=1, coherent_epochs=1, transfer_epochs=1, inner="sequential"),
                  tmp_path, progress=False, log=lambda *a, **k: None)
    acc = summary["acc"]
    for key in ("dnn", "average", "vote", "logit_sum", "coherent", "transfer"):
        assert 0.0 <= float(np.mean(acc[key])) <= 1.0, (key, acc)
    # the local CNNs are the user's sub-network, K = 4 of them stacked: widths 8/4 = 2, hidden 16/4 = 4
    snets = load_variables(tmp_path, "snets")["params"]
    assert snets["Conv_0"]["kernel"].shape == (4, 3, 3, 1, 2)
    assert snets["Dense_0"]["kernel"].shape == (4, 2, 4)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(snets))
    # transfer learning starts from exactly the trained local CNNs: parameters and BatchNorm statistics
    init = load_variables(tmp_path / "cnn_dnn", "transfer_init")
    trained = load_variables(tmp_path, "snets")
    for part in ("params", "batch_stats"):
        same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), init[part]["local"], trained[part])
        assert all(jax.tree.leaves(same)), part
    assert float(np.abs(np.asarray(trained["batch_stats"]["BatchNorm_0"]["var"]) - 1).max()) > 1e-3  # really trained


class HalfDividedNet(TinyNet):  # a user's mistake: subnet(K) divides the hidden width but not the convolutions'
    def subnet(self, K):  # noqa: N803
        return dataclasses.replace(self, hidden=divide_widths(self.hidden, K, "hidden"))


def test_a_network_that_cannot_be_composed_fails_before_anything_trains(registry, tmp_path):
    """The plan is derived and checked when the setup is built: a module whose sub-network is not a
    width decomposition of it fails there, with no run directory written and nothing trained
    (before, the error came after GNet-R and the SNets had trained)."""
    from dcnn_dd.train import Config, run_algorithm1

    registry.register_model("halfdivided", HalfDividedNet)
    config = Config(dataset="fashion_mnist_idx", train_size=256, test_size=128, model={"name": "halfdivided"},
                    K=4, grid={"parts": 2, "size": 16}, batch_size=64, snet_epochs=1, gnet_t_epochs=0,
                    gnet_r_epochs=1, strategy="sequential")
    # the configuration itself is fine (a Config checks its fields when it is made: the sub-network builds)
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="cannot infer the rule"):
        run_algorithm1(config, run_dir, progress=False, log=lambda *a, **k: None)
    assert not run_dir.exists()
