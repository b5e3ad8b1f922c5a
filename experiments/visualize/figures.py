"""Figs. 3.7 and 3.8 of Gu et al. drawn from computed maps (matplotlib through ``experiments.plotting``)."""

from __future__ import annotations

import numpy as np

from experiments.plotting import pyplot, save_figure


def grey_images(images: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, C) -> float (B, H, W) in [0, 1]."""
    im = images.astype(np.float32) / 255.0
    if im.shape[-1] == 3:
        return im @ np.array([0.299, 0.587, 0.114], np.float32)
    return im.mean(-1)


def draw_feature_maps(path, image_grey, maps: dict, diffs: dict, grid, channels: int = 2, sample: int = 0):
    """Fig. 3.7: per layer the rows SNet-k / GNet-T on Omega_k / |difference| (same colour scale as
    the maps, so equal maps give a black row), columns the ``channels`` most varying channels of
    each sub-network; a top row with each sub-image and its place in the image."""
    import matplotlib.patches as mpatches

    plt = pyplot()

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
    save_figure(fig, path, tight=False, dpi=80)


def draw_cam(path, image_grey, labels, class_names, sub_cams, cams: dict, probs: dict, sub_probs, grid):
    """Fig. 3.8: one row per image; (a) the K sub-networks as small panels in the grid's layout,
    then one column per global network in ``cams`` (title -> (B, H, W) maps in [0, 1])."""
    plt = pyplot()

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
    save_figure(fig, path, tight=False, dpi=90, bbox_inches="tight")
