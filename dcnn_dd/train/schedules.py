"""Learning-rate schedules of the paper (Section 3.1.1 and 3.1.2) and its plateau rule.

``lr(epoch) = Piecewise(...)(epoch) * Plateau.scale``.  The host evaluates both once per epoch
and passes the result to the jitted step, one value per network (the K sub-networks each keep
their own plateau state: they see different sub-images, so their validation accuracies differ).
"""

from __future__ import annotations

import dataclasses
import math
import numbers


@dataclasses.dataclass(frozen=True)
class Piecewise:
    """``base`` multiplied by ``factor`` at each ``(epoch, factor)`` milestone reached (0-based
    epochs: the milestone 80 applies from the 81st epoch on, "divided by 10 at 80 epochs")."""

    base: float
    milestones: tuple[tuple[int, float], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple((int(e), float(f)) for e, f in self.milestones))
        if self.base <= 0 or not math.isfinite(self.base):
            raise ValueError(f"learning rate base={self.base} must be positive and finite")
        epochs = [e for e, _ in self.milestones]
        if epochs != sorted(epochs) or any(e < 0 for e in epochs):
            raise ValueError(f"milestones {self.milestones} must be non-negative and increasing")

    def __call__(self, epoch: int) -> float:
        lr = self.base
        for e, f in self.milestones:
            if epoch >= e:
                lr *= f
        return lr

    def to_json(self) -> dict:
        return {"base": self.base, "milestones": [list(m) for m in self.milestones]}

    @classmethod
    def from_json(cls, d) -> Piecewise:
        """A constant (``1e-3``) or ``{"base": 1e-3, "milestones": [[80, 0.1], ...]}``; anything else
        (an unknown key such as ``"bas"``, a missing ``base``, a malformed milestone) is a ``ValueError``
        that quotes the schedule."""
        if isinstance(d, numbers.Real) and not isinstance(d, bool):
            return cls(float(d))
        if not isinstance(d, dict):
            raise ValueError(f"learning-rate schedule {d!r}: give a number or {{'base': ..., 'milestones': [[epoch, "
                             "factor], ...]}}")
        unknown = set(d) - {"base", "milestones"}
        if unknown or "base" not in d:
            raise ValueError(f"learning-rate schedule {d!r}: " + (f"unknown key(s) {sorted(unknown)}; " if unknown else "")
                             + ("" if "base" in d else "'base' is missing; ") + "the keys are 'base' and 'milestones'")
        base = d["base"]
        if isinstance(base, bool) or not isinstance(base, numbers.Real):
            raise ValueError(f"learning-rate schedule {d!r}: base={base!r} is not a number")
        milestones = d.get("milestones", ())
        try:
            ms = []
            for m in milestones:
                e, f = m
                if isinstance(e, bool) or not isinstance(e, numbers.Integral) or isinstance(f, bool) \
                        or not isinstance(f, numbers.Real):
                    raise TypeError
                ms.append((int(e), float(f)))
        except (TypeError, ValueError):
            raise ValueError(f"learning-rate schedule {d!r}: milestones must be [[epoch (int), factor (number)], "
                             "...]") from None
        for e, f in ms:
            if not (f > 0 and math.isfinite(f)):
                raise ValueError(f"learning-rate schedule {d!r}: the factor {f} at epoch {e} must be positive and finite")
        return cls(float(base), tuple(ms))


# Section 3.1.1 (CIFAR, batch 32): GNet-R 200 epochs; SNets 120; GNet-T 80 (same total: 200).
# Section 3.1.2 (Food101, batch 128, 300 iterations/epoch): GNet-R 200; SNets 100; GNet-T 100.
PAPER_SCHEDULES = {
    "cifar": {
        "gnet_r": (200, Piecewise(1e-3, ((80, 0.1), (140, 0.1), (160, 0.1), (180, 0.5)))),
        "snets": (120, Piecewise(1e-3, ((60, 0.1), (80, 0.1), (100, 0.1)))),
        "gnet_t": (80, Piecewise(1e-4, ((20, 0.1), (40, 0.1), (60, 0.5)))),
    },
    "food101": {
        "gnet_r": (200, Piecewise(1e-3, ((120, 0.1), (180, 0.1)))),
        "snets": (100, Piecewise(1e-3, ((80, 0.1),))),
        "gnet_t": (100, Piecewise(1e-3, ((60, 0.1), (80, 0.1)))),
    },
}


@dataclasses.dataclass(frozen=True)
class Plateau:
    """The paper's adaptive rule: divide the learning rate by ``sqrt(10)`` when the validation
    accuracy has not improved for ``patience`` epochs (Sections 3.1.1, 3.1.2).  ``mode``: the
    monitored metric's direction, ``max`` (the paper's accuracy: higher is better) or ``min``
    (e.g. ``val_loss``: an improvement is a strictly lower value); ``best`` None: nothing seen yet
    (-inf for ``max``, +inf for ``min``).  Immutable: :meth:`update` returns the next state, so it
    can be checkpointed as JSON (a state without ``mode``, as older runs saved it, is ``max``)."""

    patience: int = 5
    factor: float = 10 ** -0.5
    best: float | None = None
    wait: int = 0
    scale: float = 1.0
    mode: str = "max"

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"plateau mode={self.mode!r}: choose 'max' or 'min'")
        if self.best is None:
            object.__setattr__(self, "best", -math.inf if self.mode == "max" else math.inf)

    def update(self, value: float) -> Plateau:
        if (value > self.best) if self.mode == "max" else (value < self.best):
            return dataclasses.replace(self, best=float(value), wait=0)
        wait = self.wait + 1
        if wait >= self.patience:
            return dataclasses.replace(self, wait=0, scale=self.scale * self.factor)
        return dataclasses.replace(self, wait=wait)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["best"] = None if math.isinf(self.best) else self.best
        return d

    @classmethod
    def from_json(cls, d: dict) -> Plateau:
        return cls(**d)


def scaled_schedule(dataset: str, phase: str, fraction: float) -> tuple[int, Piecewise]:
    """The paper's schedule of ``phase`` for ``dataset`` (:data:`PAPER_SCHEDULES`) shrunk to
    ``fraction`` of its epochs, milestones scaled alike (rounded, at least 1 epoch apart from 0):
    the same shape of learning-rate decay for short runs (``fraction=1``: the paper's)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} must be in (0, 1]")
    epochs, sched = PAPER_SCHEDULES[dataset][phase]
    n = max(1, round(epochs * fraction))
    milestones = tuple((max(1, round(e * fraction)), f) for e, f in sched.milestones)
    return n, Piecewise(sched.base, milestones)
