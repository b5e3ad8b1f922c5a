"""Plan checks: compose random sub-networks with a plan and compare, layer by layer (one job).

:func:`check_composition` composes K randomly initialised *and perturbed* sub-networks (non-zero
biases, BatchNorm statistics away from 0/1) with a plan (by default :func:`dcnn_dd.planning.plan_for`'s,
unchecked), runs the global network and the K sub-networks on a few random inputs with
``capture_intermediates=True`` (every submodule's output, no cooperation from the model needed; for
NNX modules :mod:`dcnn_dd.nnx_adapter` captures them), and compares:

* every layer output with spatial axes: the global output restricted to sub-network k's activation
  field (Section 2.1.1; its offset is found among the few positions the layer's geometry allows)
  and channel block k, against sub-network k's output (Theorem 2.1 (1));
* every layer output without spatial axes: channel block k against sub-network k;
* the network output against the sum (``head='sum'``, (2.16)), the mean ((2.22)) or the
  concatenation (Section 2.4) of the sub-network outputs.

The :class:`CompositionReport` holds the per-layer deviations (printable, a table in a notebook),
what in the architecture is inexact by nature (padding, pooling over the whole map, normalisation
across channels, BatchNorm in training mode) and, where layers deviate, the likely cause
(the diagnosis).  :func:`~dcnn_dd.planning.plan_for` runs this check on the plan it builds and
``report.enforce()`` raises ``ValueError`` (should be exact and is not) or warns (``UserWarning``,
inexact by nature).
"""

from __future__ import annotations

import dataclasses
import html
import warnings
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dcnn_dd.composition import Plan
from dcnn_dd.grid import Grid, decompose_input
from dcnn_dd.nnx_adapter import as_modules
from dcnn_dd.planning import check_shapes, module_kinds, plan_for, rule_free_kinds
from dcnn_dd.tracing import Geometry, trace_geometry
from dcnn_dd.tree import path_str

README_SECTION = "docs/api.md, section 'What plan_for checks'"

# module kinds (class names) the rules of dcnn_dd.rules cover, or that carry no parameters and act
# element-wise; anything else that deviates is named as a possible layer kind without a rule
_COVERED = {"Conv", "ConvLocal", "Dense", "DenseGeneral", "BatchNorm", "Dropout", "Sequential", "Embed",
            "Linear", "LinearGeneral"}  # the last two: NNX's dense layers


# --------------------------------------------------------------------------- the report
@dataclasses.dataclass
class LayerCheck:
    """One compared layer output: the largest deviation over the K sub-networks and the samples."""

    layer: str
    kind: str
    global_shape: tuple[int, ...]
    sub_shape: tuple[int, ...]
    compared: str
    max_abs: float | None = None
    scale: float = 0.0
    ok: bool | None = None

    @property
    def relative(self) -> float | None:
        return None if self.max_abs is None else self.max_abs / max(self.scale, 1e-12)


