"""experiments.visualize's presets: the Algorithm-1 configuration of each (:class:`Setting`) and
what the two figures show (layers of Fig. 3.7, file names, class names)."""

from __future__ import annotations

import dataclasses

LAYERS = (1, 3, 5)
FIGURES = {"3.7": "fig3_7_feature_maps.png", "3.8": "fig3_8_cam.png"}
CLASS_NAMES = {
    "cats_vs_dogs": ("cat", "dog"),
    "fashion_mnist_idx": ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                          "Ankle boot"),
}
PAPER_WIDTHS = [32, 32, 64, 64, 128, 128, 256, 256, 512, 512]


@dataclasses.dataclass(frozen=True)
class Setting:
    """A preset: the Algorithm-1 configuration and what to draw."""

    config: object  # dcnn_dd.train.config.Config
    n_images: int = 4  # test images in Fig. 3.8 (and in the Fig. 3.7 agreement check)
    channels: int = 2  # channels per sub-network and layer in Fig. 3.7
    stand_in: str | None = None


def _lr(epochs: int):
    return {"base": 1e-3, "milestones": [[max(1, (2 * epochs) // 3), 0.1]]}


def paper() -> Setting:
    from dcnn_dd.train.config import Config

    c = Config(dataset="cats_vs_dogs", image_size=(224, 224),
               model={"name": "dogs_cats", "widths": PAPER_WIDTHS, "pool_every": 2, "num_classes": 2},
               K=4, grid={"paper": "food101-4"}, augment="food101", batch_size=32, eval_batch_size=256,
               snet_epochs=30, gnet_t_epochs=20, gnet_r_epochs=50, extra_epochs=0,
               snet_lr=_lr(30), gnet_t_lr=_lr(20), gnet_r_lr=_lr(50), plateau_patience=5, strategy="auto", seed=0)
    return Setting(c, n_images=4, channels=2)


def gpu_small() -> Setting:
    s = paper()
    c = s.config.replace(snet_epochs=6, gnet_t_epochs=4, gnet_r_epochs=10, snet_lr=_lr(6), gnet_t_lr=_lr(4),
                         gnet_r_lr=_lr(10))
    return dataclasses.replace(s, config=c)


SMOKE_STAND_IN = ("Fashion-MNIST 28x28 (10 classes) instead of Dogs vs. Cats 224x224; DogsCatsCNN with widths "
                  "{widths} and a max-pool every 4 convs (not 2: 28x28 would shrink to 1x1); 2x2 grid of 16x16 "
                  "sub-images (origins 0, 12) instead of 140x140 (origins 0, 84); {train} training / {test} test "
                  "images; SNets {s}, GNet-T {t}, GNet-R {r} epochs")


def cpu_smoke() -> Setting:
    from dcnn_dd.train.config import Config

    widths = [8, 8, 16, 16, 32, 32, 32, 32, 64, 64]
    c = Config(dataset="fashion_mnist_idx", train_size=10000, test_size=2000,
               model={"name": "dogs_cats", "widths": widths, "pool_every": 4, "num_classes": 10},
               K=4, grid={"parts": 2, "size": 16}, augment="none", batch_size=128, eval_batch_size=1000,
               snet_epochs=3, gnet_t_epochs=2, gnet_r_epochs=5, extra_epochs=0, snet_lr=1e-3, gnet_t_lr=1e-3,
               gnet_r_lr=1e-3, plateau_patience=None, strategy="sequential", seed=0)
    return Setting(c, n_images=4, channels=2, stand_in=_stand_in(c))


def tiny() -> Setting:
    s = cpu_smoke()
    widths = [8] * 10  # one width: fewer distinct conv shapes to compile (about 5 s less than 4..8 on a CPU)
    c = s.config.replace(model={**s.config.model, "widths": widths}, train_size=512, test_size=256, batch_size=64,
                         eval_batch_size=256, snet_epochs=1, gnet_t_epochs=1, gnet_r_epochs=1,
                         strategy="vmap")  # at seconds scale compiling dominates: vmap's one program compiles faster
    return dataclasses.replace(s, config=c, n_images=3, stand_in=_stand_in(c))


def _stand_in(c) -> str:
    return SMOKE_STAND_IN.format(widths=tuple(c.model["widths"]), train=c.train_size, test=c.test_size,
                                 s=c.snet_epochs, t=c.gnet_t_epochs, r=c.gnet_r_epochs)


PRESETS = {"paper": paper, "gpu-small": gpu_small, "cpu-smoke": cpu_smoke, "tiny": tiny}
