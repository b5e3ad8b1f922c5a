"""The theorems of Gu et al. as checks on computed outputs (Section 2.3).

* Theorem 2.1 (1): at every spatial layer, the composed (global) network's feature map restricted
  to the subdomain Omega_k of (2.15) - the activation field of sub-image k at that layer - and to
  channel block k equals sub-network k's feature map (:func:`restricted_feature_maps` gives both,
  :func:`feature_map_gap` how far they are apart).
* Theorem 2.1 (2.16): the composed network's logits equal the sum of the K sub-networks' logits
  (:func:`logit_sum_gap` measures how far they are from it); for regression (2.22), its outputs
  equal their mean (:func:`output_gap` measures either).
* Theorem 2.2: every sample that all sub-networks classify correctly, the composed network
  classifies correctly, with a per-sample cost no larger than any sub-network's
  (:func:`theorem_2_2`).

Exact where the theorems' assumptions hold (valid padding, flatten + FC head); elsewhere these
measure how far the claims carry.  Theorem 2.1 (1) on the feature maps also holds with SAME padding
(e.g. :class:`~dcnn_dd.models.zoo.DogsCatsCNN`, Fig. 3.7): the zero padding at the image border is
the sub-network's padding there, and the field loses one cell per conv at every *interior*
sub-image border.
"""

from __future__ import annotations

import numpy as np

from dcnn_dd.activation_maps import feature_maps_fn, layer_name


def logit_sum_gap(global_logits, sub_logits) -> float:
    """Theorem 2.1 (2.16): max |global logits - sum over k of the sub-network logits|; ``sub_logits``
    (K, N, C), ``global_logits`` (N, C)."""
    return float(np.max(np.abs(np.asarray(global_logits) - np.asarray(sub_logits).sum(0))))


def output_gap(global_outputs, sub_outputs, head: str = "sum") -> float:
    """Theorem 2.1 at the output for the composed head: max |global outputs - sum over k of the
    sub-network outputs| (``head='sum'``, (2.16): :func:`logit_sum_gap`) or max |global outputs -
    mean over k| (``head='mean'``, regression, (2.22)); ``sub_outputs`` (K, N, C), ``global_outputs``
    (N, C)."""
    if head == "sum":
        return logit_sum_gap(global_outputs, sub_outputs)
    if head != "mean":
        raise ValueError(f"head={head!r}: choose 'sum' (2.16) or 'mean' (2.22)")
    return float(np.max(np.abs(np.asarray(global_outputs) - np.asarray(sub_outputs).mean(0))))


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


def restricted_feature_maps(model, sub, global_vars, stacked_sub_vars, x, grid, layers=(1, 3, 5)) -> dict:
    """Theorem 2.1 (1) on feature maps: for each layer i and sub-network k, ``(the global network's
    map restricted to Omega_k and channel block k, sub-network k's map on the same region, the field
    Omega_k in global coordinates)``, the maps as numpy arrays (B, h, w, c).

    ``model``/``sub``: the global network and the sub-network (Flax modules with ``spatial_layers()``
    whose maps are sown as ``intermediates/<name>``: :class:`~dcnn_dd.models.zoo.DogsCatsCNN`,
    :class:`~dcnn_dd.models.PlainCNN`); ``global_vars``: the composed variables
    (:func:`dcnn_dd.compose`); ``stacked_sub_vars``: the K sub-networks' variables stacked on a
    leading axis; ``x``: preprocessed inputs (B, H, W, C) on ``grid``; ``layers``: ints ``i`` for
    ``layer<i>`` or names from ``model.spatial_layers()``, the keys of the result.

    Omega_k is the activation field of sub-image k at layer i (:func:`dcnn_dd.fields.activation_field`
    with the layer's windows); sub-network coordinates are the field's minus ``origin_k /
    (cumulative stride)``, which needs every origin to be a multiple of the cumulative stride at each
    requested layer (``ValueError`` otherwise, before anything is computed).  The maps are computed
    at "highest" matmul precision (no TF32 on GPUs)."""
    import jax
    import jax.numpy as jnp

    from dcnn_dd.fields import activation_field, total_stride
    from dcnn_dd.grid import decompose_input
    from dcnn_dd.tree import unstack

    windows = dict(model.spatial_layers())
    names = [layer_name(i) for i in layers]
    missing = [n for n in names if n not in windows]
    if missing:
        raise ValueError(f"layers {missing} do not exist: the model's spatial layers are {list(windows)}")
    nd = grid.ndim
    plan = {}  # layer -> [(field, sub box start)] per k, checked before computing anything
    for i, name in zip(layers, names):
        stride = total_stride(windows[name], nd)
        per_k = []
        for k, box in enumerate(grid.boxes):
            bad = [(ax, o) for ax, (o, s) in enumerate(zip(box.start, stride)) if o % s]
            if bad:
                ax, o = bad[0]
                raise ValueError(
                    f"layer {i}: origin {o} of sub-image {k + 1} (axis {ax}) is not a multiple of the cumulative "
                    f"stride {stride[ax]} at that layer, so sub-network {k + 1}'s feature map does not sit on the "
                    f"global one; choose origins divisible by {stride[ax]} or other layers")
            field = activation_field(windows[name], grid.shape, box)[-1]
            if field.empty:
                raise ValueError(f"layer {i}: the activation field of sub-image {k + 1} ({box}) is empty")
            per_k.append((field, tuple(f - o // s for f, o, s in zip(field.start, box.start, stride))))
        plan[i] = per_k

    x = jnp.asarray(x)
    xs = decompose_input(x, grid)
    out: dict = {}
    with jax.default_matmul_precision("highest"):  # no TF32 on GPUs: the comparison is at float32
        g_maps = feature_maps_fn(model, tuple(layers))(global_vars, x)
        sub_fn = feature_maps_fn(sub, tuple(layers))  # one compilation for the K sub-networks
        s_maps = [sub_fn(v, xs[k]) for k, v in enumerate(unstack(stacked_sub_vars, grid.K))]
    for i in layers:
        G = np.asarray(g_maps[i])  # noqa: N806
        out[i] = []
        for k, (field, start) in enumerate(plan[i]):
            S = np.asarray(s_maps[k][i])  # noqa: N806
            c = S.shape[-1]
            stop = tuple(a + n for a, n in zip(start, field.size))
            if any(a < 0 for a in start) or any(b > n for b, n in zip(stop, S.shape[1:-1])):
                raise ValueError(f"layer {i}: the field {field} of sub-image {k + 1} maps to [{start}, {stop}) in "
                                 f"sub-network coordinates, outside its map {S.shape[1:-1]}")
            g = G[(slice(None), *field.slices(), slice(k * c, (k + 1) * c))]
            s = S[(slice(None), *(slice(a, b) for a, b in zip(start, stop)), slice(None))]
            out[i].append((g, s, field))
    return out


def feature_map_gap(model, sub, global_vars, stacked_sub_vars, x, grid, layers=(1, 3, 5)) -> dict:
    """Theorem 2.1 (1) as a number per layer and sub-network: ``{layer: [max |global map on Omega_k,
    channel block k - sub-network k's map| for k = 1..K]}`` (0 up to float rounding where the
    theorem holds; arguments as in :func:`restricted_feature_maps`)."""
    maps = restricted_feature_maps(model, sub, global_vars, stacked_sub_vars, x, grid, layers)
    return {i: [float(np.max(np.abs(g - s))) for g, s, _ in per_k] for i, per_k in maps.items()}
