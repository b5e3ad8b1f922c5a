"""Width decomposition and composition of networks (Section 2.1.2 and 2.2 of Gu et al.).

A :class:`Plan` assigns a rule (:mod:`dcnn_dd.rules`) to every leaf of a network's variables
(``params``, ``batch_stats``, ...).  :func:`make_plan` infers the rules from the shapes of the
global and the sub-network variable trees, which is unambiguous for everything but leaves whose
shapes agree (a head bias is recognised by its kernel; anything else needs an override) and
dense layers fed by a flattened spatial map (found by tracing the model, see
:func:`~dcnn_dd.tracing.trace_flatten_shapes`).  Then

    global_vars = compose(plan, stacked_sub_vars)     # (2.11)-(2.14), leading axis K
    stacked     = decompose(plan, global_vars)        # the diagonal blocks, the inverse

Both are pure functions of pytrees, jit-able (the plan is static).  :func:`dcnn_dd.planning.plan_for`
builds a plan straight from two Flax modules and a :class:`~dcnn_dd.grid.Grid`
(:func:`dcnn_dd.verify.check_composition` checks it layer by layer).  compose and decompose take
nested dicts of arrays (Linen's variables) and any other kind of variable tree registered with
:func:`register_tree_kind`, which they return as the same kind: this module knows no dialect but
nested dicts (the other Flax dialect registers its states from its adapter module).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dcnn_dd import rules as R
from dcnn_dd.fields import Window, flatten_fields
from dcnn_dd.grid import Grid
from dcnn_dd.tree import leaves_by_path, path_str


def _shape(x) -> tuple[int, ...]:
    return tuple(int(n) for n in np.shape(x))


@dataclasses.dataclass(frozen=True)
class Plan:
    """The rule of every leaf, with the global and sub-network shapes it maps between."""

    K: int
    rules: Mapping[str, R.Place]
    global_shapes: Mapping[str, tuple[int, ...]]
    sub_shapes: Mapping[str, tuple[int, ...]]
    treedef: object = dataclasses.field(repr=False)
    #: the :class:`~dcnn_dd.verify.CompositionReport` of plan_for's check (None without one)
    verification: object = dataclasses.field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        w = max((len(p) for p in self.rules), default=4)
        lines = [f"Plan(K={self.K})", f"  {'leaf':<{w}}  {'global':<20} {'sub-network':<20} rule"]
        for p, rule in self.rules.items():
            g, s = "x".join(map(str, self.global_shapes[p])), "x".join(map(str, self.sub_shapes[p]))
            lines.append(f"  {p:<{w}}  {g:<20} {s:<20} {rule}")
        return "\n".join(lines)

    def __hash__(self):
        return id(self)


# --------------------------------------------------------------------------- variable trees
@dataclasses.dataclass(frozen=True)
class TreeKind:
    """A kind of variable tree besides nested dicts, registered by the module that knows it:
    ``accepts(tree)``; ``leaves(tree) -> {leaf path: array}``, the leaves a plan covers;
    ``rebuild(tree, {leaf path: array}) -> tree``, the same kind of tree with those values."""

    name: str
    accepts: Callable[[object], bool]
    leaves: Callable[[object], Mapping]
    rebuild: Callable[[object, Mapping], object]


TREE_KINDS: list[TreeKind] = []


def register_tree_kind(kind: TreeKind) -> None:
    """Let :func:`compose` and :func:`decompose` take (and return) trees of ``kind`` (once per name)."""
    if all(k.name != kind.name for k in TREE_KINDS):
        TREE_KINDS.append(kind)


def tree_kind(tree) -> TreeKind | None:
    """The registered kind of ``tree``, None for a nested dict (or any other pytree)."""
    return next((k for k in TREE_KINDS if k.accepts(tree)), None)


def _map_leaves(plan: Plan, tree, shapes: Mapping, what: str, stacked: bool, fn: Callable):
    """``fn(path, rule, leaf)`` on every leaf of ``tree`` (checked against ``shapes``), as a tree of
    its kind: the plan's tree structure for a nested dict, the registered kind's own otherwise."""
    kind = tree_kind(tree)
    leaves = leaves_by_path(tree) if kind is None else kind.leaves(tree)
    _check_tree(plan, leaves, shapes, what, stacked=stacked)
    out = {p: fn(p, plan.rules[p], jnp.asarray(leaves[p])) for p in plan.rules}
    if kind is not None:
        return kind.rebuild(tree, out)
    return jax.tree_util.tree_unflatten(plan.treedef, [out[p] for p in plan.rules])


def compose(plan: Plan, stacked_sub_vars):
    """Stacked sub-network variables (leading axis K) -> global variables, by (2.11)-(2.14).

    A nested dict gives a dict; a tree of a registered kind (:func:`register_tree_kind`; e.g. the
    K sub-networks' state of the other Flax dialect, see :mod:`dcnn_dd.nnx_adapter`) gives a tree of
    that kind."""
    return _map_leaves(plan, stacked_sub_vars, plan.sub_shapes, "stacked sub-network", True,
                       lambda p, rule, v: rule.compose(v, plan.global_shapes[p]))


def decompose(plan: Plan, global_vars):
    """Global variables -> stacked sub-network variables (leading axis K): the diagonal blocks.
    A dict gives a dict, a tree of a registered kind one of that kind (every leaf stacked on axis 0)."""
    return _map_leaves(plan, global_vars, plan.global_shapes, "global", False,
                       lambda p, rule, v: rule.decompose(v, plan.K, plan.sub_shapes[p]))


def _check_tree(plan: Plan, leaves: Mapping, shapes: Mapping, what: str, stacked: bool = False) -> None:
    missing = [p for p in plan.rules if p not in leaves]
    extra = [p for p in leaves if p not in plan.rules]
    if missing or extra:
        raise ValueError(
            f"the {what} variables do not match the plan: missing leaves {missing[:5]}, unexpected leaves {extra[:5]}"
        )
    for p, v in leaves.items():
        shape = _shape(v)
        want = ((plan.K,) if stacked else ()) + tuple(shapes[p])
        if shape != want:
            if stacked and shape[1:] == tuple(shapes[p]):
                raise ValueError(f"K inconsistent: leaf {p} is stacked over {shape[0]} sub-networks, the plan has K={plan.K}")
            raise ValueError(f"leaf {p} of the {what} variables has shape {shape}, expected {want}")


# --------------------------------------------------------------------------- plan inference
_KERNEL_NAMES = ("kernel",)


def make_plan(
    global_vars,
    sub_vars,
    K: int,  # noqa: N803
    *,
    grid: Grid | None = None,
    flatten: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
    windows: Sequence[Window] | Mapping[str, Sequence[Window]] | None = None,
    stride: int | Sequence[int] | None = None,
    strict: bool = True,
    head: str = "sum",
    overrides: Mapping[str, R.Place] | None = None,
) -> Plan:
    """Infer the rule of every leaf from the shapes of ``global_vars`` and one sub-network's
    ``sub_vars`` (arrays or ``jax.ShapeDtypeStruct``; the trees must have the same structure).

    ``flatten`` maps a dense kernel's path to ``(global pre-flatten shape, sub pre-flatten shape)``
    (both without batch, channels last), as :func:`~dcnn_dd.tracing.trace_flatten_shapes` finds them; such layers
    get the (2.13) field rule, which needs ``grid`` and either ``windows`` (activation fields) or
    ``stride`` (see :func:`~dcnn_dd.fields.flatten_fields`).  ``head`` is ``'sum'``
    (classification, (2.14)) or ``'mean'`` (regression, (2.22)).  ``overrides`` maps a regular
    expression (full match on the leaf path) to a :class:`~dcnn_dd.rules.Place`.
    """
    if not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K={K!r} must be a positive integer")
    if head not in ("sum", "mean"):
        raise ValueError(f"head={head!r}: choose 'sum' (classification) or 'mean' (regression)")
    if grid is not None and grid.K != K:
        raise ValueError(f"K inconsistent: K={K} but the grid has {grid.K} subdomains")
    g_flat, treedef = jax.tree_util.tree_flatten_with_path(global_vars)
    s_flat, s_treedef = jax.tree_util.tree_flatten_with_path(sub_vars)
    g_shapes = {path_str(p): _shape(v) for p, v in g_flat}
    s_shapes = {path_str(p): _shape(v) for p, v in s_flat}
    if set(g_shapes) != set(s_shapes):
        only_g = sorted(set(g_shapes) - set(s_shapes))[:5]
        only_s = sorted(set(s_shapes) - set(g_shapes))[:5]
        raise ValueError(
            f"the global and sub-network variable trees differ: only in global {only_g}, only in sub-network {only_s}"
        )
    overrides = dict(overrides or {})
    flatten = dict(flatten or {})
    for p in flatten:
        if p not in g_shapes:
            raise ValueError(f"flatten names leaf {p!r}, which is not in the variables")
    if K > 1 and not overrides and all(g_shapes[p] == s_shapes[p] for p in g_shapes if p not in flatten):
        raise ValueError(
            f"the sub-network has the same widths as the global network (every leaf{' but the flattened' if flatten else ''}"
            f" has equal shapes): a sub-network of K={K} divides every hidden width by K, (2.7)-(2.8) "
            f"(e.g. model.subnet(K), or your module with its width attributes divided by K)"
        )
    rules: dict[str, R.Place] = {}
    pending_heads: list[str] = []
    for p in g_shapes:
        gs, ss = g_shapes[p], s_shapes[p]
        ov = [rule for pat, rule in overrides.items() if re.fullmatch(pat, p)]
        if ov:
            rules[p] = ov[0]
            continue
        if len(gs) != len(ss):
            raise ValueError(f"leaf {p}: global shape {gs} and sub-network shape {ss} differ in rank")
        if K == 1:
            if gs != ss:
                raise ValueError(f"leaf {p}: with K=1 the shapes must agree, got global {gs} and sub-network {ss}")
            rules[p] = R.Place((R.Same(),) * len(gs), note="K=1")
            continue
        if p in flatten:
            rules[p] = _field_rule(p, gs, ss, K, flatten[p], grid, windows,
                                   stride.get(p) if isinstance(stride, Mapping) else stride,
                                   strict.get(p, True) if isinstance(strict, Mapping) else strict, head == "mean")
            continue
        maps = []
        for ax, (G, g) in enumerate(zip(gs, ss)):  # noqa: N806
            if G == g:
                maps.append(R.Same())
            elif G == K * g:
                maps.append(R.Block())
            else:
                raise ValueError(
                    f"leaf {p}: global shape {gs} vs sub-network shape {ss}: axis {ax} is neither equal nor K={K} times "
                    f"larger; widths not divisible by K, a parameter tree that does not match the global model, or a "
                    f"dense layer after a flatten (pass flatten= or use plan_for)"
                )
        kinds = tuple(type(m) for m in maps)
        is_kernel = p.rsplit("/", 1)[-1] in _KERNEL_NAMES and len(gs) >= 2
        if all(k is R.Same for k in kinds):
            pending_heads.append(p)
            continue
        if is_kernel and kinds[-2:] == (R.Block, R.Same):
            rules[p] = R.logit_sum(len(gs), K, mean=(head == "mean"))
            continue
        note = ""
        if is_kernel:
            note = {
                (R.Same, R.Block): "(2.11) first layer",
                (R.Block, R.Block): "(2.12) block-diagonal",
            }.get(kinds[-2:], "")
            if any(k is not R.Same for k in kinds[:-2]):
                raise ValueError(f"leaf {p}: window axes differ, global {gs} vs sub-network {ss} (kernel sizes must agree)")
        else:
            note = "concatenated"
        rules[p] = R.Place(tuple(maps), note=note)
    for p in pending_heads:
        parent = p.rsplit("/", 1)[0]
        kernel = next((rules.get(parent + "/" + n) for n in _KERNEL_NAMES if parent + "/" + n in rules), None)
        if kernel is not None and isinstance(kernel.maps[-1], R.Same) and len(kernel.maps) >= 2:
            rules[p] = R.head_bias(K, mean=(head == "mean"))
        else:
            sums = [q for q, r in rules.items() if any(n in r.note for n in ("(2.14) sum", "(2.22) mean", "flatten head"))]
            if sums and parent + "/kernel" in pending_heads:
                q = sums[0]
                raise ValueError(
                    f"cannot infer the rule of leaf {p}: layer {parent!r} has the same shapes in the global and the "
                    f"sub-network, after layer {q.rsplit('/', 1)[0]!r}, whose output width {g_shapes[q][-1]} is not "
                    f"divided by K={K} in the sub-network (an undivided hidden width; only the output layer keeps its "
                    f"width, (2.14)); divide that width by K"
                )
            raise ValueError(
                f"cannot infer the rule of leaf {p}: its global and sub-network shapes agree ({g_shapes[p]}) and it is "
                f"not the bias of a logit-sum head; pass overrides={{{p!r}: dcnn_dd.rules.shared(...)}} or another rule"
            )
    # RNN (2.27): U and W of one cell partition their outputs alike, since both are BLOCK on output.
    ordered = {p: rules[p] for p in g_shapes}
    return Plan(K, ordered, g_shapes, s_shapes, treedef)


def _field_rule(p, gs, ss, K, shapes, grid, windows, stride, strict, mean=False):  # noqa: N803
    (g_pre, s_pre) = (tuple(shapes[0]), tuple(shapes[1]))
    if len(gs) != 2:
        raise ValueError(f"leaf {p}: a flatten rule needs a 2-D dense kernel, got shape {gs}")
    G_sp, C = g_pre[:-1], g_pre[-1]  # noqa: N806
    s_sp, c = s_pre[:-1], s_pre[-1]
    if int(np.prod(g_pre)) != gs[0] or int(np.prod(s_pre)) != ss[0]:
        raise ValueError(f"leaf {p}: pre-flatten shapes {g_pre} / {s_pre} do not match kernel rows {gs[0]} / {ss[0]}")
    if C == K * c:
        split = True
    elif C == c:
        split = False
    else:
        raise ValueError(f"leaf {p}: {C} global channels before the flatten vs {c} in the sub-network: not 1x or K={K}x")
    out = R.Same() if gs[1] == ss[1] else R.Block() if gs[1] == K * ss[1] else None
    if out is None:
        raise ValueError(f"leaf {p}: output width {gs[1]} vs {ss[1]} is neither equal nor K={K} times larger")
    if G_sp == s_sp:
        # no spatial decomposition left at this layer (e.g. a 1x1 map): channel blocks only
        if not split:
            raise ValueError(f"leaf {p}: equal spatial shapes {G_sp} and undivided channels: nothing to decompose")
        fields = tuple(R.Box((0,) * len(G_sp), G_sp) for _ in range(K))
    else:
        if grid is None:
            raise ValueError(f"leaf {p} multiplies a flattened {g_pre} map: its composition (2.13) needs grid=")
        if len(G_sp) != grid.ndim:
            raise ValueError(f"leaf {p}: flattened map {g_pre} has {len(G_sp)} spatial axes, the grid has {grid.ndim}")
        w = windows.get(p) if isinstance(windows, Mapping) else windows
        if not split and w is None:
            w = []  # the flatten of the input itself: the field is the subdomain
        fields = flatten_fields(grid, G_sp, s_sp, windows=w, stride=stride, strict=strict, where=f"leaf {p}")
    field = R.Field(tuple(fields), tuple(G_sp), tuple(s_sp), C, split)
    if isinstance(out, R.Same):  # the output layer right after the flatten: summed (2.14), or averaged (2.22)
        if mean:
            return R.Place((field, out), 1.0 / K, note="(2.13)+(2.22) mean, flatten head")
        return R.Place((field, out), note="(2.13)+(2.14) flatten head")
    return R.Place((field, out), note="(2.13) first FC" if split else "Sec. 2.4 FC on decomposed input")
