"""The layer-parallel experiment's presets: each a function returning its two :class:`Problem`\\ s
(``peaks`` and ``fashion``).  ``--set`` changes a field of :class:`Problem` in both (``--set
steps=50``, ``--set budget=3``)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    n_layers: int
    width: int
    n_train: int
    n_val: int
    steps: int
    batch: int | None  # None: full batch
    lr: float
    eval_every: int
    T: float = 5.0  # noqa: N815
    cfactor: int = 4
    min_coarse: int = 4
    budget: int = 2
    rtol: float = 1e-5
    alpha: float = 1e-6
    beta: float = 1e-4


def paper() -> list[Problem]:
    """The paper's sizes: peaks N = 1024, 5000 / 1000 points, 1000 full-batch steps; fashion N = 256,
    8 channels, all 60,000 images, batch 100, 3000 steps; m = 4, levels down to >= 4 coarse steps."""
    return [Problem("peaks", 1024, 8, 5000, 1000, 1000, None, 1e-2, 50),
            Problem("fashion", 256, 8, 60000, 10000, 3000, 100, 1e-3, 250, T=2.0)]


def gpu_small() -> list[Problem]:
    """Peaks N = 256, 500 steps; fashion N = 64, 4 channels, 20,000 images, 1000 steps."""
    return [Problem("peaks", 256, 8, 5000, 1000, 500, None, 1e-2, 25),
            Problem("fashion", 64, 4, 20000, 2000, 1000, 100, 1e-3, 100, T=2.0)]


def cpu_smoke() -> list[Problem]:
    """Peaks N = 64 (3 levels), 2000 / 1000 points, 300 steps; fashion N = 16 (2 levels), 4 channels,
    5000 / 1000 images, batch 100, 150 steps (155 s on 2 CPU cores)."""
    return [Problem("peaks", 64, 8, 2000, 1000, 300, None, 1e-2, 15),
            Problem("fashion", 16, 4, 5000, 1000, 150, 100, 2e-3, 15, T=2.0, min_coarse=4)]


def tiny() -> list[Problem]:
    """Peaks N = 8, fashion N = 8, a few steps: seconds, mostly compilation (the tests)."""
    return [Problem("peaks", 8, 4, 200, 100, 6, None, 1e-2, 3, min_coarse=2),
            Problem("fashion", 8, 2, 128, 64, 4, 32, 1e-3, 2, T=2.0, min_coarse=2)]


PRESETS = {"paper": paper, "gpu-small": gpu_small, "cpu-smoke": cpu_smoke, "tiny": tiny}
