"""What a trace of a model's jaxpr says about it, with no cooperation from the model.

* :func:`trace_flatten_shapes`: the dense layers fed by a flattened map, and the shape of that
  map (the rule (2.13) needs it);
* :func:`trace_geometry`: the total stride in front of every layer, whether a window on the way
  was padded, and reductions over the spatial axes (:class:`Geometry`);
* :func:`traced_strides`: the stride in front of each flattened dense layer, as
  :func:`~dcnn_dd.composition.make_plan` takes it.

:func:`dcnn_dd.planning.plan_for` uses all three to build a plan from two Flax modules;
:func:`dcnn_dd.verify.check_composition` uses the geometry to diagnose deviations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from dcnn_dd.fields import flatten_fields
from dcnn_dd.tree import path_str


def trace_flatten_shapes(apply_fn: Callable, variables, *args) -> dict[str, tuple[int, ...]]:
    """For every 2-D kernel leaf that multiplies a flattened tensor, the shape (without batch)
    of the tensor before the flatten, e.g. ``{'params/Dense_0/kernel': (4, 4, 64)}``.

    Works on any function ``apply_fn(variables, *args)`` by walking its jaxpr: a ``dot_general``
    whose one operand is the kernel and whose other operand comes from a ``reshape`` of a
    rank > 2 tensor.  Leaves fed by an unflattened input (e.g. after global average pooling)
    are not listed.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(variables)
    names = [path_str(p) for p, _ in flat]
    vals = [v for _, v in flat]

    def fn(leaves, *a):
        return apply_fn(jax.tree_util.tree_unflatten(treedef, leaves), *a)

    closed = jax.make_jaxpr(fn)(vals, *args)
    jaxpr = closed.jaxpr
    n = len(vals)
    found: dict[str, tuple[int, ...]] = {}
    passthrough = {"convert_element_type", "copy", "copy_p", "reduce_precision"}

    def walk(jx, leaf_of: dict, flat_of: dict):
        for eqn in jx.eqns:
            prim = eqn.primitive.name
            ins = eqn.invars
            if prim in passthrough and len(ins) == 1:
                _carry(((ins[0], o) for o in eqn.outvars), [(leaf_of, leaf_of), (flat_of, flat_of)])
            elif prim == "reshape":
                src = ins[0]
                shp = tuple(src.aval.shape)
                out_shape = tuple(eqn.outvars[0].aval.shape)
                if len(shp) > 2 and len(out_shape) == 2 and out_shape[0] == shp[0]:
                    flat_of[eqn.outvars[0]] = shp[1:]
            elif prim == "dot_general":
                a, b = ins
                for kern, other in ((b, a), (a, b)):
                    if is_jaxpr_var(kern) and kern in leaf_of and is_jaxpr_var(other) and other in flat_of:
                        found[leaf_of[kern]] = flat_of[other]
            sub = call_jaxpr(eqn)
            if sub is not None:
                inner_leaf, inner_flat = {}, {}
                _carry(zip(ins, sub.invars), [(leaf_of, inner_leaf), (flat_of, inner_flat)])
                walk(sub, inner_leaf, inner_flat)

    walk(jaxpr, {v: names[i] for i, v in enumerate(jaxpr.invars[:n])}, {})
    return found


def is_jaxpr_var(v) -> bool:
    """Whether a jaxpr equation operand is a variable (not a literal)."""
    return hasattr(v, "aval") and not hasattr(v, "val")


def _carry(pairs, maps) -> None:
    """What the walks over a jaxpr track, carried across equations: for each ``(src, dst)`` pair of
    variables (a literal ``src`` is skipped), ``to[dst] = frm[src]`` for every ``(frm, to)`` of
    ``maps`` that tracks ``src`` (into a call's inner jaxpr, out of it, through a pass-through op)."""
    for src, dst in pairs:
        if is_jaxpr_var(src):
            for frm, to in maps:
                if src in frm:
                    to[dst] = frm[src]


