"""Networks of the theorems' setting (Section 2.3-2.4): valid padding, flatten + FC head.

* :class:`PlainCNN` - 1-D, 2-D or 3-D CNN, valid padding, max-pooling, flatten, FC layers; the
  exact setting of Theorems 2.1/2.2.  Options leave that setting on purpose (``padding='SAME'``,
  ``head='gap'``, ``batchnorm=True``) so tests can measure the deviation, and ``residual=True``
  groups the convolutions in pairs with cropped shortcuts, (2.24)-(2.26).
* :class:`MLP` - an FC network on a (decomposed) input, Section 2.4; regression with ``head``.
* :class:`AutoEncoder` - an FC auto-encoder on feature vectors, Section 2.4.
* :class:`ElmanRNN` - stacked Elman blocks (2.27)-(2.28) with a dense classifier.

Every model has ``subnet(K)``: the same model with each hidden width divided by K (2.7)-(2.8).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dcnn_dd.fields import Window
from dcnn_dd.models.pooling import POOL_INPUT, average_pool


def divide_widths(widths: int | Sequence[int], K: int, name: str):  # noqa: N803
    """Each width / K (2.7)-(2.8), or a ValueError naming the width that K does not divide.
    A single int gives an int."""
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"K={K!r} must be a positive integer")
    if isinstance(widths, int):
        if widths % K:
            raise ValueError(f"width {name}={widths} is not divisible by K={K}")
        return widths // K
    out = []
    for i, w in enumerate(widths):
        if w % K:
            raise ValueError(f"width {name}[{i}]={w} is not divisible by K={K}")
        out.append(w // K)
    return tuple(out)


class PlainCNN(nn.Module):
    """Valid-padding CNN with a flatten + FC head (the exact setting of Theorem 2.1).

    ``features[i]`` channels for conv i (kernel ``kernel``), a ``pool``-wide max-pool after the
    convs listed in ``pool_after``, then ``fc`` hidden dense layers and the classifier.  Every
    conv, pooling and dense output is recorded with ``sow('intermediates', 'layer<i>', ...)``;
    :meth:`spatial_layers` gives the windows that lead to each recorded spatial layer.
    """

    features: Sequence[int] = (16, 16, 32, 32)
    pool_after: Sequence[int] = (1, 3)
    fc: Sequence[int] = (64,)
    num_classes: int = 10
    kernel: int = 3
    pool: int = 2
    ndim: int = 2
    padding: str = "VALID"
    head: str = "flatten"  # or "gap"
    residual: bool = False
    batchnorm: bool = False
    pooling: str = "global"  # head="gap": "global" or "regional" (see dcnn_dd.models.pooling)
    pool_regions: tuple | None = None
    dtype: Any = None  # the compute dtype (e.g. jnp.bfloat16; None: float32); parameters stay float32

    def subnet(self, K: int) -> PlainCNN:  # noqa: N803
        return dataclasses.replace(
            self, features=divide_widths(self.features, K, "features"), fc=divide_widths(self.fc, K, "fc"),
            pooling="global", pool_regions=None,
        )

    def _check(self) -> None:
        if self.residual and len(self.features) % 2:
            raise ValueError(f"residual=True needs an even number of convolutions (pairs), got features={self.features}")

    def spatial_layers(self) -> list[tuple[str, list[Window]]]:
        """(recorded layer name, windows from the input to it) for every spatial layer."""
        out, ws, n = [], [], 0
        conv = Window(self.kernel, 1, self.padding)
        pool = Window(self.pool, self.pool, "VALID")
        self._check()
        for i in range(len(self.features)):
            ws = ws + [conv]
            out.append((f"layer{n}", list(ws)))
            n += 1
            if i in self.pool_after:
                ws = ws + [pool]
                out.append((f"layer{n}", list(ws)))
                n += 1
        return out

    def windows(self) -> list[Window]:
        """All windowed layers up to the flatten (for the activation fields of (2.13))."""
        return self.spatial_layers()[-1][1]

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != self.ndim + 2:
            raise ValueError(f"PlainCNN(ndim={self.ndim}) takes inputs of rank {self.ndim + 2}, got shape {x.shape}")
        self._check()
        n = 0
        k = (self.kernel,) * self.ndim
        p = (self.pool,) * self.ndim
        shortcut = None
        for i, f in enumerate(self.features):
            if self.residual and i % 2 == 0:
                shortcut = x
            x = nn.Conv(f, k, padding=self.padding, dtype=self.dtype, name=f"Conv_{i}")(x)
            if self.batchnorm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, name=f"BatchNorm_{i}")(x)
            if self.residual and i % 2 == 1:
                # (2.25)-(2.26): the shortcut is cropped to the valid output; projected if widths differ
                crops = [(shortcut.shape[1 + a] - x.shape[1 + a]) // 2 for a in range(self.ndim)]
                sl = (slice(None),) + tuple(slice(c, c + x.shape[1 + a]) for a, c in enumerate(crops)) + (slice(None),)
                s = shortcut[sl]
                if i == 1 or self.features[i - 2] != f:  # structural, so global and sub-networks agree
                    s = nn.Conv(f, (1,) * self.ndim, use_bias=False, dtype=self.dtype, name=f"Proj_{i}")(s)
                x = x + s
            x = nn.relu(x)
            self.sow("intermediates", f"layer{n}", x)
            n += 1
            if i in self.pool_after:
                x = nn.max_pool(x, p, p, padding="VALID")
                self.sow("intermediates", f"layer{n}", x)
                n += 1
        if self.head == "gap":
            self.sow("intermediates", POOL_INPUT, x)
            x = average_pool(x, self.pooling, self.pool_regions)
        elif self.head == "flatten":
            x = x.reshape((x.shape[0], -1))
        else:
            raise ValueError(f"head={self.head!r}: choose 'flatten' or 'gap'")
        for j, f in enumerate(self.fc):
            x = nn.relu(nn.Dense(f, dtype=self.dtype, name=f"Dense_{j}")(x))
            self.sow("intermediates", f"fc{j}", x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="Head")(x)


class MLP(nn.Module):
    """FC network on flattened inputs of any shape (Section 2.4).  With a grid, sub-network k
    sees the flattened sub-image k and the first layer follows the input decomposition."""

    features: Sequence[int] = (64, 64)
    num_outputs: int = 10

    def subnet(self, K: int) -> MLP:  # noqa: N803
        return dataclasses.replace(self, features=divide_widths(self.features, K, "features"))

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        for j, f in enumerate(self.features):
            x = nn.relu(nn.Dense(f, name=f"Dense_{j}")(x))
            self.sow("intermediates", f"fc{j}", x)
        return nn.Dense(self.num_outputs, name="Head")(x)


class AutoEncoder(nn.Module):
    """FC auto-encoder on feature vectors (B, F): hidden ``features`` then a linear layer back to
    F.  Its sub-networks see contiguous blocks of F/K features (a complete 1-D decomposition), so
    every layer is block-diagonal and the composed output is the concatenation (Section 2.4)."""

    features: Sequence[int] = (64, 16, 64)
    num_inputs: int = 64

    def subnet(self, K: int) -> AutoEncoder:  # noqa: N803
        n_in = divide_widths(self.num_inputs, K, "num_inputs")
        return dataclasses.replace(self, features=divide_widths(self.features, K, "features"), num_inputs=n_in)

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != 2 or x.shape[-1] != self.num_inputs:
            raise ValueError(f"AutoEncoder takes (B, {self.num_inputs}) inputs, got shape {x.shape}")
        for j, f in enumerate(self.features):
            x = nn.relu(nn.Dense(f, name=f"Dense_{j}")(x))
            self.sow("intermediates", f"fc{j}", x)
        return nn.Dense(self.num_inputs, name="Out")(x)


class ElmanRNN(nn.Module):
    """Stacked Elman blocks (2.27)-(2.28) over a sequence (B, T, F), classifying the last step.

    Block l: s_t = tanh(U x_t + W s_{t-1} + b) (U: ``U_l``, W: ``W_l``), o_t = tanh(V s_t + c)
    (``V_l``); o_t is the next block's input.  The classifier reads the last o_T.  The input
    features F are shared by all sub-networks (the decomposition is over the hidden width)."""

    hidden: Sequence[int] = (32,)
    num_classes: int = 10

    def subnet(self, K: int) -> ElmanRNN:  # noqa: N803
        return dataclasses.replace(self, hidden=divide_widths(self.hidden, K, "hidden"))

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != 3:
            raise ValueError(f"ElmanRNN takes (B, T, F) inputs, got shape {x.shape}")
        seq = x
        for l, h in enumerate(self.hidden):
            U = nn.Dense(h, use_bias=False, name=f"U_{l}")  # noqa: N806
            W = nn.Dense(h, name=f"W_{l}")  # noqa: N806
            V = nn.Dense(h, name=f"V_{l}")  # noqa: N806
            s = jnp.zeros((seq.shape[0], h), seq.dtype)
            outs = []
            for t in range(seq.shape[1]):
                s = jnp.tanh(U(seq[:, t]) + W(s))
                outs.append(jnp.tanh(V(s)))
                self.sow("intermediates", f"s{l}", s)
            seq = jnp.stack(outs, axis=1)
            self.sow("intermediates", f"o{l}", seq)
        return nn.Dense(self.num_classes, name="Head")(seq[:, -1])
