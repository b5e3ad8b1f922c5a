"""Spatial decomposition of inputs into K sub-images (Section 2.1.1-2.1.2 of Gu et al.).

A :class:`Grid` is a list of K equally sized boxes (subdomains Omega_k) of an N-d spatial
domain (N = 1 for signals (B, L, C), 2 for images (B, H, W, C), 3 for volumes
(B, D, H, W, C)). :func:`decompose_input` is the map x -> (D_{Omega_1}(x), ..., D_{Omega_K}(x))
of Algorithm 1, step 1: a pure, jit-able function (the grid is static) returning an array of
shape (K, B, *sub_shape, C).

Conventions
-----------
* Subdomains are numbered row-major over the grid parts (k = r * cols + c for 2-D), the same
  order as the channel blocks of the composed network (2.11)-(2.14).
* ``overlap`` is the number of pixels two neighbouring sub-images share.  The paper's CIFAR
  setting "4 sub-images of 20x20 with overlap" of a 32x32 image is ``overlap=8``
  (origins 0 and 12).
* ``crop`` removes that many pixels at each border before decomposing (the paper's 16-partition
  Food101 layout: crop 24 px of 224 -> 176, then 4x4 sub-images of 70x70).  Boxes are stored in
  the coordinates of the *uncropped* input, so the global network still sees the whole image.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


def whole_number(value, name: str) -> int:
    """``value`` as an int; a clear ``ValueError`` for anything that is not a whole number (2.5, "2", True)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or value != value or (isinstance(value, (float, np.floating)) and not float(value).is_integer()):
        raise ValueError(f"{name}={value!r}: expected a whole number of pixels")
    return int(value)


def per_axis(value, ndim: int, name: str) -> tuple[int, ...]:
    """One whole number per spatial axis: a number is repeated ``ndim`` times, a sequence checked."""
    if isinstance(value, (int, np.integer, float, np.floating, bool, np.bool_)):
        return (whole_number(value, name),) * ndim
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name}={value!r}: expected a whole number or one per spatial axis")
    value = tuple(whole_number(v, name) for v in value)
    if len(value) != ndim:
        raise ValueError(f"{name}={value} has {len(value)} entries, expected {ndim} (one per spatial axis)")
    return value


@dataclasses.dataclass(frozen=True)
class Box:
    """An axis-aligned box ``[start, start + size)`` of an N-d index space (a Cartesian product
    of consecutive index sets, the "neighbour preserving" subdomains of Section 2.1.1)."""

    start: tuple[int, ...]
    size: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "start", tuple(int(s) for s in self.start))
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if len(self.start) != len(self.size):
            raise ValueError(f"Box start {self.start} and size {self.size} differ in rank")

    @property
    def ndim(self) -> int:
        return len(self.start)

    @property
    def stop(self) -> tuple[int, ...]:
        return tuple(a + n for a, n in zip(self.start, self.size))

    @property
    def empty(self) -> bool:
        return any(n <= 0 for n in self.size)

    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, a + n) for a, n in zip(self.start, self.size))

    def shift(self, offset: Sequence[int]) -> Box:
        return Box(tuple(a + o for a, o in zip(self.start, offset)), self.size)

    def __repr__(self) -> str:
        return "Box(" + " x ".join(f"[{a}:{a + n}]" for a, n in zip(self.start, self.size)) + ")"


