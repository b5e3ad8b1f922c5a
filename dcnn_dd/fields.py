"""Activation fields (Section 2.1.1 of Gu et al.).

Given a network and a subdomain Omega of its input, the activation field G_{F,l}(Omega) is the
largest subdomain of layer l's output that depends only on the input restricted to Omega.
For the windowed layers of a CNN (convolutions, pooling) it is computed exactly by interval
arithmetic from each layer's :class:`Window` (kernel, stride, padding): output index i reads the
real (non-padding) input cells ``[i*s - p, i*s - p + t) & [0, n)``, and belongs to the field iff
that range lies inside the field of the previous layer.  Element-wise layers (activations,
BatchNorm in inference mode, biases) do not change fields.

Theorem 2.1 (1) says that on this field, restricted to channel block k, the composed global
network's layer output equals sub-network k's.  For that the field must have the sub-network's
feature-map shape, which holds with valid padding and subdomain origins aligned with the total
stride; :func:`flatten_fields` checks it, and the first-FC composition (2.13) uses it.

For a network given only as a function, :func:`probe_activation_field` measures the field by
perturbing the input outside Omega (a Monte-Carlo check, used by the tests against the exact one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dcnn_dd.grid import Box, Grid, per_axis


@dataclasses.dataclass(frozen=True)
class Window:
    """A windowed layer along every spatial axis: a convolution or a pooling.

    ``padding`` is ``"VALID"``, ``"SAME"`` (XLA/Flax convention: the extra padding goes to the
    end) or explicit ``((lo, hi), ...)`` per axis.
    """

    kernel: int | tuple[int, ...]
    stride: int | tuple[int, ...] = 1
    padding: str | tuple = "VALID"

    def _axis(self, ndim: int):
        t = per_axis(self.kernel, ndim, "kernel")
        s = per_axis(self.stride, ndim, "stride")
        return t, s

    def out_shape(self, in_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(n_out for n_out, _ in self._geometry(in_shape))

    def _geometry(self, in_shape: Sequence[int]) -> list[tuple[int, int]]:
        """Per axis: (output length, padding before)."""
        ndim = len(in_shape)
        t, s = self._axis(ndim)
        geo = []
        for ax, n in enumerate(in_shape):
            if isinstance(self.padding, str):
                pad = self.padding.upper()
                if pad == "VALID":
                    n_out, lo = (n - t[ax]) // s[ax] + 1, 0
                elif pad == "SAME":
                    n_out = -(-n // s[ax])
                    total = max((n_out - 1) * s[ax] + t[ax] - n, 0)
                    lo = total // 2
                else:
                    raise ValueError(f"unknown padding {self.padding!r}")
            else:
                lo, hi = self.padding[ax]
                n_out = (n + lo + hi - t[ax]) // s[ax] + 1
            if n_out < 1:
                raise ValueError(f"window {self} leaves no output on an input of length {n} (axis {ax})")
            geo.append((n_out, lo))
        return geo


def activation_field(windows: Sequence[Window], in_shape: Sequence[int], box: Box) -> list[Box]:
    """The activation field of ``box`` at the output of every windowed layer (exact).

    Returns one :class:`Box` per window, in that layer's output coordinates; an empty box
    (size 0 on some axis) means no output of that layer depends on ``box`` alone.
    """
    shape = tuple(int(n) for n in in_shape)
    if len(shape) != box.ndim:
        raise ValueError(f"box {box} has rank {box.ndim}, the input shape {shape} has rank {len(shape)}")
    lo_b, hi_b = list(box.start), list(box.stop)
    fields = []
    for w in windows:
        t, s = w._axis(len(shape))
        geo = w._geometry(shape)
        new_lo, new_hi, new_shape = [], [], []
        for ax, (n_out, pad) in enumerate(geo):
            inside = [
                (max(i * s[ax] - pad, 0) >= lo_b[ax]) and (min(i * s[ax] - pad + t[ax], shape[ax]) <= hi_b[ax])
                for i in range(n_out)
            ]
            idx = [i for i, ok in enumerate(inside) if ok]
            if idx:
                new_lo.append(idx[0])
                new_hi.append(idx[-1] + 1)
            else:
                new_lo.append(0)
                new_hi.append(0)
            new_shape.append(n_out)
        lo_b, hi_b, shape = new_lo, new_hi, tuple(new_shape)
        fields.append(Box(lo_b, [h - lo for lo, h in zip(lo_b, hi_b)]))
    return fields


def total_stride(windows: Sequence[Window], ndim: int) -> tuple[int, ...]:
    """Product of the strides: how far the field moves when the subdomain moves by one cell."""
    out = [1] * ndim
    for w in windows:
        _, s = w._axis(ndim)
        out = [a * b for a, b in zip(out, s)]
    return tuple(out)


def flatten_fields(
    grid: Grid,
    feature_shape: Sequence[int],
    sub_feature_shape: Sequence[int],
    *,
    windows: Sequence[Window] | None = None,
    stride: int | Sequence[int] | None = None,
    strict: bool = True,
    where: str = "the flatten layer",
) -> tuple[Box, ...]:
    """Where each sub-network's last feature map sits in the global one (used by (2.13)).

    With ``windows`` (the network's windowed layers up to the flatten) this is the activation
    field of each subdomain.  Without, a total ``stride`` is used (given, or inferred from
    valid-padding geometry as ``(H - h) / (H' - h')`` between input and feature shapes), and the
    field of subdomain k starts at ``origin_k / stride``.  In strict mode (the theorem-exact
    setting) each field must have exactly the sub-network's feature shape and origins must be
    aligned with the stride, otherwise a ``ValueError`` says which; ``strict=False`` places
    sub-kernels at ``floor(origin / stride)`` (an initialisation only, e.g. VGG16 with same padding).
    """
    feature_shape = tuple(int(n) for n in feature_shape)
    sub_feature_shape = tuple(int(n) for n in sub_feature_shape)
    nd = grid.ndim
    if len(feature_shape) != nd or len(sub_feature_shape) != nd:
        raise ValueError(
            f"feature shapes {feature_shape} / {sub_feature_shape} at {where} do not have the grid's rank {nd}"
        )
    if windows is not None:
        out = []
        for k, b in enumerate(grid.boxes):
            f = activation_field(windows, grid.shape, b)[-1] if windows else b
            if f.size != sub_feature_shape:
                if strict:
                    raise ValueError(
                        f"the activation field of subdomain {k} ({b}) at {where} is {f}, which does not have the "
                        f"sub-network's feature shape {sub_feature_shape}: the theorem-exact composition needs valid "
                        f"padding and subdomain origins aligned with the total stride "
                        f"{total_stride(windows, nd)}; pass strict=False for an approximate placement"
                    )
                stride = total_stride(windows, nd)
                break
            out.append(f)
        else:
            return tuple(out)
    if stride is None:
        stride = []
        for ax in range(nd):
            dn, df = grid.shape[ax] - grid.sub_shape[ax], feature_shape[ax] - sub_feature_shape[ax]
            if dn == 0 and df == 0:
                stride.append(1)
            elif df <= 0 or dn % df:
                raise ValueError(
                    f"cannot infer the total stride at {where} on axis {ax} from input {grid.shape} / sub-input "
                    f"{grid.sub_shape} and features {feature_shape} / {sub_feature_shape}; pass stride= or windows="
                )
            else:
                stride.append(dn // df)
    stride = per_axis(stride, nd, "stride")
    if strict:
        grid.check_aligned(stride, where)
    fields = []
    for k, b in enumerate(grid.boxes):
        start = tuple(a // s for a, s in zip(b.start, stride))
        f = Box(start, sub_feature_shape)
        if any(e > n for e, n in zip(f.stop, feature_shape)):
            raise ValueError(
                f"subdomain {k} ({b}) maps to {f} at {where}, outside the global feature map {feature_shape}"
            )
        fields.append(f)
    return tuple(fields)


def probe_activation_field(
    fn: Callable, x, box: Box, *, trials: int = 4, seed: int = 0, atol: float = 0.0
) -> tuple[Box, np.ndarray]:
    """Measure the activation field of ``box`` for ``fn: (B, *spatial, C) -> (B, *spatial', C')``.

    The input outside ``box`` is replaced ``trials`` times by fresh random values; an output
    position that changed in any channel, sample or trial depends on something outside the box.
    Returns the largest box of unchanged positions (its bounding box; a ``ValueError`` if the
    unchanged set is not a box) and the boolean mask of unchanged positions.  A Monte-Carlo
    under-estimate of dependence: use :func:`activation_field` for the exact answer.
    """
    x = jnp.asarray(x)
    nd = box.ndim
    y0 = fn(x)
    inside = np.zeros(x.shape[1:-1], dtype=bool)
    inside[box.slices()] = True
    mask_in = jnp.asarray(inside)[None, ..., None]
    unchanged = np.ones(y0.shape[1:-1], dtype=bool)
    key = jax.random.PRNGKey(seed)
    for _ in range(trials):
        key, sub = jax.random.split(key)
        noise = jax.random.normal(sub, x.shape, x.dtype) * (1.0 + jnp.abs(x).max())
        y = fn(jnp.where(mask_in, x, noise))
        diff = np.asarray(jnp.abs(y - y0) > atol)
        unchanged &= ~diff.any(axis=(0, y0.ndim - 1))
    if not unchanged.any():
        return Box((0,) * nd, (0,) * nd), unchanged
    idx = np.argwhere(unchanged)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    field = Box(lo, hi - lo)
    if not unchanged[field.slices()].all():
        raise ValueError("the measured dependence-free set is not a box")
    return field, unchanged


__all__ = ["Window", "activation_field", "total_stride", "flatten_fields", "probe_activation_field"]