def call_jaxpr(eqn):
    """The jaxpr of a call-like equation (pjit, closed_call, custom_jvp/vjp), whose inputs map
    1:1 onto the equation's.  Control flow (cond, while, scan) is not followed: its inner inputs
    do not line up with the equation's (branch index, loop carry), so a 1:1 map would mislabel."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        j = eqn.params.get(key)
        if j is not None:
            return getattr(j, "jaxpr", j)
    return None


@dataclasses.dataclass
class Geometry:
    """What a trace of the model's jaxpr says about its spatial geometry."""

    total_stride: tuple[int, ...] | None = None          # product of the strides up to the deepest map
    flatten: dict = dataclasses.field(default_factory=dict)  # dense leaf -> (stride, padded) of its flattened input
    padded_windows: int = 0                              # convolutions / poolings with non-zero padding
    windows: int = 0
    spatial_reductions: int = 0                          # reductions over spatial axes (GAP, batch statistics)
    regional_reductions: int = 0                         # reductions over a cropped region of a map (regional pooling)
    transposed: int = 0                                  # convolutions with input dilation (not followed)


def trace_geometry(apply_fn, variables, x, ndim: int) -> Geometry:
    """Total stride, padding and spatial reductions of ``apply_fn(variables, x)`` with ``x`` of shape
    ``(B, *spatial, C)`` (``ndim`` spatial axes), by a data-flow walk over its jaxpr: each tensor
    derived from the input keeps its cumulative stride (convolutions and poolings multiply it,
    element-wise operations and merges keep it) and whether some window on its way was padded.
    A reduction over the spatial axes of a slice that crops them (regional pooling,
    :mod:`dcnn_dd.models.pooling`: channel block k averaged over sub-network k's region) is counted
    apart from one over a whole map (global average pooling, batch statistics)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(variables)
    names = [path_str(p) for p, _ in flat]
    vals = [v for _, v in flat]
    closed = jax.make_jaxpr(lambda leaves, a: apply_fn(jax.tree_util.tree_unflatten(treedef, leaves), a))(vals, x)
    jx = closed.jaxpr
    n = len(vals)
    geo = Geometry()
    deepest = [(1,) * ndim]

    def merge(states):
        st = tuple(max(s[0][i] for s in states) for i in range(ndim))
        return st, any(s[1] for s in states)

    def walk(j, state: dict, flat_of: dict, leaf_of: dict, cropped: dict):
        for eqn in j.eqns:
            prim = eqn.primitive.name
            ins = [v for v in eqn.invars if is_jaxpr_var(v)]
            sub = call_jaxpr(eqn)
            if sub is not None:
                inner_state, inner_flat, inner_leaf, inner_crop = {}, {}, {}, {}
                _carry(zip(eqn.invars, sub.invars), [(state, inner_state), (flat_of, inner_flat), (leaf_of, inner_leaf),
                                                     (cropped, inner_crop)])
                walk(sub, inner_state, inner_flat, inner_leaf, inner_crop)
                _carry(zip(sub.outvars, eqn.outvars), [(inner_state, state), (inner_flat, flat_of),
                                                       (inner_crop, cropped)])
                continue
            if prim == "dot_general":
                a, b = eqn.invars
                for kern, other in ((b, a), (a, b)):
                    if is_jaxpr_var(kern) and kern in leaf_of and is_jaxpr_var(other) and other in flat_of:
                        geo.flatten[leaf_of[kern]] = flat_of[other]
            tracked = [state[v] for v in ins if v in state]
            if not tracked:
                continue
            src = state[eqn.invars[0]] if is_jaxpr_var(eqn.invars[0]) and eqn.invars[0] in state else merge(tracked)
            out = eqn.outvars[0]
            if prim == "conv_general_dilated":
                if eqn.invars[0] not in state:
                    continue
                if any(d != 1 for d in eqn.params["lhs_dilation"]):
                    geo.transposed += 1
                    continue
                lhs_spec = eqn.params["dimension_numbers"].lhs_spec
                st = list(src[0])
                for i, ax in enumerate(lhs_spec[2:]):
                    if 1 <= ax <= ndim:
                        st[ax - 1] *= int(eqn.params["window_strides"][i])
                padded = any(lo or hi for lo, hi in eqn.params["padding"])
                geo.windows += 1
                geo.padded_windows += int(padded)
                state[out] = (tuple(st), src[1] or padded)
                if np.prod(st) > np.prod(deepest[0]):
                    deepest[0] = tuple(st)
            elif prim.startswith("reduce_window"):
                strides = eqn.params.get("window_strides")
                pads = eqn.params.get("padding")
                if strides is None or len(strides) != ndim + 2:
                    continue
                st = tuple(s * int(w) for s, w in zip(src[0], strides[1:ndim + 1]))
                padded = any(lo or hi for lo, hi in pads[1:ndim + 1])
                geo.windows += 1
                geo.padded_windows += int(padded)
                state[out] = (st, src[1] or padded)
                if np.prod(st) > np.prod(deepest[0]):
                    deepest[0] = st
            elif prim in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin"):
                axes = eqn.params.get("axes", ())
                if any(1 <= a <= ndim for a in axes):
                    if eqn.invars[0] in cropped:
                        geo.regional_reductions += 1
                    else:
                        geo.spatial_reductions += 1
                else:
                    state[out] = src
            elif prim in ("slice", "dynamic_slice"):
                state[out] = src
                shp, oshp = tuple(eqn.invars[0].aval.shape), tuple(out.aval.shape)
                if len(shp) == len(oshp) == ndim + 2 and any(o < i for o, i in zip(oshp[1:ndim + 1], shp[1:ndim + 1])):
                    cropped[out] = True  # a region of the map: a reduction over it is not over the whole map
            elif prim == "reshape":
                shp, oshp = tuple(eqn.invars[0].aval.shape), tuple(out.aval.shape)
                if len(shp) > 2 and len(oshp) == 2 and oshp[0] == shp[0]:
                    flat_of[out] = src
                elif oshp[: ndim + 1] == shp[: ndim + 1]:
                    state[out] = src
            else:
                for o in eqn.outvars:
                    if len(getattr(o.aval, "shape", ())) >= ndim + 1:
                        state[o] = merge(tracked)

    x_var = jx.invars[n]
    walk(jx, {x_var: ((1,) * ndim, False)}, {}, {v: names[i] for i, v in enumerate(jx.invars[:n])}, {})
    geo.total_stride = deepest[0]
    return geo


# --------------------------------------------------------------------------- module kinds


def traced_strides(global_model, g_vars, x_g, grid, flatten, init_kwargs, strict) -> dict:
    """The total stride in front of every flattened dense layer, from a trace of the model.

    Without padding on the way (the theorems' setting) it is the stride, and misaligned origins are
    the ``ValueError`` of :func:`~dcnn_dd.fields.flatten_fields`.  With padding the placement is
    approximate anyway (and plan_for's check warns): the valid-padding guess from the shapes is
    kept where it is consistent (as before), else the traced stride places at floor(origin / stride)."""
    geo = trace_geometry(lambda v, x: global_model.apply(v, x, mutable=True, **init_kwargs), g_vars, x_g, grid.ndim)
    strides, stricts = {}, {}
    for p, (g_pre, s_pre) in flatten.items():
        if p not in geo.flatten or len(g_pre) != grid.ndim + 1 or tuple(g_pre[:-1]) == tuple(s_pre[:-1]):
            continue
        st, padded = geo.flatten[p]
        if not padded:
            strides[p] = st
            continue
        try:
            flatten_fields(grid, g_pre[:-1], s_pre[:-1], strict=bool(strict), where=f"leaf {p}")
        except ValueError:
            strides[p], stricts[p] = st, False
    out: dict = {"stride": strides} if strides else {}
    if stricts:
        out["strict"] = {p: stricts.get(p, bool(strict)) for p in flatten}
    return out