@dataclasses.dataclass
class CompositionReport:
    """The per-layer deviation report of one plan (see :func:`check_composition`)."""

    K: int
    head: str
    samples: int
    rows: list[LayerCheck]
    output_deviation: float | None = None
    output_scale: float = 0.0
    argmax_agreement: float | None = None
    inexact_features: list[str] = dataclasses.field(default_factory=list)
    causes: list[str] = dataclasses.field(default_factory=list)
    total_stride: tuple[int, ...] | None = None
    note: str = ""

    @property
    def first_deviation(self) -> LayerCheck | None:
        return next((r for r in self.rows if r.ok is False), None)

    @property
    def exact(self) -> bool:
        return self.first_deviation is None

    def summary(self) -> str:
        if self.note and not self.rows:
            return self.note
        head = {"sum": "the sum of the sub-network outputs", "mean": "the mean of the sub-network outputs",
                "concat": "the concatenation of the sub-network outputs"}[self.head]
        out = ""
        if self.output_deviation is not None:
            out = (f"max |global output - {head}| = {self.output_deviation:.3g} "
                   f"(relative {self.output_deviation / max(self.output_scale, 1e-12):.2g})")
            if self.argmax_agreement is not None:
                out += f", argmax agrees on {100 * self.argmax_agreement:.0f}%"
        f = self.first_deviation
        if f is None:
            return f"exact on {self.samples} random inputs with K={self.K} random sub-networks: " + out
        return (f"first deviating layer {f.layer!r} ({f.kind}): max deviation {f.max_abs:.3g} (relative "
                f"{f.relative:.2g}) on {self.samples} random inputs; " + out)

    def __str__(self) -> str:
        lines = [f"CompositionReport(K={self.K}, head={self.head}): {self.summary()}"]
        w = max([len(r.layer) for r in self.rows] + [5])
        lines.append(f"  {'layer':<{w}}  {'kind':<14} {'global':<16} {'sub-network':<16} {'compared':<18} "
                     f"{'max dev':>9} {'rel':>8}")
        for r in self.rows:
            dev = "-" if r.max_abs is None else f"{r.max_abs:9.2e}"
            rel = "-" if r.relative is None else f"{r.relative:8.1e}"
            mark = "" if r.ok is None else ("" if r.ok else "  <-- deviates")
            lines.append(f"  {r.layer:<{w}}  {r.kind:<14} {'x'.join(map(str, r.global_shape)):<16} "
                         f"{'x'.join(map(str, r.sub_shape)):<16} {r.compared:<18} {dev:>9} {rel:>8}{mark}")
        if self.inexact_features:
            lines.append("  inexact by nature: " + "; ".join(self.inexact_features))
        if self.causes:
            lines.append("  likely cause: " + "; ".join(self.causes))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        red = ' style="color:#b00"'
        rows = "".join(
            f"<tr{red if r.ok is False else ''}><td>{e(r.layer)}</td><td>{e(r.kind)}</td>"
            f"<td>{'x'.join(map(str, r.global_shape))}</td><td>{'x'.join(map(str, r.sub_shape))}</td>"
            f"<td>{e(r.compared)}</td><td>{'' if r.max_abs is None else f'{r.max_abs:.2e}'}</td>"
            f"<td>{'' if r.relative is None else f'{r.relative:.1e}'}</td></tr>" for r in self.rows)
        extra = "".join(f"<p>{e(t)}</p>" for t in (
            ["inexact by nature: " + "; ".join(self.inexact_features)] if self.inexact_features else []) + (
            ["likely cause: " + "; ".join(self.causes)] if self.causes else []))
        return (f"<p><b>CompositionReport</b> (K={self.K}, head={self.head}): {e(self.summary())}</p><table>"
                "<tr><th>layer</th><th>kind</th><th>global</th><th>sub-network</th><th>compared</th>"
                f"<th>max dev</th><th>rel</th></tr>{rows}</table>{extra}")

    def enforce(self, exact: bool = False, stacklevel: int = 3) -> None:
        """Raise ``ValueError`` where the plan should be exact and is not (or where ``exact=True``
        and it is not); warn (``UserWarning``) where the architecture is inexact by nature."""
        if self.exact:
            return
        msg = f"the composed network is not the composition of its sub-networks: {self.summary()}."
        # with padding every layer deviates at the borders, so the cause heuristics are not reliable there
        padded = any(f.startswith("padding") for f in self.inexact_features)
        if (self.causes and not padded) or not self.inexact_features or exact:
            if self.causes:
                msg += " Likely cause: " + "; ".join(self.causes) + "."
            elif not self.inexact_features:
                msg += (" The architecture should be exact (no padding, no pooling over the whole map, no "
                        "normalisation across channels); a layer kind without a rule?")
            if self.inexact_features:
                msg += " Inexact by nature: " + "; ".join(self.inexact_features) + f" (see {README_SECTION})."
            msg += " dd.check_composition(...) prints the per-layer report; plan_for(..., verify=False) skips this check."
            raise ValueError(msg)
        if self.causes:
            msg += " Possibly also (not certain with padding): " + "; ".join(self.causes) + "."
        warnings.warn(
            msg + " Inexact by nature: " + "; ".join(self.inexact_features) + f" (see {README_SECTION}); "
            "pass exact=True to make this an error, verify=False to skip the check.",
            UserWarning, stacklevel=stacklevel)



