"""The cifar experiment's presets (Section 3.1.1 of Gu et al.): each a function returning a
:class:`Preset` - the Algorithm-1 runs (:class:`Case`, one :class:`~dcnn_dd.train.config.Config`
each), the Table 3.2 sweep (with its base Config) and the Table 3.1 complexity models.  ``--set``
applies to every Config of the plan (:func:`experiments.cli.apply`)."""

from __future__ import annotations

import dataclasses

OVERLAP_NAME = {True: "overlap", False: "nonoverlap"}


@dataclasses.dataclass
class Case:
    name: str
    config: object  # dcnn_dd.train.config.Config
    slot: dict  # the paper's (dataset, model, overlap) this case stands for
    ours: str  # what it actually runs
    exact: bool = False  # the theorem-exact control


@dataclasses.dataclass
class Preset:
    cases: list
    sweep: dict  # base Config, batch_sizes, augments, grids {overlap: grid}, steps, warmup
    complexity: list  # (slot model, model spec, image shape (H, W, C), {overlap: grid spec})
    stand_in: str | None = None


# ----------------------------------------------------------------------------- presets
def _resnet_cases(datasets, depths, *, widths, grids, batch, fraction, augment, slot_of, describe, strategy,
                  train_size=None, test_size=None, eval_batch=1000):
    from dcnn_dd.train.config import Config
    from dcnn_dd.train.schedules import scaled_schedule

    ep = {ph: scaled_schedule("cifar", ph, fraction) for ph in ("gnet_r", "snets", "gnet_t")}
    cases = []
    for ds in datasets:
        for depth in depths:
            for overlap in (True, False):
                c = Config(dataset=ds, train_size=train_size, test_size=test_size,
                           model={"name": "cifar_resnet", "depth": depth, "widths": list(widths)}, K=4,
                           grid=grids[overlap], augment=augment, batch_size=batch, eval_batch_size=eval_batch,
                           snet_epochs=ep["snets"][0], gnet_t_epochs=ep["gnet_t"][0],
                           gnet_r_epochs=ep["gnet_r"][0] if overlap else 0,  # GNet-R once per network
                           snet_lr=ep["snets"][1].to_json(), gnet_t_lr=ep["gnet_t"][1].to_json(),
                           gnet_r_lr=ep["gnet_r"][1].to_json(), plateau_patience=5, strategy=strategy)
                slot = {"dataset": slot_of(ds), "model": f"ResNet{depth}" if slot_of(ds) == ds else "ResNet32",
                        "overlap": overlap}
                cases.append(Case(f"{ds}-resnet{depth}-{OVERLAP_NAME[overlap]}", c, slot, describe(ds, depth)))
    return cases


def paper() -> Preset:
    """The paper's setting: CIFAR-10 and CIFAR-100 (TFDS), ResNet32/56/110 (widths 64/128/256), sub-images
    20x20 (overlap) and 16x16, batch 32, the Section 3.1.1 schedules, flip+shift augmentation; sweep over batch
    sizes 32 ... 32768.  Days on 4 GPUs."""
    from dcnn_dd.train.config import Config

    grids = {True: {"paper": "cifar-overlap"}, False: {"paper": "cifar"}}
    cases = _resnet_cases(["cifar10", "cifar100"], [32, 56, 110], widths=(64, 128, 256), grids=grids, batch=32,
                          fraction=1.0, augment="cifar", slot_of=lambda ds: ds, describe=lambda ds, d: f"{ds} ResNet{d}",
                          strategy="auto")
    base = Config(dataset="cifar10", model={"name": "cifar_resnet", "depth": 32, "widths": [64, 128, 256]}, K=4,
                  strategy="auto")
    sweep = {"base": base, "batch_sizes": [32, 128, 512, 2048, 8192, 16384, 32768], "augments": ["none", "cifar"],
             "grids": grids, "steps": 50, "warmup": 3}
    cx = [(f"ResNet{d}", {"name": "cifar_resnet", "depth": d, "widths": [64, 128, 256]}, (32, 32, 3), grids)
          for d in (32, 56, 110)]
    return Preset(cases, sweep, cx)


def gpu_small() -> Preset:
    """CIFAR-10, ResNet32, batch 128, the paper's schedules at 1/10 of the epochs; sweep 128 ... 8192.
    About an hour on one H100-class GPU."""
    from dcnn_dd.train.config import Config

    grids = {True: {"paper": "cifar-overlap"}, False: {"paper": "cifar"}}
    cases = _resnet_cases(["cifar10"], [32], widths=(64, 128, 256), grids=grids, batch=128, fraction=0.1,
                          augment="cifar", slot_of=lambda ds: ds, describe=lambda ds, d: f"{ds} ResNet{d}",
                          strategy="auto")
    base = Config(dataset="cifar10", model={"name": "cifar_resnet", "depth": 32, "widths": [64, 128, 256]}, K=4,
                  strategy="auto")
    sweep = {"base": base, "batch_sizes": [128, 512, 2048, 8192], "augments": ["none", "cifar"], "grids": grids,
             "steps": 20, "warmup": 3}
    cx = [("ResNet32", {"name": "cifar_resnet", "depth": 32, "widths": [64, 128, 256]}, (32, 32, 3), grids)]
    return Preset(cases, sweep, cx)


