"""Aggregation of the K local classifications into one global decision (Klawonn, Weber, Lanser).

Every function takes the K local outputs stacked on axis 0, shape ``(K, B, C)`` (local CNN k's
class probabilities or logits for B samples and C classes), and is pure and jit-able.

* :func:`average` - the mean of the K probability vectors; the decision is its argmax.
* :func:`majority_vote` - each local CNN votes for its argmax class; the class with most votes
  wins.  **Ties** (several classes with the same, largest number of votes) go to the tied class
  with the highest summed probability over the K local CNNs; if that is tied too (exactly equal
  sums), to the lowest class index.
* :func:`logit_sum` - the sum of the K local *logits*: what the composed network of Gu et al.
  computes in the setting of their Theorem 2.1 (valid padding, flatten + FC head), (2.16).
* :class:`DNN` - the dense feed-forward network of the CNN-DNN, trained on the frozen local
  probabilities (:mod:`dcnn_dd.cnn_dnn.train`), or end to end inside the coherent model
  (:mod:`dcnn_dd.cnn_dnn.model`).

``argmax`` here (``jnp.argmax``) returns the first index among exactly equal maxima, which is
what makes the "lowest class index" rule hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

AGGREGATORS = ("dnn", "average", "vote", "logit_sum")


def _check(x, name: str):
    if x.ndim != 3:
        raise ValueError(f"{name} takes the K local outputs stacked as (K, B, C), got shape {x.shape}")


def average(probs):
    """(K, B, C) probabilities -> (B, C) their mean over the K local CNNs."""
    _check(probs, "average")
    return jnp.mean(probs, axis=0)


def votes(probs):
    """(K, B, C) -> (B, C) the number of local CNNs whose argmax is each class."""
    _check(probs, "votes")
    return jnp.sum(jax.nn.one_hot(jnp.argmax(probs, axis=-1), probs.shape[-1], dtype=jnp.int32), axis=0)


def majority_vote(probs):
    """(K, B, C) probabilities -> (B,) int32 the class with most votes; ties: the tied class with
    the highest summed probability, then the lowest class index."""
    counts = votes(probs)
    tied = counts == counts.max(axis=-1, keepdims=True)
    summed = jnp.where(tied, probs.sum(axis=0), -jnp.inf)
    return jnp.argmax(summed, axis=-1).astype(jnp.int32)


def summed_logits(logits):
    """(K, B, C) local logits -> (B, C) their sum (the Gu et al. composed network, Theorem 2.1)."""
    _check(logits, "summed_logits")
    return jnp.sum(logits, axis=0)


def default_hidden(K: int, num_classes: int) -> tuple[int, int]:  # noqa: N803
    """The DNN's default hidden widths: two layers of ``clip(2 * K * C, 64, 1024)`` units.

    Why: the DNN reads K*C numbers; a first layer at least twice that wide can keep all of them
    and their pairwise contrasts, a second layer of the same width lets it combine them
    non-linearly (our choice; one or two hidden layers were not compared); 64 units at least for
    K*C small, 1024 at most to bound it.  Bounded is not small: CIFAR-100 with K=16 (K*C = 1600)
    gives 2.79M DNN parameters against 0.51M for the 16 local ResNet32 sub-networks together (the
    global ResNet32: 7.46M), and the cpu-smoke preset's K=16 157k against 6.6k; pass ``hidden``
    for a smaller DNN."""
    w = int(min(1024, max(64, 2 * K * num_classes)))
    return (w, w)


class DNN(nn.Module):
    """The dense feed-forward aggregator: (B, K, C) local probabilities -> (B, C) global logits.

    Flattens its input to (B, K*C), then ``hidden`` Dense+ReLU layers, then a Dense classifier
    (names ``Dense_0``.., ``Head``).  ``hidden=None``: :func:`default_hidden`."""

    num_classes: int
    hidden: Sequence[int] | None = None

    def widths(self, K: int) -> tuple[int, ...]:  # noqa: N803
        return tuple(default_hidden(K, self.num_classes) if self.hidden is None else self.hidden)

    @nn.compact
    def __call__(self, probs, train: bool = False):
        if probs.ndim != 3 or probs.shape[-1] != self.num_classes:
            raise ValueError(f"DNN takes (B, K, {self.num_classes}) local probabilities, got shape {probs.shape}")
        x = probs.reshape((probs.shape[0], -1))
        for j, w in enumerate(self.widths(probs.shape[1])):
            x = nn.relu(nn.Dense(w, name=f"Dense_{j}")(x))
        return nn.Dense(self.num_classes, name="Head")(x)
