"""Figs. 3.7 and 3.8 of Gu et al.: feature maps and class activation maps of the composed network.

    python -m experiments.visualize --preset paper       # Dogs vs. Cats 224x224, GPUs (TFDS cats_vs_dogs)
    python -m experiments.visualize --preset gpu-small   # the same data, fewer epochs
    python -m experiments.visualize --preset cpu-smoke   # offline Fashion-MNIST stand-in, ~1.5 min on 2 CPU cores (measured 87 s)
    python -m experiments.visualize --preset tiny        # seconds (the test suite)

Section 3.1.3: the 11-layer DCNN (:class:`~dcnn_dd.models.zoo.DogsCatsCNN`: 10 SAME-padded 3x3
convs, a 2x2/2 max-pool every 2 convs, global average pooling, 2-way FC) trained by Algorithm 1 with
K = 4 sub-networks on 2x2 overlapping 140x140 sub-images of the 224x224 images (origins 0 and 84,
``paper_grid("food101-4")``).  One Algorithm-1 run (``cases/dogs_cats/``, resumable) gives every
network of the two figures:

* **Fig. 3.7** (``fig3_7_feature_maps.png``): the feature maps of layers 1, 3 and 5 of each trained
  sub-network k next to the composed global network's (GNet-T before fine-tuning) map restricted
  to the subdomain Omega of (2.15) - the activation field of sub-image k at that layer
  (:func:`dcnn_dd.fields.activation_field` with the layer's windows from
  ``DogsCatsCNN.spatial_layers()``; SAME padding at the image border counts as inside, the field
  loses one cell per conv at every *interior* sub-image border) - and to channel block k, with their
  difference.  Theorem 2.1 (1) says they are equal; :func:`feature_map_agreement` measures the max
  |difference| per layer and sub-network (printed, and the ``fig3.7`` entries).  Sub-network
  coordinates are the global field's minus ``origin / cumulative stride``, so every shown layer needs
  the origins to be multiples of its cumulative stride (paper: 84 and strides 1, 2, 4; a clear
  ``ValueError`` otherwise).  Shown: the first test image, per layer and sub-network the two
  channels of largest variance; rows SNet-k / GNet-T on Omega_k / |difference| (same colour scale).
* **Fig. 3.8** (``fig3_8_cam.png``): CAM (Zhou et al. 2016, ``M = sum_n w_{n,c} X_n`` of the last
  conv, for the ground-truth class c, bilinearly upsampled, min-max normalised per map, jet over
  the grey image) for a few test images of different classes: (a) the 4 trained sub-networks - our
  choice: four small panels, each sub-image with its own CAM, laid out as the 2x2 grid (the
  overlapping sub-images are shown whole, side by side), (b) GNet-T before fine-tuning (composed),
  (c) GNet-T after fine-tuning, (d) GNet-R before training (its initial random variables,
  recomputed from the seed exactly as Algorithm 1 draws them), (e) GNet-R after training.  Titles
  give p(ground truth).  The ``fig3.8`` entries are the test accuracies of the same networks.

Presets (epochs are our choice: the paper gives none for Section 3.1.3):

* ``paper`` - TFDS ``cats_vs_dogs`` (one ``train`` split of 23,262 images; we train on its first
  80% and test on the last 20%, ``sources.TFDS_SPLITS``), resized to 224x224 (bilinear); default
  widths 32..512, K = 4, ``food101-4`` grid; augmentation ``food101`` (flip, shift 22 px, rotate 15
  deg, zoom 0.1 - scaled to 224 px images); batch 32; Adam 1e-3 divided by 10 at 2/3 of each phase;
  SNets 30 epochs, GNet-T 20, GNet-R 50 (= SNets + GNet-T, the paper's protocol).  Needs the data
  once: ``python -m dcnn_dd.data.prepare cats_vs_dogs``.  Cost: not measured (no GPU and no
  cats_vs_dogs data where this was written): 70 global-network epochs (GNet-R 50, GNet-T 20) and 30
  epochs of the four sub-networks (each 1/16 of the global FLOPs per pixel, on 39% of the pixels) over
  18.6k 224x224 images.
* ``gpu-small`` - the same data, SNets 6, GNet-T 4, GNet-R 10 epochs.
* ``cpu-smoke`` - stand-in: Fashion-MNIST 28x28 (offline IDX files), widths (8, 8, 16, 16, 32, 32,
  32, 32, 64, 64), ``pool_every=4`` (a pool after convs 4 and 8: with the paper's pool every 2 convs,
  28x28 would shrink to 1x1 at the last conv and leave no map for CAM), 10 classes, 2x2 grid of
  16x16 sub-images (origins 0 and 12; cumulative strides 1, 1, 2 at layers 1, 3, 5), first 10,000
  training images, 2,000 test images, no augmentation, batch 128, Adam 1e-3, SNets 3, GNet-T 2,
  GNet-R 5 epochs, sequential sub-networks.  Measured on 2 CPU cores (shared with other jobs): 248 s
  wall from a cold start (GNet-R 121 s, SNets 42 s, compose 3 s, GNet-T 46 s, figures and the rest
  about 35 s).  Reached: feature-map differences 0 (layers 1, 3) and 9.5e-07 (layer 5); test accuracy
  SNet-1..4 61.4 / 57.9 / 52.0 / 60.5 %, GNet-T composed 26.9 %, GNet-T fine-tuned 72.3 %, GNet-R
  initial 10.0 %, GNet-R trained 75.5 %.
* ``tiny`` - the cpu-smoke setting at seconds scale (widths 8 throughout, 512 / 256 images, 1 epoch
  each, ``vmap`` sub-networks: at this scale compiling dominates and vmap's single program compiles
  faster than the sequential one, measured 4.5 s against 8.2 s for the SNets phase); about 30 s on
  2 busy CPU cores, mostly compilation; nothing is learnt.

What it should reach.  Fig. 3.7: the feature maps are equal to float rounding at every layer and
sub-network (max |diff| ~1e-6 relative to maps of size ~10; with random weights at the paper's
224x224 geometry we measured 2e-6, 4e-6, 9e-6 at layers 1, 3, 5; the comparison runs at "highest"
matmul precision, so no TF32 on GPUs).  Fig. 3.8, the paper's qualitative
statement: even without further training the composed GNet-T highlights the important regions
(e.g. the cat), GNet-R before training is haphazard, and both trained global networks locate the
important regions.  The composed network is *not* the exact sum of the sub-networks at the logits
(global average pooling over the whole map, not the fields; SAME padding): GNet-T before
fine-tuning is an initialisation, its accuracy the ``GNet-T`` row.

Writes ``results/visualize/`` (``--out``): ``results.json``, ``results.md``, the two PNGs and
``cases/dogs_cats/`` (the engine's run directory: checkpoints, ``summary.json``, plots).  Re-running
the same command resumes training where it stopped and only redraws the figures.
"""

