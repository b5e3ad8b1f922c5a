"""The quickstart's configurations: the demo network (``plain``) or a ResNet-8, at the demo's scale
or ``tiny`` (the test suite's)."""

from __future__ import annotations

from dcnn_dd.train.config import Config

PLAIN = {"name": "plain", "features": [32, 32, 64, 64], "pool_after": [1, 3], "fc": [128]}
RESNET = {"name": "cifar_resnet", "depth": 8, "widths": [32, 64, 128]}


def config(model: str = "plain", *, tiny: bool = False, train_size: int | None = 20000, strategy: str = "auto",
           extra_epochs: int = 4, seed: int = 0) -> Config:
    """``make demo``'s configuration: K = 4 sub-networks on 2x2 overlapping 16x16 sub-images, 4 SNet
    epochs, 1 GNet-T epoch (up to ``extra_epochs`` more to reach GNet-R's accuracy), 5 GNet-R epochs,
    Adam at 1e-3, the first ``train_size`` training images.  ``model``: ``plain`` (the theorem-exact
    network) or ``resnet`` (CIFAR ResNet-8).  ``tiny``: 512 / 256 images, narrow networks, 1-2
    epochs per phase (seconds; the tests)."""
    spec = PLAIN if model == "plain" else RESNET
    c = Config(
        dataset="fashion_mnist_idx", train_size=train_size, model=spec, K=4, grid={"parts": 2, "size": 16},
        augment="none", batch_size=128, eval_batch_size=1000, snet_epochs=4, gnet_t_epochs=1, gnet_r_epochs=5,
        extra_epochs=extra_epochs, snet_lr=1e-3, gnet_t_lr=1e-3, gnet_r_lr=1e-3, plateau_patience=5,
        strategy=strategy, seed=seed,
    )
    if tiny:
        small = ({"name": "plain", "features": [8, 8, 16, 16], "pool_after": [1, 3], "fc": [32]} if model == "plain"
                 else {"name": "cifar_resnet", "depth": 8, "widths": [8, 8, 16]})
        c = c.replace(model=small, train_size=512, test_size=256, batch_size=64, eval_batch_size=256,
                      snet_epochs=1, gnet_t_epochs=1, gnet_r_epochs=2, extra_epochs=1)
    return c
