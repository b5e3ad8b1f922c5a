"""The layer-parallel figures: loss and validation accuracy against iterations and wall time."""

from __future__ import annotations

from experiments.plotting import pyplot, save_figure


def draw(path, name: str, result: dict) -> str:
    plt = pyplot()

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for method, r in result["methods"].items():
        h = r["history"]
        for row, key in enumerate(("loss", "val_acc")):
            for col, xkey in enumerate(("step", "wall_s")):
                axes[row, col].plot([e[xkey] for e in h], [e[key] for e in h], marker=".", label=method)
                axes[row, col].set_xlabel("optimiser step" if xkey == "step" else "wall time of the steps (s)")
                axes[row, col].set_ylabel("training loss (batch)" if key == "loss" else "validation accuracy")
    axes[0, 0].legend()
    fig.suptitle(f"{name}: layer-serial vs layer-parallel (MGRIT, m={result['cfactor']}, {result['levels']} levels)")
    return save_figure(fig, path)
