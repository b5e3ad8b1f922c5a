"""Learning-rate schedules: the paper's (Section 3.1.1 and 3.1.2), per-step ones, the plateau rule.

Per epoch (the paper's): ``lr(epoch) = Piecewise(...)(epoch) * Plateau.scale``, evaluated by the
host once per epoch.  Per step (beyond the paper): :class:`Warmup` (linear warm-up),
:class:`Cosine` (cosine decay) and :class:`WarmupCosine` (both), ``lr(t) = schedule.rate(t, T) *
Plateau.scale`` at the phase's step ``t`` (0-based, counted over its epochs) of ``T`` = epochs x
steps per epoch (the decay spans the phase's epochs; extra epochs keep the end rate), evaluated by
the host before every step.  Either way the result goes to the jitted step as an argument, one
value per network (the K sub-networks each keep their own plateau state: they see different
sub-images, so their validation accuracies differ).  :func:`schedule_from_json` reads any of them
from a configuration: a number or ``{"base", "milestones"}`` (:class:`Piecewise`, unchanged), or
``{"name": "warmup" | "cosine" | "warmup_cosine", ...}``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from typing import ClassVar, Union


@dataclasses.dataclass(frozen=True)
class Piecewise:
    """``base`` multiplied by ``factor`` at each ``(epoch, factor)`` milestone reached (0-based
    epochs: the milestone 80 applies from the 81st epoch on, "divided by 10 at 80 epochs")."""

    base: float
    milestones: tuple[tuple[int, float], ...] = ()
    per_step: ClassVar[bool] = False  # evaluated once per epoch (the loop's path of the paper's runs)

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


def _number(d, key: str, default=None, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``d[key]`` (or ``default``) as a finite float >= ``minimum`` (> with ``strict``); else a
    ``ValueError`` that quotes the schedule."""
    v = d.get(key, default)
    if v is None:
        raise ValueError(f"learning-rate schedule {d!r}: {key!r} is missing")
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
            or (v <= minimum if strict else v < minimum):
        raise ValueError(f"learning-rate schedule {d!r}: {key}={v!r} must be a finite number "
                         + ("> " if strict else ">= ") + f"{minimum:g}")
    return float(v)


def _steps(d, key: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"learning-rate schedule {d!r}: {key}={v!r} must be an integer >= 1")
    return int(v)


def _cosine(base: float, end: float, t: int, n: int) -> float:
    """``end + (base - end) (1 + cos(pi t / n)) / 2`` for step ``t`` of ``n`` (``end`` from ``n`` on)."""
    if n <= 0 or t >= n:
        return end
    return end + (base - end) * 0.5 * (1.0 + math.cos(math.pi * t / n))


@dataclasses.dataclass(frozen=True)
class Warmup:
    """Linear warm-up: ``init`` at step 0 rising to ``base`` at ``warmup_steps``, then ``base``
    (``optax.linear_schedule(init, base, warmup_steps)``)."""

    base: float
    warmup_steps: int
    init: float = 0.0
    name: ClassVar[str] = "warmup"
    per_step: ClassVar[bool] = True

    def rate(self, step: int, total_steps: int) -> float:
        f = min(step, self.warmup_steps) / self.warmup_steps
        return self.init + (self.base - self.init) * f

    def to_json(self) -> dict:
        return {"name": self.name, "base": self.base, "warmup_steps": self.warmup_steps, "init": self.init}


@dataclasses.dataclass(frozen=True)
class Cosine:
    """Cosine decay from ``base`` at step 0 to ``end`` at the phase's last step and after
    (``optax.cosine_decay_schedule(base, T, alpha=end / base)``)."""

    base: float
    end: float = 0.0
    name: ClassVar[str] = "cosine"
    per_step: ClassVar[bool] = True

    def rate(self, step: int, total_steps: int) -> float:
        return _cosine(self.base, self.end, step, total_steps)

    def to_json(self) -> dict:
        return {"name": self.name, "base": self.base, "end": self.end}


@dataclasses.dataclass(frozen=True)
class WarmupCosine:
    """:class:`Warmup` for ``warmup_steps``, then cosine decay to ``end`` over the rest of the
    phase's steps (``optax.warmup_cosine_decay_schedule(init, base, warmup_steps, T, end)``)."""

    base: float
    warmup_steps: int
    end: float = 0.0
    init: float = 0.0
    name: ClassVar[str] = "warmup_cosine"
    per_step: ClassVar[bool] = True

    def rate(self, step: int, total_steps: int) -> float:
        if step < self.warmup_steps:
            return Warmup(self.base, self.warmup_steps, self.init).rate(step, total_steps)
        return _cosine(self.base, self.end, step - self.warmup_steps, total_steps - self.warmup_steps)

    def to_json(self) -> dict:
        return {"name": self.name, "base": self.base, "warmup_steps": self.warmup_steps, "end": self.end,
                "init": self.init}


# name -> (class, required keys, optional keys with their defaults)
PER_STEP = {
    "warmup": (Warmup, ("base", "warmup_steps"), {"init": 0.0}),
    "cosine": (Cosine, ("base",), {"end": 0.0}),
    "warmup_cosine": (WarmupCosine, ("base", "warmup_steps"), {"end": 0.0, "init": 0.0}),
}


Schedule = Union[Piecewise, Warmup, Cosine, WarmupCosine]  # what a phase's ``schedule`` is


def schedule_from_json(d) -> Schedule:
    """A configuration's learning-rate schedule: a number or ``{"base", "milestones"}`` (per epoch,
    :meth:`Piecewise.from_json`, today's forms unchanged) or a per-step schedule
    ``{"name": "warmup", "base", "warmup_steps", "init": 0}``, ``{"name": "cosine", "base",
    "end": 0}``, ``{"name": "warmup_cosine", "base", "warmup_steps", "end": 0, "init": 0}``.
    Anything else is a one-line ``ValueError`` that quotes the schedule (an unknown name lists the
    close ones)."""
    if not isinstance(d, dict) or "name" not in d:
        return Piecewise.from_json(d)
    name = d["name"]
    if name not in PER_STEP:
        close = difflib.get_close_matches(str(name), PER_STEP, n=3)
        raise ValueError(f"learning-rate schedule {d!r}: unknown name {name!r}"
                         + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                         + f"; the per-step schedules are {sorted(PER_STEP)}, a per-epoch one has no name "
                         "(a number or {'base': ..., 'milestones': [[epoch, factor], ...]})")
    cls, required, optional = PER_STEP[name]
    unknown = set(d) - {"name", *required, *optional}
    missing = [k for k in required if k not in d]
    if unknown or missing:
        raise ValueError(f"learning-rate schedule {d!r}: " + (f"unknown key(s) {sorted(unknown)}; " if unknown else "")
                         + (f"missing {missing}; " if missing else "")
                         + f"a {name!r} schedule has the keys {list(required)} and optionally {sorted(optional)}")
    kw = {"base": _number(d, "base", strict=True)}
    if "warmup_steps" in required:
        kw["warmup_steps"] = _steps(d, "warmup_steps")
    for k, default in optional.items():
        kw[k] = _number(d, k, default)
        if kw[k] > kw["base"]:
            raise ValueError(f"learning-rate schedule {d!r}: {k}={kw[k]!r} exceeds base={kw['base']!r}")
    return cls(**kw)


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
