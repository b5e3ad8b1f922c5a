"""Every (de)composition rule of Gu et al. (2.11)-(2.14) and Section 2.4, in one place.

All rules are one operation, :class:`Place`: sub-network k's leaf is written into the global
leaf at an index set I_k that is a Cartesian product of one index map per axis; every entry not
written is an exact zero; where two sub-networks write the same entry their values add.

    compose:   global[I_k] += scale * sub_k          for k = 1..K   (on a zero tensor)
    decompose: sub_k = global[I_k] / (scale * multiplicity[I_k])

Axis maps (global length G, sub-network length g):

    SAME           G == g     every k uses all indices (the axis is not decomposed)
    BLOCK          G == K*g   k uses the contiguous block [k*g, (k+1)*g) (channel block k)
    Field(...)     any G      a flattened feature map: k uses the positions of its activation
                              field (Section 2.1.1) and channel block k (or all channels)

The layer kinds of the paper are then (Flax leaves: Conv kernel (*window, in, out),
Dense kernel (in, out), biases / BatchNorm (out,)):

    layer kind                                     kernel in  kernel out   bias / BN     eq.
    ---------------------------------------------  ---------  -----------  ------------  ------
    first conv layer (input channels shared)       SAME       BLOCK        BLOCK         (2.11)
    hidden conv / dense, ResNet shortcut proj.     BLOCK      BLOCK        BLOCK         (2.12)
    first FC after a flatten                       Field(ch.) BLOCK        BLOCK         (2.13)
    first FC of an FC net on a decomposed input    Field(all) BLOCK        BLOCK         Sec 2.4
    last layer, classification (logit sum)         BLOCK      SAME         SAME, sum     (2.14)
    last layer, regression (mean), scale 1/K       BLOCK      SAME         SAME, mean    (2.22)
    last layer, auto-encoder (concatenation)       BLOCK      BLOCK/Field  BLOCK/Field   Sec 2.4
    RNN: U (input->hidden), W (hidden->hidden)     as above, with U and W sharing the output
                                                   BLOCK partition; V like any dense layer (2.27)
    BatchNorm scale, bias, running mean, var       -          -            BLOCK         Sec 3
    1-D / 3-D convolutions                         as 2-D: the window axes are SAME   Sec 2.4

With every map SAME the sub-network leaves are summed (the classification head bias: global
logits = sum of sub-network logits, (2.16)); with ``scale=1/K`` they are averaged (regression,
(2.22)).  ``decompose`` is the exact inverse wherever each global entry comes from one
sub-network and ``scale == 1`` (all rules but the head's); for the head bias it returns the
equal share b / K, so ``compose(decompose(g)) == g`` there instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from dcnn_dd.grid import Box


@dataclasses.dataclass(frozen=True)
class Same:
    """The axis is not decomposed: every sub-network uses all of it."""

    def indices(self, k: int, K: int, g: int, G: int) -> np.ndarray:  # noqa: N803
        return np.arange(G)

    def __str__(self) -> str:
        return "SAME"


@dataclasses.dataclass(frozen=True)
class Block:
    """Contiguous channel block k of K (the channel partition of (2.7))."""

    def indices(self, k: int, K: int, g: int, G: int) -> np.ndarray:  # noqa: N803
        return np.arange(k * g, (k + 1) * g)

    def __str__(self) -> str:
        return "BLOCK"


@dataclasses.dataclass(frozen=True)
class Field:
    """A flattened (row-major, channels last) feature map of spatial shape ``feature_shape``
    and ``channels`` channels.  Sub-network k's flattened map (``sub_feature_shape``,
    ``channels // K`` or ``channels``) sits at ``fields[k]`` and, if ``split_channels``, in
    channel block k ((2.13)); otherwise on all channels (an FC net on decomposed inputs)."""

    fields: tuple[Box, ...]
    feature_shape: tuple[int, ...]
    sub_feature_shape: tuple[int, ...]
    channels: int
    split_channels: bool

    def indices(self, k: int, K: int, g: int, G: int) -> np.ndarray:  # noqa: N803
        c = self.channels // K if self.split_channels else self.channels
        ch = np.arange(k * c, (k + 1) * c) if self.split_channels else np.arange(c)
        f = self.fields[k]
        axes = [np.arange(a, a + n) for a, n in zip(f.start, f.size)] + [ch]
        grids = np.meshgrid(*axes, indexing="ij")
        idx = np.ravel_multi_index(tuple(gr.ravel() for gr in grids), self.feature_shape + (self.channels,))
        if idx.size != g:
            raise ValueError(f"field {f} x {c} channels has {idx.size} entries, the sub-network leaf has {g}")
        return idx

    def __str__(self) -> str:
        ch = "channel block" if self.split_channels else "all channels"
        return f"FIELD({'x'.join(map(str, self.feature_shape))}x{self.channels}, {ch})"


AxisMap = Same | Block | Field


@dataclasses.dataclass(frozen=True)
class Place:
    """Sub-network k's leaf goes to the product of the per-axis index sets; see module doc."""

    maps: tuple[AxisMap, ...]
    scale: float = 1.0
    note: str = ""

    def _index(self, k: int, K: int, sub_shape, global_shape):  # noqa: N803
        return np.ix_(*[m.indices(k, K, g, G) for m, g, G in zip(self.maps, sub_shape, global_shape)])

    @property
    def disjoint(self) -> bool:
        """No two sub-networks write the same entry: some axis is split (a BLOCK, or a FIELD with
        channel blocks), so every placed entry has multiplicity exactly 1."""
        return any(isinstance(m, Block) or (isinstance(m, Field) and m.split_channels) for m in self.maps)

    def multiplicity(self, K: int, sub_shape, global_shape) -> np.ndarray:  # noqa: N803
        count = np.zeros(global_shape, dtype=np.int32)
        for k in range(K):
            np.add.at(count, self._index(k, K, sub_shape, global_shape), 1)
        return count

    def compose(self, stacked, global_shape: Sequence[int]):
        """(K, *sub_shape) -> global_shape; zeros off the placed blocks (exact)."""
        K, sub_shape = stacked.shape[0], tuple(stacked.shape[1:])  # noqa: N806
        if not self.maps:  # scalars
            return stacked.sum(0) * self.scale if self.scale != 1.0 else stacked.sum(0)
        out = jnp.zeros(tuple(global_shape), stacked.dtype)
        for k in range(K):
            val = stacked[k] if self.scale == 1.0 else stacked[k] * jnp.asarray(self.scale, stacked.dtype)
            out = out.at[self._index(k, K, sub_shape, global_shape)].add(val)
        return out

    def decompose(self, value, K: int, sub_shape: Sequence[int]):  # noqa: N803
        """global -> (K, *sub_shape); the exact inverse where multiplicity is 1 and scale is 1."""
        sub_shape = tuple(sub_shape)
        if not self.maps:
            return jnp.broadcast_to(value / (K * self.scale), (K,))
        # only shared entries need the (global-sized) multiplicity count
        mult = None if self.disjoint else self.multiplicity(K, sub_shape, value.shape)
        subs = []
        for k in range(K):
            idx = self._index(k, K, sub_shape, value.shape)
            part = value[idx]
            if mult is not None and (mult[idx] != 1).any():
                part = part / jnp.asarray(mult[idx], value.dtype)
            if self.scale != 1.0:
                part = part / jnp.asarray(self.scale, value.dtype)
            subs.append(part)
        return jnp.stack(subs)

    def __str__(self) -> str:
        s = " x ".join(str(m) for m in self.maps) or "scalar"
        if self.scale != 1.0:
            s += f", scale {self.scale:g}"
        return s + (f"  [{self.note}]" if self.note else "")