# --------------------------------------------------------------------------- the check
def _head_of(plan: Plan) -> str:
    notes = [r.note for r in plan.rules.values()]
    if any("(2.22) mean" in n or "head bias, mean" in n for n in notes):
        return "mean"
    if any("(2.14) sum" in n or "head bias, sum" in n or "flatten head" in n for n in notes):
        return "sum"
    return "concat"


def _np_compose(plan: Plan, stacked: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The plan's index maps applied in numpy (no compilation): the same placement as compose()."""
    out = {}
    for p, rule in plan.rules.items():
        sub = np.asarray(stacked[p])
        gshape = tuple(plan.global_shapes[p])
        if not rule.maps:
            out[p] = sub.sum(0) * rule.scale
            continue
        g = np.zeros(gshape, sub.dtype)
        for k in range(plan.K):
            g[rule._index(k, plan.K, sub.shape[1:], gshape)] += sub[k] * np.asarray(rule.scale, sub.dtype)
        out[p] = g
    return out


def _random_sub_vars(sub_model, x_sub, K, seed, init_kwargs, noise=0.3):  # noqa: N803
    """K sub-networks: the model's own initialiser (one compile; the 'rbg' generator, which compiles
    fast), then every floating leaf perturbed in numpy, so that biases and BatchNorm statistics are
    not their initial zeros / ones (variances stay positive)."""
    init = jax.jit(lambda key, x: sub_model.init(key, x, **init_kwargs))
    keys = jax.random.split(jax.random.key(seed, impl="rbg"), K)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(K):
        flat, treedef = jax.tree_util.tree_flatten_with_path(init(keys[k], x_sub))
        leaves = []
        for p, leaf in flat:
            a = np.asarray(leaf)
            if not np.issubdtype(a.dtype, np.floating):
                leaves.append(a)
                continue
            z = rng.standard_normal(a.shape).astype(a.dtype)
            leaves.append(0.5 + np.abs(z) if path_str(p).endswith("/var") else a + noise * z)
        out.append(jax.tree_util.tree_unflatten(treedef, leaves))
    return out


def _captures(state) -> list[tuple[str, np.ndarray]]:
    """(layer name, output) in the order the outputs were recorded (children before parents)."""
    out = []

    def visit(d, prefix):
        for key, val in d.items():
            if key == "__call__":
                name = "/".join(prefix) or "(output)"
                leaves = jax.tree_util.tree_leaves(val)
                for i, leaf in enumerate(leaves):
                    out.append((name if len(leaves) == 1 else f"{name}#{i}", np.asarray(leaf)))
            elif isinstance(val, Mapping):
                visit(val, prefix + (str(key),))

    visit(state.get("intermediates", {}), ())
    # the root's own output last (it completes last)
    root = [r for r in out if r[0].split("#")[0] == "(output)"]
    return [r for r in out if r[0].split("#")[0] != "(output)"] + root


def _compare(G, subs, grid, K, origins_fn, head_mode=None):  # noqa: N803
    """Largest |global restricted - sub| over k (and the scale): channel blocks, fields."""
    s0 = subs[0]
    nd = grid.ndim if grid is not None else 0
    if head_mode in ("sum", "mean"):
        if G.shape != s0.shape:
            return None, 0.0, "skipped: shapes"
        ref = sum(subs) / (K if head_mode == "mean" else 1)
        return float(np.abs(G - ref).max()), float(np.abs(ref).max()), head_mode
    C, c = G.shape[-1], s0.shape[-1]  # noqa: N806
    if C == K * c:
        blocks, what = [slice(k * c, (k + 1) * c) for k in range(K)], "block"
    elif C == c:
        blocks, what = [slice(None)] * K, "all channels"
    else:
        return None, 0.0, "skipped: widths"
    spatial = grid is not None and G.ndim == nd + 2 and s0.ndim == nd + 2 and G.shape[1:-1] != s0.shape[1:-1]
    if not spatial:
        if G.shape[:-1] != s0.shape[:-1]:
            return None, 0.0, "skipped: shapes"
        dev = max(float(np.abs(G[..., blocks[k]] - subs[k]).max()) for k in range(K))
        return dev, max(float(np.abs(s).max()) for s in subs), what
    big, small = G.shape[1:-1], s0.shape[1:-1]
    if any(b < s for b, s in zip(big, small)):
        return None, 0.0, "skipped: shapes"
    dev = 0.0
    for k in range(K):
        cands = []
        for ax in range(nd):
            lo = origins_fn(k, ax, big[ax], small[ax])
            cands.append(sorted({min(max(lo + d, 0), big[ax] - small[ax]) for d in (-1, 0, 1)}))
        best = np.inf
        for start in np.array(np.meshgrid(*cands, indexing="ij")).reshape(nd, -1).T:
            idx = (slice(None),) + tuple(slice(a, a + n) for a, n in zip(start, small)) + (blocks[k],)
            best = min(best, float(np.abs(G[idx] - subs[k]).max()))
        dev = max(dev, best)
    return dev, max(float(np.abs(s).max()) for s in subs), "field + " + what


def check_composition(
    global_model,
    sub_model,
    grid: Grid | None,
    *,
    plan: Plan | None = None,
    K: int | None = None,  # noqa: N803
    input_shape: Sequence[int] | None = None,
    sub_input_shape: Sequence[int] | None = None,
    init_kwargs: Mapping | None = None,
    samples: int = 2,
    seed: int = 0,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    **plan_kwargs,
) -> CompositionReport:
    """Compose K random, perturbed sub-networks with ``plan`` (by default ``plan_for(...,
    verify=False)`` with ``plan_kwargs``) and compare the global network with them, layer by layer,
    on ``samples`` random inputs.  Returns the :class:`CompositionReport` (it raises nothing:
    ``report.enforce()`` does what :func:`plan_for` does with it)."""
    init_kwargs = dict(init_kwargs or {})
    K, input_shape, sub_input_shape = check_shapes(grid, K, input_shape, sub_input_shape)  # noqa: N806
    global_model, sub_model = as_modules(global_model, sub_model)
    if plan is None:
        plan = plan_for(global_model, sub_model, grid, K=K, input_shape=input_shape, sub_input_shape=sub_input_shape,
                        init_kwargs=init_kwargs, verify=False, **plan_kwargs)
    return _check_layers(global_model, sub_model, grid, plan, K, input_shape, sub_input_shape, init_kwargs, samples,
                         seed, rtol, atol)


def _check_layers(global_model, sub_model, grid, plan, K, input_shape, sub_input_shape, init_kwargs, samples,  # noqa: N803
                  seed=0, rtol=1e-4, atol=1e-5) -> CompositionReport:
    """:func:`check_composition` on checked shapes and modules (:func:`plan_for` calls it so, with
    the same defaults)."""
    prefix = getattr(global_model, "leaf_prefix", "params/")  # where a layer's kernel leaf lives
    head = _head_of(plan)
    if K == 1:
        return CompositionReport(K, head, 0, [], note="K=1: the composition is the identity (nothing to check)")
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (samples, *input_shape[1:]), jnp.float32)
    if grid is not None:
        xs = decompose_input(x, grid)
    elif sub_input_shape[1:] == input_shape[1:]:
        xs = jnp.broadcast_to(x, (K, *x.shape))
    elif sub_input_shape[1:-1] == input_shape[1:-1] and input_shape[-1] == K * sub_input_shape[-1]:
        xs = jnp.stack(jnp.split(x, K, axis=-1))
    else:
        return CompositionReport(K, head, 0, [], note=f"not verified: no grid, and inputs {input_shape} / "
                                 f"{sub_input_shape} are neither shared nor K contiguous feature blocks")
    geo = None
    if grid is not None and len(input_shape) == grid.ndim + 2:
        g_abs = jax.eval_shape(lambda a: global_model.init(jax.random.PRNGKey(0), a, **init_kwargs), x[:1])
        geo = trace_geometry(lambda v, a: global_model.apply(v, a, mutable=True, **init_kwargs), g_abs, x[:1], grid.ndim)
    with jax.default_matmul_precision("highest"):
        sub_vars = _random_sub_vars(sub_model, xs[0, :1], K, seed, init_kwargs)
        # leaves every sub-network must hold identically (rules.shared) are made identical
        flat_subs = [dict(zip(*_names_leaves(v))) for v in sub_vars]
        for p, rule in plan.rules.items():
            if rule.note == "shared":
                for k in range(1, K):
                    flat_subs[k][p] = flat_subs[0][p]
        treedef = jax.tree_util.tree_structure(sub_vars[0])
        order = list(flat_subs[0])
        sub_vars = [jax.tree_util.tree_unflatten(treedef, [f[p] for p in order]) for f in flat_subs]
        stacked = {p: np.stack([np.asarray(f[p]) for f in flat_subs]) for p in order}
        composed = _np_compose(plan, stacked)
        g_vars = jax.tree_util.tree_unflatten(plan.treedef, [composed[p] for p in plan.rules])

        def run(model):
            return jax.jit(lambda v, a: model.apply(v, a, capture_intermediates=True, mutable=True, **init_kwargs))

        g_out, g_state = run(global_model)(g_vars, x)
        run_sub = run(sub_model)
        sub_caps = []
        sub_outs = []
        for k in range(K):
            o, st = run_sub(sub_vars[k], xs[k])
            sub_outs.append(np.asarray(o) if not isinstance(o, tuple) else o)
            sub_caps.append(dict(_captures(st)))
    kinds = module_kinds(global_model, jax.eval_shape(lambda: g_vars), x, init_kwargs)
    # jit returns dicts in sorted key order: put the outputs back in call order (a module after
    # its last submodule, the network output last)
    start = {p: i for i, p in enumerate(kinds)}

    def call_order(item):
        base = item[0].split("#")[0]
        if base == "(output)":
            return (len(start) + 1, 0)
        last = max([i for q, i in start.items() if q == base or q.startswith(base + "/")] or [len(start)])
        return (last, -base.count("/"))

    g_caps = sorted(_captures(g_state), key=call_order)
    sub_kinds = module_kinds(sub_model, jax.eval_shape(lambda: sub_vars[0]), xs[0], init_kwargs)

    def origin_offset(k, ax, n_big, n_small):
        span_in = grid.shape[ax] - grid.sub_shape[ax]
        if span_in == 0:
            return 0
        return int(round(grid.boxes[k].start[ax] * (n_big - n_small) / span_in))

    rows = []
    for name, G in g_caps:  # noqa: N806
        base = name.split("#")[0]
        kind = kinds.get(base if base != "(output)" else "(output)", ("?", {}))[0] if base != "(output)" else "output"
        if any(name not in caps for caps in sub_caps):
            continue
        subs = [caps[name] for caps in sub_caps]
        is_out = base == "(output)"
        rule = plan.rules.get(f"{prefix}{base}/kernel")
        mode = head if is_out and head != "concat" else None
        if not is_out and rule is not None and any(n in rule.note for n in ("(2.14) sum", "(2.22) mean", "flatten head")):
            mode = "mean" if "mean" in rule.note else "sum"  # an output layer: the sum (mean) of the sub-networks'
            if G.shape != subs[0].shape or (grid is not None and G.ndim == grid.ndim + 2):
                rows.append(LayerCheck(name, kind, tuple(G.shape), tuple(subs[0].shape), "skipped: sum layer"))
                continue
        dev, scale, what = _compare(G, subs, grid, K, origin_offset, mode)
        ok = None if dev is None else bool(dev <= atol + rtol * scale)
        rows.append(LayerCheck(name, kind, tuple(G.shape), tuple(subs[0].shape), what, dev, scale, ok))
    rep = CompositionReport(K, head, samples, rows, total_stride=geo.total_stride if geo else None)
    outs = [r for r in rows if r.layer.split("#")[0] == "(output)" and r.max_abs is not None]
    if outs:
        rep.output_deviation, rep.output_scale = outs[-1].max_abs, outs[-1].scale
        G = np.asarray(g_out)  # noqa: N806
        if head in ("sum", "mean") and G.ndim == 2 and G.shape == np.shape(sub_outs[0]):
            ref = sum(np.asarray(s) for s in sub_outs)
            rep.argmax_agreement = float((G.argmax(-1) == ref.argmax(-1)).mean())
    _diagnose(rep, plan, grid, geo, kinds, sub_kinds, init_kwargs, prefix)
    return rep