from __future__ import annotations

import dataclasses
import functools
import sys

import numpy as np

from experiments import common

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


# ============================================================================ Fig. 3.7: Theorem 2.1 (1)
def _sub_vars(stacked, k: int):
    import jax

    return jax.tree.map(lambda a: a[k], stacked)


@functools.lru_cache(maxsize=16)
def _maps_fn(model, layers):
    """jitted ``(variables, x) -> {layer: feature map}`` (op by op, a 10-conv net compiles for seconds)."""
    import jax

    return jax.jit(lambda v, x: model.feature_maps(v, x, layers=layers)[0])


@functools.lru_cache(maxsize=16)
def _cam_fn(model):
    """jitted ``(variables, x, classes) -> (CAM at the last conv's resolution, softmax probability of
    the classes)``: ``model.cam`` and the logits from one forward pass."""
    import jax
    import jax.numpy as jnp

    from dcnn_dd.models.zoo import class_activation_map

    last = len(model.widths)

    def fn(v, x, cls):
        maps, logits = model.feature_maps(v, x, layers=(last,))
        p = jax.nn.softmax(logits.astype(jnp.float32), -1)[jnp.arange(x.shape[0]), cls]
        return class_activation_map(maps[last], v["params"]["fc"]["kernel"], cls), p

    return jax.jit(fn)