# --------------------------------------------------------------------------- named constructors
# The paper's layer kinds as Place instances (for overrides; make_plan infers them from shapes).
def first_layer(ndim: int) -> Place:
    """(2.11): input channels shared, output channels concatenated."""
    return Place((Same(),) * (ndim - 1) + (Block(),), note="(2.11) first layer")


def block_diagonal(ndim: int) -> Place:
    """(2.12): hidden layer, block-diagonal in (in, out) channels; window axes shared."""
    return Place((Same(),) * (ndim - 2) + (Block(), Block()), note="(2.12) block-diagonal")


def concat(ndim: int = 1) -> Place:
    """Biases and BatchNorm scale / bias / running mean / var: concatenated."""
    return Place((Same(),) * (ndim - 1) + (Block(),), note="concatenated")


def logit_sum(ndim: int, K: int | None = None, mean: bool = False) -> Place:  # noqa: N803
    """(2.14) last layer (inputs concatenated, outputs summed); ``mean`` is (2.22)."""
    scale = 1.0 / K if mean else 1.0
    return Place((Same(),) * (ndim - 2) + (Block(), Same()), scale, note="(2.22) mean" if mean else "(2.14) sum")


def head_bias(K: int, mean: bool = False) -> Place:  # noqa: N803
    """The last layer's bias: summed (classification) or averaged (regression)."""
    return Place((Same(),), 1.0 / K if mean else 1.0, note="head bias, " + ("mean" if mean else "sum"))


def shared(ndim: int, K: int) -> Place:  # noqa: N803
    """A leaf every sub-network holds identically (compose averages, decompose copies)."""
    return Place((Same(),) * ndim, 1.0 / K, note="shared")
