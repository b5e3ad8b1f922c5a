"""The CNN-DNN experiment's presets: each a function returning a :class:`Preset` of :class:`Case`\\ s,
one per (K, overlap), each with an Algorithm-1 :class:`~dcnn_dd.train.config.Config` (data, the
global architecture, K, grid, the local and global CNNs' epochs) and a
:class:`~dcnn_dd.cnn_dnn.train.CNNDNNConfig` (the DNN, coherent and transfer phases).  ``--set``
applies to every Config (``--set seed=1``) and every CNNDNNConfig (``--set cnn_dnn.dnn_epochs=5``)."""

from __future__ import annotations

import dataclasses

OVERLAP_NAME = {True: "overlap", False: "nonoverlap"}


@dataclasses.dataclass
class Case:
    name: str
    config: object  # dcnn_dd.train.Config
    cnn_dnn: object  # dcnn_dd.cnn_dnn.train.CNNDNNConfig
    K: int  # noqa: N815
    overlap: bool


@dataclasses.dataclass
class Preset:
    cases: list
    slot: dict  # the (dataset, model) the cases stand for
    stand_in: str | None = None


def _cases(*, dataset, model, grids, Ks, overlaps, batch, augment, strategy, inner, epochs, lrs, train_size=None,  # noqa: N803
           test_size=None, steps_per_epoch=None, eval_batch=1000, dnn_hidden=None):
    from dcnn_dd.cnn_dnn.train import CNNDNNConfig
    from dcnn_dd.train.config import Config

    cases = []
    for i, (K, overlap) in enumerate((K, o) for K in Ks for o in overlaps):  # noqa: N806
        if (K, overlap) not in grids:
            continue
        c = Config(dataset=dataset, train_size=train_size, test_size=test_size, model=model, K=K,
                   grid=grids[(K, overlap)], augment=augment, batch_size=batch, steps_per_epoch=steps_per_epoch,
                   eval_batch_size=eval_batch, snet_epochs=epochs["local"], gnet_t_epochs=0,
                   gnet_r_epochs=epochs["global"] if not cases else 0,  # the global CNN once
                   snet_lr=lrs["local"], gnet_r_lr=lrs["global"], plateau_patience=5, strategy=strategy)
        cfg = CNNDNNConfig(dnn_hidden=dnn_hidden, dnn_epochs=epochs["dnn"], dnn_lr=lrs["dnn"],
                           coherent_epochs=epochs["coherent"], coherent_lr=lrs["coherent"],
                           transfer_epochs=epochs["transfer"], transfer_lr=lrs["transfer"], inner=inner)
        cases.append(Case(f"k{K}-{OVERLAP_NAME[overlap]}", c, cfg, K, overlap))
    return cases


def _cifar(depth: int, fraction: float) -> Preset:
    from dcnn_dd.train.schedules import scaled_schedule

    grids = {(4, True): {"paper": "cifar-overlap"}, (4, False): {"paper": "cifar"},
             (16, True): {"parts": 4, "size": 10}, (16, False): {"parts": 4, "size": 8}}
    n_local, s_local = scaled_schedule("cifar", "snets", fraction * 100 / 120)
    n_glob, s_glob = scaled_schedule("cifar", "gnet_r", fraction)
    n_tr, s_tr = scaled_schedule("cifar", "gnet_t", fraction * 50 / 80)
    epochs = {"local": n_local, "global": n_glob, "dnn": max(1, round(50 * fraction)), "coherent": n_glob,
              "transfer": n_tr}
    lrs = {"local": s_local.to_json(), "global": s_glob.to_json(), "dnn": 1e-3, "coherent": s_glob.to_json(),
           "transfer": s_tr.to_json()}
    model = {"name": "cifar_resnet", "depth": depth, "widths": [64, 128, 256]}
    cases = _cases(dataset="cifar10", model=model, grids=grids, Ks=(4, 16), overlaps=(True, False), batch=128,
                   augment="cifar", strategy="auto", inner="vmap", epochs=epochs, lrs=lrs)
    return Preset(cases, {"dataset": "cifar10", "model": f"ResNet{depth}"})