def subdomain_maps(model, sub, global_vars, stacked_sub_vars, x, grid, layers=LAYERS) -> dict:
    """For each layer i and sub-network k: ``(global map on Omega_k and channel block k, sub-network
    k's map on the same region, the field Omega_k in global coordinates)``, arrays (B, h, w, c).

    ``x``: preprocessed inputs (B, H, W, C).  Omega_k is the activation field of subdomain k at
    layer i (``activation_field`` with the layer's windows, ``model.spatial_layers()``); sub-network
    coordinates are the field's minus ``origin_k / (cumulative stride)``, which needs every origin
    to be a multiple of the cumulative stride at each requested layer (``ValueError`` otherwise)."""
    import jax
    import jax.numpy as jnp

    from dcnn_dd.fields import activation_field, total_stride
    from dcnn_dd.grid import decompose_input

    windows = dict(model.spatial_layers())
    names = [f"layer{i}" for i in layers]
    missing = [n for n in names if n not in windows]
    if missing:
        raise ValueError(f"layers {missing} do not exist: the model has layers 1..{len(windows)}")
    nd = grid.ndim
    plan = {}  # layer -> [(field, sub box start)] per k, checked before computing anything
    for i, name in zip(layers, names):
        stride = total_stride(windows[name], nd)
        per_k = []
        for k, box in enumerate(grid.boxes):
            bad = [(ax, o) for ax, (o, s) in enumerate(zip(box.start, stride)) if o % s]
            if bad:
                ax, o = bad[0]
                raise ValueError(
                    f"layer {i}: origin {o} of sub-image {k + 1} (axis {ax}) is not a multiple of the cumulative "
                    f"stride {stride[ax]} at that layer, so sub-network {k + 1}'s feature map does not sit on the "
                    f"global one; choose origins divisible by {stride[ax]} or other layers")
            field = activation_field(windows[name], grid.shape, box)[-1]
            if field.empty:
                raise ValueError(f"layer {i}: the activation field of sub-image {k + 1} ({box}) is empty")
            per_k.append((field, tuple(f - o // s for f, o, s in zip(field.start, box.start, stride))))
        plan[i] = per_k

    x = jnp.asarray(x)
    xs = decompose_input(x, grid)
    out: dict = {}
    with jax.default_matmul_precision("highest"):  # no TF32 on GPUs: the comparison is at float32
        g_maps = _maps_fn(model, tuple(layers))(global_vars, x)
        sub_fn = _maps_fn(sub, tuple(layers))  # one compilation for the K sub-networks
        s_maps = [sub_fn(_sub_vars(stacked_sub_vars, k), xs[k]) for k in range(grid.K)]
    for i in layers:
        G = np.asarray(g_maps[i])  # noqa: N806
        out[i] = []
        for k, (field, start) in enumerate(plan[i]):
            S = np.asarray(s_maps[k][i])  # noqa: N806
            c = S.shape[-1]
            stop = tuple(a + n for a, n in zip(start, field.size))
            if any(a < 0 for a in start) or any(b > n for b, n in zip(stop, S.shape[1:-1])):
                raise ValueError(f"layer {i}: the field {field} of sub-image {k + 1} maps to [{start}, {stop}) in "
                                 f"sub-network coordinates, outside its map {S.shape[1:-1]}")
            g = G[(slice(None), *field.slices(), slice(k * c, (k + 1) * c))]
            s = S[(slice(None), *(slice(a, b) for a, b in zip(start, stop)), slice(None))]
            out[i].append((g, s, field))
    return out


def feature_map_agreement(model, sub, global_vars, stacked_sub_vars, x, grid, layers=LAYERS) -> dict:
    """Theorem 2.1 (1) on feature maps: ``{layer: [max |global on Omega_k, block k - sub-network k|
    for k = 1..K]}`` (see :func:`subdomain_maps`)."""
    maps = subdomain_maps(model, sub, global_vars, stacked_sub_vars, x, grid, layers)
    return {i: [float(np.max(np.abs(g - s))) for g, s, _ in per_k] for i, per_k in maps.items()}


# ============================================================================ figures
def _grey(images: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, C) -> float (B, H, W) in [0, 1]."""
    im = images.astype(np.float32) / 255.0
    if im.shape[-1] == 3:
        return im @ np.array([0.299, 0.587, 0.114], np.float32)
    return im.mean(-1)


def _upsample(maps: np.ndarray, shape) -> np.ndarray:
    """(B, h, w) -> (B, *shape), bilinear, each map min-max normalised to [0, 1]."""
    import jax

    up = np.asarray(jax.jit(jax.image.resize, static_argnums=(1, 2))(np.asarray(maps, np.float32),
                                                                      (maps.shape[0], *shape), "bilinear"))
    lo = up.min(axis=(1, 2), keepdims=True)
    hi = up.max(axis=(1, 2), keepdims=True)
    return (up - lo) / np.maximum(hi - lo, 1e-12)


def draw_feature_maps(path, image_grey, maps: dict, diffs: dict, grid, channels: int = 2, sample: int = 0):
    """Fig. 3.7: per layer the rows SNet-k / GNet-T on Omega_k / |difference| (same colour scale as
    the maps, so equal maps give a black row), columns the ``channels`` most varying channels of
    each sub-network; a top row with each sub-image and its place in the image."""
    import matplotlib.patches as mpatches

    plt = common.pyplot()

    K = grid.K  # noqa: N806
    layers = list(maps)
    ncols, nrows = K * channels, 1 + 3 * len(layers)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.45 * ncols + 0.9, 1.5 * nrows + 0.5), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for k, box in enumerate(grid.boxes):
        ax = axes[0, k * channels]
        ax.imshow(image_grey[box.slices()], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"sub-image {k + 1}", fontsize=8)
        if channels > 1:
            ax = axes[0, k * channels + 1]
            ax.imshow(image_grey, cmap="gray", vmin=0, vmax=1)
            ax.add_patch(mpatches.Rectangle((box.start[1] - 0.5, box.start[0] - 0.5), box.size[1], box.size[0],
                                            fill=False, ec="red", lw=1.5))
            ax.set_title(f"its place (k={k + 1})", fontsize=8)
        for j in range(2, channels):
            axes[0, k * channels + j].axis("off")
    axes[0, 0].set_ylabel("input", fontsize=8)
    row_names = ("SNet-k", "GNet-T on Ω_k,\nblock k", "|difference|")
    for r, i in enumerate(layers):
        for k, (g, s, _field) in enumerate(maps[i]):
            s0, g0 = s[sample], g[sample]
            order = list(np.argsort(-s0.reshape(-1, s0.shape[-1]).var(0))[:channels])
            for j in range(channels):
                col = k * channels + j
                if j >= len(order):  # the sub-network has fewer channels at this layer
                    for row in range(3):
                        axes[1 + 3 * r + row, col].axis("off")
                    continue
                ch = order[j]
                vmax = max(float(s0[..., ch].max()), float(g0[..., ch].max()), 1e-12)
                d = np.abs(g0[..., ch] - s0[..., ch])
                panels = ((s0[..., ch], f"SNet-{k + 1} ch {ch}"),
                          (g0[..., ch], f"GNet-T Ω{k + 1} ch {k * s0.shape[-1] + ch}"),
                          (d, f"max {d.max():.1e}"))
                for row, (img, label) in enumerate(panels):
                    ax = axes[1 + 3 * r + row, col]
                    ax.imshow(img, cmap="magma" if row == 2 else "viridis", vmin=0, vmax=vmax)
                    ax.set_title(label, fontsize=7)
        for row in range(3):
            extra = f"\nmax over k {max(diffs[i]):.1e}" if row == 2 else ""
            axes[1 + 3 * r + row, 0].set_ylabel(f"layer {i}: {row_names[row]}{extra}", fontsize=8,
                                                weight="bold" if row == 0 else "normal")
    fig.suptitle("Fig. 3.7: feature maps of the trained sub-networks (SNet-k) and the composed global network "
                 "(GNet-T before fine-tuning)\non the subdomain Ω_k of (2.15) and channel block k; "
                 f"layers {', '.join(map(str, layers))}, the {channels} most varying channels of each SNet-k",
                 fontsize=10)
    common.save_figure(fig, path, tight=False, dpi=80)


def draw_cam(path, image_grey, labels, class_names, sub_cams, cams: dict, probs: dict, sub_probs, grid):
    """Fig. 3.8: one row per image; (a) the K sub-networks as small panels in the grid's layout,
    then one column per global network in ``cams`` (title -> (B, H, W) maps in [0, 1])."""
    plt = common.pyplot()

    B = image_grey.shape[0]  # noqa: N806
    rows_o = sorted({b.start[0] for b in grid.boxes})
    cols_o = sorted({b.start[1] for b in grid.boxes})
    ncols = 1 + len(cams)
    fig = plt.figure(figsize=(2.6 * ncols, 2.7 * B + 0.5))
    outer = fig.add_gridspec(B, ncols, wspace=0.08, hspace=0.3)

    def overlay(ax, grey, cam, title):
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
        ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=7)

    head = fig.add_subplot(outer[0, 0], frameon=False)  # a title over the sub-network panels
    head.set_xticks([])
    head.set_yticks([])
    head.set_title("(a) SNet-1..K, grid layout", fontsize=7, pad=16)
    for b in range(B):
        inner = outer[b, 0].subgridspec(len(rows_o), len(cols_o), wspace=0.04, hspace=0.25)
        for k, box in enumerate(grid.boxes):
            ax = fig.add_subplot(inner[rows_o.index(box.start[0]), cols_o.index(box.start[1])])
            overlay(ax, image_grey[b][box.slices()], sub_cams[k][b],
                    f"SNet-{k + 1} p={sub_probs[k][b]:.2f}")
            if k == 0:
                ax.set_ylabel(f"{class_names[labels[b]]} (label {labels[b]})", fontsize=9)
        for j, (name, maps) in enumerate(cams.items(), start=1):
            ax = fig.add_subplot(outer[b, j])
            overlay(ax, image_grey[b], maps[b], (f"{name}\n" if b == 0 else "") + f"p(true)={probs[name][b]:.2f}")
    fig.suptitle("Fig. 3.8: CAM for the ground-truth class (red: high). (a) trained sub-networks, (b) GNet-T "
                 "composed, (c) GNet-T fine-tuned, (d) GNet-R initial, (e) GNet-R trained", fontsize=9)
    common.save_figure(fig, path, tight=False, dpi=90, bbox_inches="tight")


# ============================================================================ the experiment
def _load(run_dir, phase: str) -> dict:
    """``checkpoint.load_variables`` without orbax's absl warning about the checkpoint metadata file."""
    import logging

    from dcnn_dd.train.checkpoint import load_variables

    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return load_variables(run_dir, phase)
    finally:
        log.setLevel(level)


def pick_images(labels: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices, cycling over the classes in order of first appearance (different classes first)."""
    order = list(dict.fromkeys(int(v) for v in labels))
    per = {c: list(np.flatnonzero(labels == c)) for c in order}
    out: list[int] = []
    while len(out) < min(n, len(labels)):
        for c in order:
            if per[c] and len(out) < n:
                out.append(int(per[c].pop(0)))
    return np.asarray(out)


def run(args) -> dict:
    import jax

    from dcnn_dd.composition import compose, plan_for
    from dcnn_dd.fields import total_stride
    from dcnn_dd.grid import decompose_input
    from dcnn_dd import sharding
    from dcnn_dd.train.algorithm1 import Experiment

    setting = PRESETS[args.preset]()
    c = setting.config
    run_dir = args.out / "cases" / "dogs_cats"
    summary = common.run_case(c, run_dir, args)
    main_proc = jax.process_index() == 0

    ex = Experiment(c, data_path=args.data, data_dir=args.data_dir, num_devices=args.num_devices)
    k_r, _ = jax.random.split(jax.random.PRNGKey(c.seed))
    snets = _load(run_dir, "snets")
    plan = plan_for(ex.model, ex.sub, ex.grid, input_shape=(1, *ex.image_shape))
    nets = {
        "GNet-T": jax.device_get(jax.jit(lambda s: compose(plan, s))(snets)),
        "GNet-T-trained": _load(run_dir, "gnet_t"),
        "GNet-R": jax.device_get(ex.global_init(k_r)),
        "GNet-R-trained": _load(run_dir, "gnet_r"),
    }

    # test images: different classes first
    n_look = min(len(ex.test_source), 64)
    _, look_labels = ex.test_source.take(np.arange(n_look))
    ids = pick_images(look_labels, setting.n_images)
    images, labels = ex.test_source.take(ids)
    x = np.asarray(ex.prep(images, ids, 0, False))

    # ---- Fig. 3.7
    maps = subdomain_maps(ex.model, ex.sub, nets["GNet-T"], snets, x, ex.grid, LAYERS)
    diffs = {i: [float(np.max(np.abs(g - s))) for g, s, _ in per_k] for i, per_k in maps.items()}
    print(f"Fig. 3.7 / Theorem 2.1 (1): max |GNet-T (composed) on Omega_k, channel block k - SNet-k| on "
          f"{len(ids)} test images")
    for i in LAYERS:
        print(f"  layer {i}: " + ", ".join(f"k={k + 1}: {d:.2e}" for k, d in enumerate(diffs[i]))
              + f"  (field {maps[i][0][2].size} of the sub-network's map)")

    # ---- Fig. 3.8: CAMs and accuracies
    shape = ex.image_shape[:2]
    cams, probs = {}, {}
    titles = {"GNet-T": "(b) GNet-T composed", "GNet-T-trained": "(c) GNet-T fine-tuned",
              "GNet-R": "(d) GNet-R initial", "GNet-R-trained": "(e) GNet-R trained"}
    with jax.default_matmul_precision("highest"):
        g_cam, s_cam = _cam_fn(ex.model), _cam_fn(ex.sub)
        for name, v in nets.items():
            m, p = g_cam(v, x, labels)
            cams[titles[name]], probs[titles[name]] = _upsample(np.asarray(m), shape), np.asarray(p)
        xs = decompose_input(x, ex.grid)
        sub_cams, sub_probs = [], []
        for k in range(c.K):
            m, p = s_cam(_sub_vars(snets, k), xs[k], labels)
            sub_cams.append(_upsample(np.asarray(m), ex.grid.sub_shape))
            sub_probs.append(np.asarray(p))

    def gnet_r_init_acc():
        acc = ex.global_eval()(sharding.put_global(nets["GNet-R"], sharding.replicated(ex.dmesh)))["acc"]
        return {"acc": float(np.asarray(acc))}

    r0 = common.cached(args.out / "gnet_r_init.json", args.restart, gnet_r_init_acc)
    accs = {f"SNet-{k + 1}": a for k, a in enumerate(summary["snet_acc"])}
    accs.update({"GNet-T": summary["gnet_t_init_acc"], "GNet-T-trained": summary["gnet_t_trained_acc"],
                 "GNet-R": r0["acc"], "GNet-R-trained": summary["gnet_r_trained_acc"]})

    figures = dict(FIGURES)
    if main_proc:
        args.out.mkdir(parents=True, exist_ok=True)
        grey = _grey(images)
        draw_feature_maps(args.out / FIGURES["3.7"], grey[0], maps, diffs, ex.grid, setting.channels)
        names = CLASS_NAMES.get(c.dataset) or tuple(str(i) for i in range(ex.train_source.num_classes))
        draw_cam(args.out / FIGURES["3.8"], grey, labels, names, sub_cams, cams, probs, sub_probs, ex.grid)

    # ---- results
    windows = dict(ex.model.spatial_layers())
    key = {"dataset": c.dataset, "model": "DogsCatsCNN", "K": c.K, "overlap": bool(ex.grid.overlaps)}
    entries = [{"table": "fig3.7", "row": f"layer{i}", "metric": "max_abs_diff", **key, "value": max(diffs[i])}
               for i in LAYERS]
    entries += [{"table": "fig3.8", "row": name, "metric": "acc", **key, "value": None if a is None else float(a)}
                for name, a in accs.items()]
    t37 = common.md_table(["layer", "stride", "field Ω_k"] + [f"k={k + 1}" for k in range(c.K)] + ["max"],
                          [[i, total_stride(windows[f"layer{i}"], ex.grid.ndim)[0],
                            "x".join(map(str, maps[i][0][2].size))]
                           + [f"{d:.2e}" for d in diffs[i]] + [f"{max(diffs[i]):.2e}"] for i in LAYERS])
    t38 = common.md_table(["network", "test accuracy (%)"], [[n, common.pct(a)] for n, a in accs.items()])
    notes = [
        "Fig. 3.7 compares sub-network k's map with the composed network's map restricted to the activation field "
        "Omega_k of (2.15) and channel block k (Theorem 2.1 (1)); with SAME padding the field loses one cell per conv "
        "at every interior sub-image border, border padding counts as inside.",
        "Global average pooling: the composed network's logits are not the exact sum of the sub-networks' (the "
        f"average runs over the whole map, not the fields); measured max |global - sum of sub logits| = "
        f"{summary['theorem_2_1_max_abs_diff']:.3g} on the test set. GNet-T before fine-tuning is an initialisation.",
        "CAM for the ground-truth class, bilinearly upsampled and min-max normalised per map; column (a) shows the "
        "four sub-images each with its own sub-network's CAM, in the grid's 2x2 layout (overlaps shown twice).",
        "GNet-R before training = its initial variables, recomputed from the seed as Algorithm 1 draws them.",
        f"Epochs (our choice; the paper gives none for Section 3.1.3): SNets {c.snet_epochs}, GNet-T "
        f"{c.gnet_t_epochs}, GNet-R {c.gnet_r_epochs}.",
    ]
    if c.dataset == "cats_vs_dogs":
        notes.append("Cats vs. Dogs has a single TFDS split: train on train[:80%], test on train[80%:] (our choice).")
    return {"stand_in": setting.stand_in, "entries": entries,
            "tables_md": {f"Fig. 3.7: max |SNet-k - GNet-T on Ω_k| (feature maps, {len(ids)} test images)": t37,
                          "Fig. 3.8 networks: test accuracy": t38},
            "figures": figures, "notes": notes}


def main(argv=None) -> dict:
    return common.main("visualize", __doc__, run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