FASHION_GRIDS = {True: {"parts": 2, "size": 16}, False: {"parts": 2}}
PLAIN_EXACT = {"name": "plain", "features": [32, 32, 64, 64], "pool_after": [1, 3], "fc": [128]}


def _smoke(*, widths, train_size, test_size, fraction, batch, sweep_sizes, sweep_steps, augments, plain,
           exact_epochs, exact_train_size, exact_lr) -> Preset:
    from dcnn_dd.train.config import Config

    desc = f"Fashion-MNIST ResNet-8 (widths {'/'.join(map(str, widths))})"
    cases = _resnet_cases(["fashion_mnist_idx"], [8], widths=widths, grids=FASHION_GRIDS, batch=batch,
                          fraction=fraction, augment="fashion", slot_of=lambda ds: "cifar10",
                          describe=lambda ds, d: desc, strategy="sequential", train_size=train_size,
                          test_size=test_size)
    snets, gnet_t = exact_epochs
    exact = Config(dataset="fashion_mnist_idx", train_size=exact_train_size, test_size=test_size, model=plain, K=4,
                   grid=FASHION_GRIDS[True], augment="none", batch_size=batch, snet_epochs=snets,
                   gnet_t_epochs=gnet_t, gnet_r_epochs=0, snet_lr=exact_lr, gnet_t_lr=exact_lr, strategy="sequential")
    cases.append(Case("fashion_mnist_idx-plain-exact", exact, {"dataset": "cifar10", "model": "ResNet32",
                                                                "overlap": True},
                      "Fashion-MNIST valid-padding CNN, flatten + FC head (theorem-exact control)", exact=True))
    base = Config(dataset="fashion_mnist_idx", train_size=train_size, test_size=test_size,
                  model={"name": "cifar_resnet", "depth": 8, "widths": list(widths)}, K=4, strategy="sequential")
    sweep = {"base": base, "batch_sizes": sweep_sizes, "augments": augments, "grids": FASHION_GRIDS,
             "steps": sweep_steps, "warmup": 1}
    cx = [("ResNet32", {"name": "cifar_resnet", "depth": 8, "widths": list(widths)}, (28, 28, 1), FASHION_GRIDS)]
    stand_in = (f"Fashion-MNIST ({train_size} training / {test_size} test images, 28x28x1) stands in for CIFAR-10, "
                f"a CIFAR-style ResNet-8 (widths {'/'.join(map(str, widths))}) for ResNet32, sub-images 16x16 "
                f"(overlap) / 14x14 for 20x20 / 16x16; the paper's schedules at {fraction:g} of the epochs, "
                f"batch {batch}.  Only the CIFAR-10 ResNet32 slots are filled; the others are missing.")
    return Preset(cases, sweep, cx, stand_in)


def cpu_smoke() -> Preset:
    """Fashion-MNIST (6000 / 2000 images) and a CIFAR-style ResNet-8 (widths 16/32/64) standing in for
    CIFAR-10 / ResNet32, the schedules at 1/20 of the epochs, batch 128, sweep 32 ... 2048, and the
    theorem-exact control (the quickstart's valid-padding CNN).  About 5 min on 2 CPU cores."""
    return _smoke(widths=(16, 32, 64), train_size=6000, test_size=2000, fraction=0.05, batch=128,
                  sweep_sizes=[32, 256, 2048], sweep_steps=5, augments=["none", "fashion"], plain=PLAIN_EXACT,
                  exact_epochs=(3, 1), exact_train_size=6000, exact_lr=1e-3)


def tiny() -> Preset:
    """The cpu-smoke experiment at seconds scale (512 images, 1-2 epochs): the tests."""
    plain = {"name": "plain", "features": [8, 8, 16, 16], "pool_after": [1, 3], "fc": [32]}
    p = _smoke(widths=(4, 8, 16), train_size=512, test_size=256, fraction=0.01, batch=64,
               sweep_sizes=[64], sweep_steps=2, augments=["none"], plain=plain, exact_epochs=(2, 1),
               exact_train_size=2048, exact_lr=3e-3)
    return p


PRESETS = {"paper": paper, "gpu-small": gpu_small, "cpu-smoke": cpu_smoke, "tiny": tiny}
