"""The CNN-DNN figure: accuracies and phase wall times per case."""

from __future__ import annotations

from pathlib import Path

from experiments.cnn_dnn.config import ROWS, TIME_ROWS
from experiments.plotting import pyplot, save_figure


def figure(out: Path, cases, summaries) -> str:
    plt = pyplot()
    import numpy as np

    fig, (ax_a, ax_t) = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    keys = [k for k, _ in ROWS if k != "transfer_init"]
    labels = dict(ROWS)
    width = 0.8 / len(cases)
    for i, c in enumerate(cases):
        a = summaries[c.name]["acc"]
        vals = [np.mean(a["local"]) if k == "local" else a[k] for k in keys]
        xs = np.arange(len(keys)) + (i - (len(cases) - 1) / 2) * width
        ax_a.bar(xs, [np.nan if v is None else v for v in vals], width, label=c.name)
        lo, hi = min(a["local"]), max(a["local"])
        ax_a.errorbar(xs[0], np.mean(a["local"]), yerr=[[np.mean(a["local"]) - lo], [hi - np.mean(a["local"])]],
                      color="k", capsize=2, lw=1)
    ax_a.set_xticks(range(len(keys)), [labels[k] for k in keys], rotation=35, ha="right", fontsize=8)
    ax_a.set_ylabel("test accuracy")
    ax_a.set_ylim(0, 1.12)
    ax_a.grid(axis="y", alpha=0.3)
    ax_a.legend(fontsize=8, loc="upper left", ncol=len(cases))
    ax_a.set_title("accuracy (local CNNs: mean, bar = min..max)")
    tkeys = [k for k, _ in TIME_ROWS if k != "compose"]
    tl = dict(TIME_ROWS)
    for i, c in enumerate(cases):
        t = summaries[c.name]["time_s"]
        xs = np.arange(len(tkeys)) + (i - (len(cases) - 1) / 2) * width
        ax_t.bar(xs, [np.nan if t[k] is None else t[k] for k in tkeys], width, label=c.name)
    ax_t.set_xticks(range(len(tkeys)), [tl[k] for k in tkeys], rotation=35, ha="right", fontsize=8)
    ax_t.set_ylabel("wall time [s]")
    ax_t.set_title("phase wall times")
    ax_t.grid(axis="y", alpha=0.3)
    return save_figure(fig, out / "cnn_dnn.png")
