"""Global average pooling, and *regional* pooling for composed networks (beyond the paper).

Why: Theorem 2.1 needs a flatten + FC head.  With global average pooling (GAP, the paper's
ResNets) the composed network averages channel block k over the *whole* global feature map,
while sub-network k averaged it over its own (smaller) map, so the composed logits are not the
sum of the sub-networks' logits and the composed start can be worse than every sub-network.

Regional pooling: the global network pools channel block k over sub-network k's place in the
global feature map (its origin divided by the total stride, the sub-network's feature shape:
:func:`dcnn_dd.fields.flatten_fields`) instead of the whole map.  The classifier's (2.14)
composition then sums the sub-networks' contributions, so the composed logits equal the sum of
the sub-networks' logits exactly with valid padding (the pooled block is the sub-network's own
map, Theorem 2.1 (1)), and up to the SAME-padding border effect otherwise (the global network
sees real neighbours where the sub-network saw zero padding).  The global network keeps regional
pooling while it is fine-tuned (it is a fixed, parameter-free head).

For a module of your own: ``self.sow("intermediates", POOL_INPUT, x)`` on the map that is
pooled, and pool with :func:`average_pool` (``regions`` a module attribute, ``None`` for GAP);
:func:`regions_for` computes the regions and :func:`with_regional_pool` sets them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dcnn_dd.fields import flatten_fields
from dcnn_dd.grid import Grid

POOL_INPUT = "pool_input"  # the name under which a model sows the map it pools
POOLS = ("global", "regional")

Regions = tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]  # ((start, size), ...) per channel block


def average_pool(x, pooling: str = "global", regions: Regions | None = None):
    """``(B, *spatial, C) -> (B, C)``: the mean over the whole map (``pooling="global"``) or, for
    ``pooling="regional"``, channel block k (of ``C / K``) averaged over ``regions[k]`` only."""
    axes = tuple(range(1, x.ndim - 1))
    if pooling == "global":
        return x.mean(axis=axes)
    if pooling != "regional":
        raise ValueError(f"pooling={pooling!r}: choose one of {POOLS}")
    if not regions:
        raise ValueError("pooling='regional' needs the regions of the sub-networks' feature maps: build the model with "
                         "dcnn_dd.models.with_regional_pool(model, grid, input_shape) (the engine does this for you)")
    K, C = len(regions), x.shape[-1]  # noqa: N806
    if C % K:
        raise ValueError(f"regional pooling: {C} channels are not divisible into K={K} blocks")
    c = C // K
    blocks = []
    for k, (start, size) in enumerate(regions):
        sl = (slice(None), *(slice(a, a + n) for a, n in zip(start, size)), slice(k * c, (k + 1) * c))
        blocks.append(x[sl].mean(axis=axes))
    return jnp.concatenate(blocks, axis=-1)


def pooled_map_shape(model, input_shape) -> tuple[int, ...]:
    """The spatial shape of the map ``model`` pools (it must sow it as :data:`POOL_INPUT`)."""
    x = jnp.zeros(tuple(input_shape), jnp.float32)

    def run(x):
        v = model.init(jax.random.PRNGKey(0), x, train=False)
        _, out = model.apply(v, x, train=False, mutable=["intermediates"])
        return out["intermediates"]

    inter = jax.eval_shape(run, x)
    found = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(inter)
             if any(getattr(p, "key", None) == POOL_INPUT for p in path)]
    if not found:
        raise ValueError(f"{type(model).__name__} does not sow the map it pools as {POOL_INPUT!r}: regional pooling "
                         "needs self.sow('intermediates', 'pool_input', x) before the pooling")
    return tuple(found[-1].shape[1:-1])


def regions_for(model, grid: Grid, input_shape) -> Regions:
    """Sub-network k's place in the global pooled map, for each k: the origin of sub-image k
    divided by the total stride (valid-padding geometry, as for (2.13)), of the sub-network's
    feature shape.  ``input_shape``: the global input with its batch axis, e.g. (1, 28, 28, 1).
    A ``ValueError`` if the origins are not aligned with the total stride."""
    sub = model.subnet(grid.K)
    sub_input = (1, *grid.sub_shape, input_shape[-1])
    feat = pooled_map_shape(model, input_shape)
    sub_feat = pooled_map_shape(sub, sub_input)
    fields = flatten_fields(grid, feat, sub_feat, strict=True, where="the pooled map (regional pooling)")
    return tuple((tuple(int(a) for a in f.start), tuple(int(n) for n in f.size)) for f in fields)


def with_regional_pool(model, grid: Grid, input_shape):
    """``model`` with ``pooling="regional"`` over the regions of ``grid``'s sub-networks (a model
    with ``pooling`` and ``pool_regions`` attributes: the zoo's ResNets, ``PlainCNN(head="gap")``)."""
    if not hasattr(model, "pool_regions"):
        raise ValueError(f"{type(model).__name__} has no 'pooling'/'pool_regions' attributes for regional pooling")
    regions = regions_for(model.clone(pooling="global", pool_regions=None), grid, input_shape)
    return model.clone(pooling="regional", pool_regions=regions)
