"""The partitions experiment's presets (Section 3.1.2 of Gu et al.): each a function returning a
:class:`Preset` - the Algorithm-1 runs (``(name, slot model, K, Config)``), the slot models, the
image shape and the timed steps.  ``--set`` applies to every Config of the plan
(:func:`experiments.cli.apply`)."""

from __future__ import annotations

import dataclasses

FOOD_GRIDS = {4: {"paper": "food101-4"}, 8: {"paper": "food101-8"}, 16: {"paper": "food101-16"}}
FASHION_GRIDS = {4: {"parts": 2, "size": 16}, 8: {"parts": [2, 4], "size": [16, 10]},
                 16: {"parts": 4, "size": 8, "crop": 2}}


@dataclasses.dataclass
class Preset:
    cases: list  # (name, slot model, K, Config)
    models: dict  # slot model -> model spec
    image_shape: tuple
    timing_steps: int
    stand_in: str | None = None


def _plan(*, dataset, models, Ks, grids, image_size, fraction, batch, steps_per_epoch, augment, strategy,  # noqa: N803
          train_size=None, test_size=None, timing_steps=20, image_shape=(224, 224, 3), eval_batch=500) -> list:
    from dcnn_dd.train.config import Config
    from dcnn_dd.train.schedules import scaled_schedule

    ep = {ph: scaled_schedule("food101", ph, fraction) for ph in ("gnet_r", "snets", "gnet_t")}
    cases = []
    for slot, spec in models.items():
        for K in Ks:  # noqa: N806
            c = Config(dataset=dataset, train_size=train_size, test_size=test_size, image_size=image_size,
                       model=spec, K=K, grid=grids[K], augment=augment, batch_size=batch,
                       steps_per_epoch=steps_per_epoch, eval_batch_size=eval_batch,
                       snet_epochs=ep["snets"][0], gnet_t_epochs=ep["gnet_t"][0],
                       gnet_r_epochs=ep["gnet_r"][0] if K == Ks[0] else 0,  # GNet-R once per network
                       snet_lr=ep["snets"][1].to_json(), gnet_t_lr=ep["gnet_t"][1].to_json(),
                       gnet_r_lr=ep["gnet_r"][1].to_json(), plateau_patience=5, strategy=strategy)
            cases.append((f"{slot.lower()}-k{K}", slot, K, c))
    return cases


def _resnet(name):
    return {"name": name, "fc_hidden": 1024, "conv_bias": True}


def paper() -> Preset:
    """The paper's setting: Food101 (TFDS), ResNet50 and ResNet101 with the 1024-FC head, K = 4, 8, 16.
    Days on 4 GPUs."""
    models = {"ResNet50": _resnet("resnet50"), "ResNet101": _resnet("resnet101")}
    cases = _plan(dataset="food101", models=models, Ks=(4, 8, 16), grids=FOOD_GRIDS, image_size=(224, 224),
                  fraction=1.0, batch=128, steps_per_epoch=300, augment="food101", strategy="auto")
    return Preset(cases, models, (224, 224, 3), timing_steps=50)


def gpu_small() -> Preset:
    """Food101 (TFDS), ResNet50, 1/10 of the epochs."""
    models = {"ResNet50": _resnet("resnet50")}
    cases = _plan(dataset="food101", models=models, Ks=(4, 8, 16), grids=FOOD_GRIDS, image_size=(224, 224),
                  fraction=0.1, batch=128, steps_per_epoch=300, augment="food101", strategy="auto")
    return Preset(cases, models, (224, 224, 3), timing_steps=20)


SMALL = {"name": "bottleneck_resnet", "stage_sizes": [1, 1], "widths": [16, 32], "stem_width": 16,
         "fc_hidden": 64, "conv_bias": True}


def _smoke(*, Ks, model, train_size, test_size, fraction, batch, steps_per_epoch, timing_steps,  # noqa: N803
           strategy="sequential") -> Preset:
    cases = _plan(dataset="fashion_mnist_idx", models={"ResNet50": model}, Ks=Ks, grids=FASHION_GRIDS,
                  image_size=None, fraction=fraction, batch=batch, steps_per_epoch=steps_per_epoch,
                  augment="fashion", strategy=strategy, train_size=train_size, test_size=test_size,
                  eval_batch=1000)
    desc = "/".join(map(str, model["widths"]))
    stand_in = (f"Fashion-MNIST ({train_size} training / {test_size} test images, 28x28x1, 10 classes) stands in "
                f"for Food101 (101 classes, 224x224), a bottleneck ResNet (stages {model['stage_sizes']}, widths "
                f"{desc}, stem {model['stem_width']}, hidden FC {model['fc_hidden']}) for ResNet50 with its "
                f"1024-FC; K = {', '.join(map(str, Ks))} with the paper's layouts scaled to 28x28; {steps_per_epoch} "
                f"iterations of batch {batch} per epoch; the schedules at {fraction:g} of the epochs. ResNet101 "
                f"slots are missing.")
    return Preset(cases, {"ResNet50": model}, (28, 28, 1), timing_steps, stand_in)


def cpu_smoke() -> Preset:
    """Fashion-MNIST stand-in with a small bottleneck ResNet, K = 4, 8, 16; about 3 min on 2 CPU cores."""
    return _smoke(Ks=(4, 8, 16), model=SMALL, train_size=10000, test_size=2000, fraction=0.05, batch=128,
                  steps_per_epoch=30, timing_steps=10)


def tiny() -> Preset:
    """The cpu-smoke experiment at its test scale: K = 4 and 16."""
    model = {**SMALL, "widths": [16, 16], "stem_width": 16, "fc_hidden": 16}
    return _smoke(Ks=(4, 16), model=model, train_size=1024, test_size=256, fraction=0.01, batch=64,
                  steps_per_epoch=4, timing_steps=2, strategy="vmap")  # vmap: compiles fastest for K=16


PRESETS = {"paper": paper, "gpu-small": gpu_small, "cpu-smoke": cpu_smoke, "tiny": tiny}