@dataclasses.dataclass(frozen=True)
class Grid:
    """K equally sized subdomains (boxes) of a spatial domain of shape ``shape``.

    Build one with :meth:`uniform` (the paper's rows x cols layouts, with or without overlap,
    optional central crop) or :meth:`from_origins` (any layout, e.g. the 8-partition one).
    """

    shape: tuple[int, ...]
    boxes: tuple[Box, ...]
    crop: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "boxes", tuple(self.boxes))
        object.__setattr__(self, "crop", per_axis(self.crop or 0, len(self.shape), "crop"))
        if not self.boxes:
            raise ValueError("a Grid needs at least one subdomain")
        if len(self.shape) not in (1, 2, 3):
            raise ValueError(f"Grid shape {self.shape}: only 1-, 2- and 3-d domains are supported")
        sizes = {b.size for b in self.boxes}
        if len(sizes) != 1:
            raise ValueError(f"all sub-images must have one size to be stacked, got sizes {sorted(sizes)}")
        for k, b in enumerate(self.boxes):
            if b.ndim != self.ndim:
                raise ValueError(f"subdomain {k} {b} has rank {b.ndim}, the grid has rank {self.ndim}")
            if b.empty:
                raise ValueError(f"subdomain {k} has size {b.size}: sub-images of size 0")
            if any(a < 0 or a + n > s for a, n, s in zip(b.start, b.size, self.shape)):
                raise ValueError(f"subdomain {k} {b} does not fit in the input of shape {self.shape}")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def uniform(
        cls,
        shape: int | Sequence[int],
        parts: int | Sequence[int],
        *,
        size: int | Sequence[int] | None = None,
        overlap: int | Sequence[int] | None = None,
        crop: int | Sequence[int] = 0,
    ) -> Grid:
        """``parts[i]`` sub-images along spatial axis i, evenly spread, covering the (cropped) domain.

        Give at most one of ``size`` (the sub-image size) and ``overlap`` (pixels shared by
        neighbours); neither means no overlap, which needs the cropped length to be divisible by
        the number of parts.  With overlap the origins are ``round(i * (L - size) / (n - 1))``.
        """
        shape = (whole_number(shape, "shape"),) if not hasattr(shape, "__iter__") else tuple(whole_number(s, "shape") for s in shape)
        ndim = len(shape)
        parts = per_axis(parts, ndim, "parts")
        crop = per_axis(crop, ndim, "crop")
        if size is not None and overlap is not None:
            raise ValueError("give either size= or overlap=, not both")
        starts_per_axis, sizes = [], []
        for ax in range(ndim):
            n, c = parts[ax], crop[ax]
            length = shape[ax] - 2 * c
            if c < 0 or length <= 0:
                raise ValueError(f"crop={c} leaves nothing of the input length {shape[ax]} on axis {ax}")
            if n < 1:
                raise ValueError(f"parts={parts}: the number of parts on axis {ax} must be >= 1")
            if n > length:
                raise ValueError(f"grid of {n} parts on axis {ax} is larger than the (cropped) input length {length}")
            if size is not None:
                s = per_axis(size, ndim, "size")[ax]
                if s < 1:
                    raise ValueError(f"size={s} on axis {ax}: sub-images of size 0")
                if s > length:
                    raise ValueError(f"sub-image size {s} on axis {ax} exceeds the (cropped) input length {length}")
                if n * s < length:
                    raise ValueError(
                        f"{n} sub-images of size {s} cannot cover length {length} on axis {ax} "
                        f"(the decomposition (2.6) must be complete)"
                    )
            elif overlap is not None:
                ov = per_axis(overlap, ndim, "overlap")[ax]
                if ov < 0:
                    raise ValueError(f"overlap={ov} on axis {ax} must be >= 0")
                s = math.ceil((length + (n - 1) * ov) / n)
                if ov >= s:
                    raise ValueError(f"overlap={ov} on axis {ax} is >= the sub-image size {s}")
            else:
                if length % n:
                    raise ValueError(
                        f"length {length} on axis {ax} is not divisible by {n} parts; "
                        f"pass overlap= or size= for an overlapping decomposition"
                    )
                s = length // n
            if n == 1:
                origins = [c + (length - s) // 2]
            else:
                origins = [c + round(i * (length - s) / (n - 1)) for i in range(n)]
            starts_per_axis.append(origins)
            sizes.append(s)
        boxes = tuple(Box(start, sizes) for start in itertools.product(*starts_per_axis))
        return cls(shape, boxes, crop)

    @classmethod
    def from_origins(cls, shape: Sequence[int], origins: Sequence[Sequence[int]], size: Sequence[int]) -> Grid:
        """Any layout: one origin per subdomain, a common sub-image ``size``."""
        shape = tuple(whole_number(s, "shape") for s in shape)
        size = per_axis(size, len(shape), "size")
        if isinstance(origins, (str, bytes, dict)) or not hasattr(origins, "__iter__"):
            raise ValueError(f"origins={origins!r}: expected one origin (a list of {len(shape)} ints) per subdomain")
        return cls(shape, tuple(Box(per_axis(o, len(shape), "origin"), size) for o in origins))

    # ------------------------------------------------------------------ properties
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def K(self) -> int:  # noqa: N802 - the paper's symbol
        return len(self.boxes)

    @property
    def sub_shape(self) -> tuple[int, ...]:
        return self.boxes[0].size

    @property
    def origins(self) -> tuple[tuple[int, ...], ...]:
        return tuple(b.start for b in self.boxes)

    @property
    def overlaps(self) -> bool:
        """True when some pixel belongs to two subdomains."""
        return bool((self.coverage() > 1).any())

    def coverage(self) -> np.ndarray:
        """How many subdomains contain each pixel (0 where the grid leaves a gap, e.g. a crop)."""
        count = np.zeros(self.shape, dtype=np.int32)
        for b in self.boxes:
            count[b.slices()] += 1
        return count

    @property
    def is_complete(self) -> bool:
        """(2.6): the subdomains cover the whole domain and are pairwise disjoint."""
        return bool((self.coverage() == 1).all())

    def check_aligned(self, stride: int | Sequence[int], where: str = "the flatten layer") -> None:
        """Raise ``ValueError`` unless every origin is a multiple of the network's total stride."""
        stride = per_axis(stride, self.ndim, "stride")
        for k, b in enumerate(self.boxes):
            for ax, (a, s) in enumerate(zip(b.start, stride)):
                if a % s:
                    raise ValueError(
                        f"subdomain {k} origin {a} on axis {ax} is not aligned with the network's total "
                        f"stride {s} at {where}: sub-network feature maps would not sit on the global grid"
                    )

    def __repr__(self) -> str:
        ov = "overlap" if self.overlaps else "no overlap"
        return f"Grid(K={self.K}, shape={self.shape}, sub_shape={self.sub_shape}, origins={list(self.origins)}, {ov})"


def decompose_input(x, grid: Grid):
    """Images (B, *grid.shape, C) -> sub-images (K, B, *grid.sub_shape, C). Pure and jit-able."""
    if x.ndim != grid.ndim + 2:
        names = {1: "(B, L, C)", 2: "(B, H, W, C)", 3: "(B, D, H, W, C)"}[grid.ndim]
        raise ValueError(f"wrong input rank: a {grid.ndim}-d grid takes inputs {names}, got shape {tuple(x.shape)}")
    if tuple(x.shape[1:-1]) != grid.shape:
        raise ValueError(f"input spatial shape {tuple(x.shape[1:-1])} does not match the grid's {grid.shape}")
    return jnp.stack([x[(slice(None),) + b.slices()] for b in grid.boxes])


def assemble(subs, grid: Grid):
    """Inverse of :func:`decompose_input` for a complete (non-overlapping) grid:
    (K, B, *sub_shape, C) -> (B, *shape, C).  Used for auto-encoders, whose composed output is
    the concatenation of the sub-network outputs (Section 2.4)."""
    if not grid.is_complete:
        raise ValueError("assemble needs a complete, non-overlapping grid (2.6); this grid overlaps or leaves gaps")
    if subs.shape[0] != grid.K:
        raise ValueError(f"K inconsistent: {subs.shape[0]} sub-images for a grid of K={grid.K}")
    out = jnp.zeros(subs.shape[1:2] + grid.shape + subs.shape[-1:], subs.dtype)
    for k, b in enumerate(grid.boxes):
        out = out.at[(slice(None),) + b.slices()].set(subs[k])
    return out


# ---------------------------------------------------------------------- the paper's layouts
def paper_grid(name: str) -> Grid:
    """The input layouts of Section 3 by name.

    ``cifar``: 32x32 -> 2x2 of 16x16; ``cifar-overlap``: 2x2 of 20x20 (origins 0, 12);
    ``food101-4``: 224 -> 2x2 of 140x140 (origins 0, 84); ``food101-8``: our 8-partition layout in the
    spirit of Fig. 3.4 - 2 rows x 4 columns of 140x80 sub-images (row origins 0, 84; column origins
    0, 48, 96, 144), i.e. the 4-partition rows split once more across the width, with overlap;
    ``food101-16``: crop 24 px -> 176x176, then 4x4 of 70x70 with overlap (origins 24, 59, 95, 130).
    """
    layouts = {
        "cifar": lambda: Grid.uniform((32, 32), 2),
        "cifar-overlap": lambda: Grid.uniform((32, 32), 2, size=20),
        "food101-4": lambda: Grid.uniform((224, 224), 2, size=140),
        "food101-8": lambda: Grid.uniform((224, 224), (2, 4), size=(140, 80)),
        "food101-16": lambda: Grid.uniform((224, 224), 4, size=70, crop=24),
    }
    if name not in layouts:
        raise ValueError(f"unknown layout {name!r}; choose one of {sorted(layouts)}")
    return layouts[name]()
