"""The theorems of Gu et al. as checks on computed outputs (Section 2.3).

* Theorem 2.1 (2.16): the composed network's logits equal the sum of the K sub-networks' logits
  (:func:`logit_sum_gap` measures how far they are from it).
* Theorem 2.2: every sample that all sub-networks classify correctly, the composed network
  classifies correctly, with a per-sample cost no larger than any sub-network's
  (:func:`theorem_2_2`).

Exact where the theorems' assumptions hold (valid padding, flatten + FC head); elsewhere these
measure how far the claims carry.
"""

from __future__ import annotations

import numpy as np


def logit_sum_gap(global_logits, sub_logits) -> float:
    """Theorem 2.1 (2.16): max |global logits - sum over k of the sub-network logits|; ``sub_logits``
    (K, N, C), ``global_logits`` (N, C)."""
    return float(np.max(np.abs(np.asarray(global_logits) - np.asarray(sub_logits).sum(0))))


def theorem_2_2(sub_logits, global_logits, labels, atol: float = 1e-4) -> dict:
    """Theorem 2.2 on a labelled set: the samples every sub-network classifies correctly, and how
    many of them the composed network classifies correctly (the theorem: all), and the per-sample
    cost bound J(x) <= J_k(x) on them (cross-entropy).  Exact only where Theorem 2.1 is (valid
    padding, flatten + FC head); for other networks this measures how far the claim carries."""
    sub_logits, global_logits, labels = np.asarray(sub_logits), np.asarray(global_logits), np.asarray(labels)
    sub_ok = np.argmax(sub_logits, -1) == labels[None]
    glob_ok = np.argmax(global_logits, -1) == labels
    both = sub_ok.all(0)

    def ce(z):
        z = z - z.max(-1, keepdims=True)
        idx = np.broadcast_to(labels, z.shape[:-1])[..., None]
        return np.log(np.exp(z).sum(-1)) - np.take_along_axis(z, idx, -1)[..., 0]

    cost_ok = (ce(global_logits)[None] <= ce(sub_logits) + atol)[:, both].all()
    snet_acc = sub_ok.mean(1)
    return {
        "all_subnets_correct": int(both.sum()),
        "composed_correct_of_those": int((glob_ok & both).sum()),
        "intersection_holds": bool((glob_ok | ~both).all()),
        "cost_bound_holds": bool(cost_ok),
        "composed_acc": float(glob_ok.mean()),
        "best_snet_acc": float(snet_acc.max()),
        "composed_ge_best_snet": bool(glob_ok.mean() >= snet_acc.max()),
    }
