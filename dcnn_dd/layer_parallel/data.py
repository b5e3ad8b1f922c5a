"""The "peaks" classification problem of Guenther et al. (2020), Sec. 4.1 (generated, no download).

Points x uniform in [-3, 3]^2 are labelled by the level set of MATLAB's ``peaks`` function they
fall into: 5 classes, with thresholds at the 20/40/60/80 % quantiles of peaks on a fine grid of the
square (so the classes cover about equal areas).
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 5


def peaks_fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (3 * (1 - x) ** 2 * np.exp(-x**2 - (y + 1) ** 2) - 10 * (x / 5 - x**3 - y**5) * np.exp(-x**2 - y**2)
            - np.exp(-(x + 1) ** 2 - y**2) / 3)


def _thresholds() -> np.ndarray:
    g = np.linspace(-3, 3, 301)
    X, Y = np.meshgrid(g, g)  # noqa: N806
    return np.quantile(peaks_fn(X, Y), [0.2, 0.4, 0.6, 0.8])


def peaks(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (n, 2) float32 in [-3, 3]^2 and their labels (n,) int32 in 0..4."""
    if n < 1:
        raise ValueError(f"n={n}: need at least one point")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(n, 2))
    labels = np.searchsorted(_thresholds(), peaks_fn(x[:, 0], x[:, 1])).astype(np.int32)
    return x.astype(np.float32), labels