def paper() -> Preset:
    """CIFAR-10 (TFDS), CIFAR ResNet32 (widths 64/128/256), K = 4 and 16 with and without overlap, the
    Section 3.1.1 schedules of Gu et al. scaled to the CNN-DNN phases' epochs.  Many GPU hours."""
    return _cifar(32, 1.0)


def gpu_small() -> Preset:
    """The paper preset with ResNet20 and a tenth of the epochs."""
    return _cifar(20, 0.1)


def _fashion(*, Ks, overlaps, features, fc, train_size, test_size, batch, epochs, strategy, inner,  # noqa: N803
             steps_per_epoch=None, eval_batch=1000) -> Preset:
    grids = {(4, True): {"parts": 2, "size": 16}, (4, False): {"parts": 2, "size": 14},
             (16, True): {"parts": 4, "size": 10}, (16, False): {"parts": 4, "size": 7}}
    model = {"name": "plain", "features": list(features), "pool_after": [1, 3], "fc": list(fc), "padding": "SAME",
             "head": "gap"}
    lrs = {"local": 1e-3, "global": 1e-3, "dnn": 1e-3, "coherent": 1e-3, "transfer": 1e-4}
    cases = _cases(dataset="fashion_mnist_idx", model=model, grids=grids, Ks=Ks, overlaps=overlaps, batch=batch,
                   augment="none", strategy=strategy, inner=inner, epochs=epochs, lrs=lrs, train_size=train_size,
                   test_size=test_size, steps_per_epoch=steps_per_epoch, eval_batch=eval_batch)
    stand_in = (f"Fashion-MNIST ({train_size} training / {test_size} test images, 28x28x1) stands in for CIFAR-10, "
                f"a VGG-style CNN (same padding, conv {features[0]}-{features[1]}-pool-{features[2]}-{features[3]}-pool, "
                f"global average pooling, FC {fc[0]}) for ResNet32; epochs: local CNNs {epochs['local']}, global CNN "
                f"{epochs['global']}, DNN {epochs['dnn']}, coherent {epochs['coherent']}, transfer {epochs['transfer']}"
                + (f", {steps_per_epoch} batches of {batch} per epoch" if steps_per_epoch else f", batch {batch}")
                + ". Klawonn et al.'s own numbers are not available to us (abstract only).")
    return Preset(cases, {"dataset": "cifar10", "model": "ResNet32"}, stand_in)


def cpu_smoke() -> Preset:
    """Fashion-MNIST (8000 / 2000 images), a VGG-style CNN with global average pooling, K = 4 and 16 with
    and without overlap; about 3 min on 2 CPU cores."""
    return _fashion(Ks=(4, 16), overlaps=(True, False), features=(32, 32, 64, 64), fc=(128,), train_size=8000,
                    test_size=2000, batch=128, strategy="auto", inner="sequential",
                    epochs={"local": 4, "global": 4, "dnn": 10, "coherent": 4, "transfer": 2})


def tiny() -> Preset:
    """Seconds scale for the tests: 512 / 256 images, K = 4 overlap and K = 16 non-overlap only."""
    plan = _fashion(Ks=(4, 16), overlaps=(True, False), features=(16, 16, 32, 32), fc=(32,), train_size=512,
                    test_size=256, batch=64, strategy="vmap", inner="vmap", steps_per_epoch=4, eval_batch=256,
                    epochs={"local": 1, "global": 1, "dnn": 2, "coherent": 1, "transfer": 1})
    plan.cases = [c for c in plan.cases if (c.K, c.overlap) in ((4, True), (16, False))]
    return plan


PRESETS = {"paper": paper, "gpu-small": gpu_small, "cpu-smoke": cpu_smoke, "tiny": tiny}


# the rows of the results' tables and figures: (summary key, label)
ROWS = [("local", "local CNNs (mean)"), ("average", "average"), ("vote", "majority vote"),
        ("logit_sum", "logit sum"), ("composed", "Gu et al. composed"), ("dnn", "CNN-DNN (DNN on frozen local)"),
        ("coherent", "coherent CNN-DNN (random init)"), ("transfer_init", "transfer: initial"),
        ("transfer", "transfer: trained"), ("global", "global CNN")]
TIME_ROWS = [("local", "local CNNs"), ("features", "local outputs"), ("dnn", "DNN"), ("coherent", "coherent"),
             ("transfer", "transfer"), ("global", "global CNN"), ("compose", "compose")]