def _names_leaves(tree):
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [path_str(p) for p, _ in flat], [v for _, v in flat]


def _diagnose(rep: CompositionReport, plan: Plan, grid, geo: Geometry | None, kinds, sub_kinds, init_kwargs,
              prefix: str = "params/") -> None:
    """Fill in what is inexact by nature and, where layers deviate, the likely causes (``prefix``: where
    a layer's kernel leaf lives, ``params/`` for Linen, nothing for NNX)."""
    K = plan.K  # noqa: N806
    feats = []
    if geo is not None:
        if geo.padded_windows:
            feats.append(f"padding (SAME or explicit) in {geo.padded_windows} of {geo.windows} convolutions/poolings: "
                         "sub-images are padded at borders the global image has not")
        if geo.spatial_reductions:
            feats.append("a reduction over the spatial axes (global average pooling over the whole map, or batch "
                         "statistics): channel block k is pooled over the whole map, not over sub-domain k's field")
    rule_causes, norms = rule_free_kinds(kinds, sub_kinds, K)
    feats += norms
    for path, (cls, attrs) in kinds.items():
        if cls == "BatchNorm" and attrs.get("use_running_average") is False:
            feats.append(f"BatchNorm in training mode ({path!r}): batch statistics over the global map")
    rep.inexact_features = feats
    if rep.exact:
        return
    causes = list(rule_causes)
    # an undivided width: a layer planned as the output layer (2.14)/(2.22) followed by more layers,
    # in the order the network calls them (the plan's paths are sorted by name: 'Head' < 'Proj_1')
    called = {path: i for i, path in enumerate(kinds)}
    kernels = [(p, r) for p, r in plan.rules.items() if p.startswith(prefix) and p.endswith("/kernel")]
    kernels.sort(key=lambda pr: called.get(pr[0][len(prefix):-len("/kernel")], len(called)))
    for i, (p, r) in enumerate(kernels):
        if ("(2.14) sum" in r.note or "(2.22) mean" in r.note) and any(
                "(2.11)" in r2.note or "(2.12)" in r2.note for _, r2 in kernels[i + 1:]):
            layer = p[len(prefix):-len("/kernel")]
            causes.append(f"an undivided width: layer {layer!r} has the same output width "
                          f"({plan.global_shapes[p][-1]}) in the global and the sub-network, so it was planned as an "
                          f"output layer (2.14), but layers follow it; divide its width by K={K} in the sub-network")
            break
    if grid is not None and geo is not None and geo.total_stride is not None:
        for k, b in enumerate(grid.boxes):
            bad = [(ax, a, s) for ax, (a, s) in enumerate(zip(b.start, geo.total_stride)) if a % s]
            if bad:
                ax, a, s = bad[0]
                causes.append(f"a misaligned origin: subdomain {k} starts at {a} on axis {ax}, not a multiple of the "
                              f"network's total stride {s} (traced), so its feature maps do not sit on the global grid")
                break
    if not causes and not feats:
        containers = {p for p in kinds if any(q.startswith(p + "/") for q in kinds)}
        unknown = sorted({f"{cls} {p!r}" for p, (cls, _) in kinds.items()
                          if p != "(output)" and p not in containers and cls not in _COVERED})
        if unknown:
            causes.append("a layer kind without a rule among " + ", ".join(unknown[:6]))
    rep.causes = causes



__all__ = ["CompositionReport", "LayerCheck", "check_composition"]
