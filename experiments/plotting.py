"""Figures: matplotlib without a display, and one way to write a PNG."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (the experiments only write PNGs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, *, tight: bool = True, dpi: int = 110, **savefig_kw) -> str:
    """Write ``fig`` as a PNG (``tight``: ``tight_layout`` first) and close it; returns the file name
    (what ``results.json``'s ``figures`` lists)."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, **savefig_kw)
    plt.close(fig)
    return Path(path).name
