"""Nonlinear multigrid reduction in time (MGRIT, FAS) across the layers of a ResNet.

Guenther et al. (2020), Sec. 3 (following Falgout et al., SISC 2014, and XBraid).  A level holds
the states of N_l steps as one array ``u`` of shape (N_l + 1, ...) and solves the block system

    A(u) = g,   A(u)_0 = u_0,   A(u)_{i+1} = u_{i+1} - Phi(u_i; p_i, h_l)          (3.1)

where ``Phi`` is any step (the ResNet layer (2.3), or the adjoint's linear step) and ``p_i`` its
per-step parameters, stacked on a leading axis.  On the finest level g = (u_0, 0, ..., 0), so the
solution is the forward propagation.  With coarsening factor m, every m-th point is a C-point,
the others F-points; the N_l / m *chunks* (a C-point and the m - 1 F-points after it) are
independent during relaxation:

* **F-relaxation**: in every chunk, propagate from its C-point through its m - 1 F-points
  (one ``lax.scan`` of m - 1 steps, ``vmap``-ed over the chunks, or ``jax.shard_map`` over the
  ``layers`` mesh axis when several devices hold the chunks; on a (``layers``, ``data``) mesh,
  :func:`layers_data_mesh`, only ``layers`` is manual and XLA splits the batch over ``data``);
* **C-relaxation**: every C-point from the F-point before it (one batched step);
* **FCF** = F, C, F.  Choosable per level; the usual choice (``relax="auto"``) is F on the finest
  level and FCF on the coarser ones (Sec. 3.2).

**Coarse level** (FAS, Sec. 3.1): the coarse unknowns are the C-points v = R u (injection), the
coarse step is the same layer with step size m h and the parameters of the layer at the C-point
(injection, p_c[J] = p[J m]), and the coarse right-hand side carries the fine residual r (the
tau correction of FAS)::

    r_J      = g_{Jm} + Phi(u_{Jm-1}; p_{Jm-1}, h) - u_{Jm}                  (fine residual at C-points)
    g_c[J]   = r_J + v_J - Phi(v_{J-1}; p_c[J-1], m h),  g_c[0] = g_0

After F-relaxation the residual vanishes at F-points, so injecting it at C-points is MGRIT's ideal
restriction.  The coarse solution v* replaces the C-points (u_C <- u_C + v* - R u = v*), and an
F-relaxation interpolates to the F-points (ideal interpolation).  The coarse problem is solved by
the same V-cycle recursively, and the coarsest level serially (``lax.scan``).

**Iteration** on the finest level: one initial F-relaxation, then per iteration
[C + F if FCF] -> restrict -> coarse solve -> correct -> F-relax, and the residual norm
||r||_2 over the C-points after it (what XBraid measures) decides the stop: ``res <= tol``, or
``res <= rtol * res_0``, ``max_iter`` iterations, or a non-finite residual (stopped; :class:`SolveInfo` records the
iteration and the level on which non-finite values first appeared, :func:`check` raises).
With exact coarse solves (two levels) F-relaxation MGRIT is exact after N / m iterations: every
iteration makes one more C-point exact (the finite-step property).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

RELAXATIONS = ("F", "FCF")


class NonFiniteResidualError(FloatingPointError):
    """MGRIT stopped on a non-finite residual."""


@dataclasses.dataclass(frozen=True)
class Solver:
    """Settings of one MGRIT solve (hashable: a static argument of the jitted solvers).

    ``levels``: number of levels including the finest (2 = two-level, exact coarse solve);
    ``min_coarse``: the fewest steps the coarsest level may have; ``relax``: ``"auto"`` (F on the
    finest level, FCF below), one of ``"F"``/``"FCF"`` for all levels, or a tuple with one entry per
    relaxed level (levels - 1 entries); ``tol``: stop when the residual norm is <= tol (0: run
    ``max_iter`` iterations, the one-shot budget); ``rtol``: also stop when it is <= rtol times the
    initial residual; ``strategy``: ``"vmap"`` on one device,
    ``"shard_map"`` over the ``layers`` axis of ``mesh`` (levels whose chunk count the device
    count does not divide use ``vmap``).  A ``mesh`` with a ``data`` axis as well
    (:func:`layers_data_mesh`) also splits the batch of the states over ``data``; then the
    finest level's chunk count must be a multiple of the ``layers`` size and the batch a multiple
    of the ``data`` size (ValueError otherwise)."""

    cfactor: int = 4
    levels: int = 2
    max_iter: int = 10
    tol: float = 0.0
    rtol: float = 0.0
    relax: str | tuple[str, ...] = "auto"
    min_coarse: int = 1
    strategy: str = "vmap"
    mesh: Mesh | None = None

    def __post_init__(self):
        if self.cfactor < 2:
            raise ValueError(f"cfactor={self.cfactor}: the coarsening factor must be >= 2")
        if self.levels < 2:
            raise ValueError(f"levels={self.levels}: MGRIT needs >= 2 levels (1 level is the serial scan)")
        if self.max_iter < 0 or self.tol < 0 or self.rtol < 0 or self.min_coarse < 1:
            raise ValueError(f"max_iter={self.max_iter}, tol={self.tol}, rtol={self.rtol}, min_coarse={self.min_coarse}: "
                             "need max_iter >= 0, tol >= 0, rtol >= 0, min_coarse >= 1")
        if self.strategy not in ("vmap", "shard_map"):
            raise ValueError(f"strategy={self.strategy!r}: choose 'vmap' or 'shard_map'")
        if self.strategy == "shard_map" and (self.mesh is None or "layers" not in self.mesh.axis_names):
            raise ValueError("strategy='shard_map' needs a mesh with a 'layers' axis (layers_mesh())")
        rel = self.relaxations
        if len(rel) != self.levels - 1 or any(r not in RELAXATIONS for r in rel):
            raise ValueError(f"relax={self.relax!r}: 'auto', one of {RELAXATIONS}, or a tuple of "
                             f"{self.levels - 1} of them (one per relaxed level)")

    @property
    def relaxations(self) -> tuple[str, ...]:
        if self.relax == "auto":
            return ("F",) + ("FCF",) * (self.levels - 2)
        if isinstance(self.relax, str):
            return (self.relax,) * (self.levels - 1)
        return tuple(self.relax)

    def replace(self, **kw) -> Solver:
        return dataclasses.replace(self, **kw)

    @property
    def data_mesh(self) -> Mesh | None:
        """The mesh when the batch is split over its ``data`` axis (``shard_map`` on a
        (``layers``, ``data``) mesh), else None."""
        if self.strategy == "shard_map" and "data" in self.mesh.axis_names:
            return self.mesh
        return None


def layers_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh with a ``layers`` axis over the first ``num_devices`` devices (default: all)."""
    from dcnn_dd.sharding import line_mesh

    return line_mesh("layers", num_devices)


def layers_data_mesh(layers: int | None = None, data: int = 1) -> Mesh:
    """A 2-D mesh of shape (``layers``, ``data``), axis names ("layers", "data"), over the first
    ``layers * data`` devices (``layers`` default: all devices // ``data``).  With
    ``Solver(strategy="shard_map", mesh=...)`` MGRIT's chunks go over ``layers`` and the batch over
    ``data`` (layer- and data-parallel at once); device (i, j) holds chunk group i, batch part j."""
    import numpy as np

    devices = jax.devices()
    if data < 1 or (layers is not None and layers < 1):
        raise ValueError(f"layers={layers}, data={data}: both must be >= 1")
    if layers is None:
        layers = len(devices) // data
    if not 1 <= layers * data <= len(devices):
        raise ValueError(f"layers={layers} x data={data} = {layers * data} devices: this run has {len(devices)}")
    return Mesh(np.array(devices[: layers * data]).reshape(layers, data), ("layers", "data"))


def shard_batch(solver: Solver, a, axis: int, what: str = "states"):
    """``a`` with its dimension ``axis`` (the batch) split over the ``data`` axis of the solver's mesh
    (a sharding constraint; ValueError if the ``data`` size does not divide it); unchanged without one."""
    mesh = solver.data_mesh
    if mesh is None:
        return a
    D, B = mesh.shape["data"], a.shape[axis]  # noqa: N806
    if B % D:
        raise ValueError(f"batch {B} of the {what} is not divisible by the 'data' axis size {D}")
    spec = P(*([None] * axis), "data")
    return jax.lax.with_sharding_constraint(a, jax.sharding.NamedSharding(mesh, spec))


def hierarchy(n_steps: int, solver: Solver) -> list[int]:
    """Steps per level [N, N/m, ...]; clear errors for remainders and too many levels."""
    m, sizes = solver.cfactor, [n_steps]
    for level in range(1, solver.levels):
        n = sizes[-1]
        if n // m < solver.min_coarse:
            raise ValueError(f"levels={solver.levels} coarsens N={n_steps} below min_coarse={solver.min_coarse} "
                             f"step(s) (level {level} would have {n // m}); use at most "
                             f"{max_levels(n_steps, m, solver.min_coarse)} levels")
        if n % m:
            raise ValueError(f"level {level - 1} has {n} steps, not divisible by the coarsening factor m={m}: "
                             f"choose N divisible by m^(levels-1) = {m ** (solver.levels - 1)}")
        sizes.append(n // m)
    return sizes


def max_levels(n_steps: int, cfactor: int, min_coarse: int = 1) -> int:
    """The most levels that keep every level divisible and the coarsest >= ``min_coarse`` steps."""
    levels, n = 1, n_steps
    while n % cfactor == 0 and n // cfactor >= min_coarse:
        levels, n = levels + 1, n // cfactor
    return levels


class SolveInfo(NamedTuple):
    """What a solve did: ``iterations`` run; ``residuals[k]`` the residual norm after iteration k
    (k = 0: the initial guess after one F-relaxation; NaN past the last iteration); the first
    iteration with a non-finite residual and the level on which non-finite values first appeared
    (a coarse level's blow-up reaches the fine residual through the correction; it is still reported
    as that coarse level) (-1: none)."""

    iterations: jax.Array
    residuals: jax.Array
    nonfinite_iteration: jax.Array
    nonfinite_level: jax.Array


def check_solve(info: SolveInfo, what: str = "MGRIT") -> SolveInfo:
    """Raise :class:`NonFiniteResidualError` (with iteration and level) if the solve hit a non-finite residual."""
    lev = int(info.nonfinite_level)
    if lev >= 0:
        raise NonFiniteResidualError(f"{what}: non-finite residual at iteration {int(info.nonfinite_iteration)} "
                                     f"(first non-finite values on level {lev}); stopped")
    return info


def conv_factor(info: SolveInfo, skip_first: bool = True) -> float:
    """Mean per-iteration residual reduction factor of a solve.

    ``skip_first=True`` (the asymptotic factor, as MGRIT papers report it): (r_k / r_1)^(1/(k-1)),
    leaving out the first iteration, whose factor reflects the initial guess (u_0 copied to every
    layer: the first correction can even raise the C-point residual).  ``skip_first=False``:
    (r_k / r_0)^(1/k) over all iterations.  When the last residuals are exactly 0 (an exact solve,
    e.g. two-level F-relaxation after N/m iterations), the factor of the iterations before them;
    0 when the residual reached 0 in the first counted iteration; NaN when too few iterations ran."""
    k, first = int(info.iterations), 1 if skip_first else 0
    if k - first < 1:
        return float("nan")
    r = [float(x) for x in info.residuals[: k + 1]]
    if r[first] == 0:
        return 0.0
    while r[k] == 0 and k - 1 > first:  # exact: (r_k / r_first) would be 0 whatever the rate before
        k -= 1
    if r[k] == 0:
        return 0.0
    return (r[k] / r[first]) ** (1.0 / (k - first))


def residual_reduction(info: SolveInfo) -> float:
    """r_k / r_0: the residual left after the solve's ``k`` iterations, relative to the initial one."""
    k = int(info.iterations)
    r0 = float(info.residuals[0])
    return float(info.residuals[k]) / r0 if r0 > 0 else 0.0


# --- chunk-parallel building blocks ------------------------------------------------------------
def _tmap(f, *trees):
    return jax.tree.map(f, *trees)


def _chunked(tree, m):
    return _tmap(lambda a: a.reshape(a.shape[0] // m, m, *a.shape[1:]), tree)


def _every(tree, m, start=0, count=None):
    return _tmap(lambda a: a[start::m][:count], tree)


class _Level:
    """One level: its step size, parameters, relaxation and how its chunks are mapped."""

    def __init__(self, step, params, h, m, n, relax, solver: Solver):
        self.step, self.params, self.h, self.m, self.n, self.relax = step, params, h, m, n, relax
        chunks = n // m
        D = solver.mesh.shape["layers"] if solver.strategy == "shard_map" else 1  # noqa: N806
        self.sharded = D > 1 and chunks % D == 0
        self.mesh = solver.mesh
        # on a (layers, data) mesh only ``layers`` is manual: XLA partitions the batch over ``data``
        self.manual = {"layers"} if solver.data_mesh is not None else None

    def cmap(self, fn):
        """``fn`` of one chunk -> the same over all chunks (leading axis): vmap, or shard_map over ``layers``."""
        batched = jax.vmap(fn)
        if not self.sharded:
            return batched

        def run(*args):
            specs = tuple(P("layers") for _ in args)
            kw = {} if self.manual is None else {"axis_names": self.manual}
            return jax.shard_map(batched, mesh=self.mesh, in_specs=specs, out_specs=P("layers"), **kw)(*args)

        return run

    def batched_step(self, us, ps, gs):
        """Phi(u_i; p_i, h) + g_i for a batch of independent points (C-relaxation, residuals)."""
        return self.cmap(lambda u, p, g: self.step(u, p, self.h) + g)(us, ps, gs)

    def f_relax(self, u, g):
        m, h, step = self.m, self.h, self.step

        def chunk(u_c, g_c, p_c):
            def body(v, gp):
                gi, pi = gp
                v = step(v, pi, h) + gi
                return v, v

            return jax.lax.scan(body, u_c, (g_c[: m - 1], _tmap(lambda a: a[: m - 1], p_c)))[1]

        fpts = self.cmap(chunk)(u[:-1:m], _chunked(g[1:], m), _chunked(self.params, m))  # (n/m, m-1, ...)
        body = _chunked(u[1:], m).at[:, : m - 1].set(fpts)
        return jnp.concatenate([u[:1], body.reshape(u[1:].shape)])

    def c_residual_inputs(self, u, g):
        m = self.m
        return u[m - 1 :: m], _every(self.params, m, m - 1), g[m::m]

    def c_relax(self, u, g):
        m = self.m
        return u.at[m::m].set(self.batched_step(*self.c_residual_inputs(u, g)))

    def residual(self, u, g):
        """r_J = g_{Jm} + Phi(u_{Jm-1}) - u_{Jm} at the C-points J = 1..n/m."""
        return self.batched_step(*self.c_residual_inputs(u, g)) - u[self.m :: self.m]

    def pre_relax(self, u, g):
        u = self.f_relax(u, g)
        return self.f_relax(self.c_relax(u, g), g) if self.relax == "FCF" else u


def _serial(step, params, h, g):
    """Exact solve of (3.1) on the coarsest level: u_{i+1} = Phi(u_i) + g_{i+1} (``lax.scan``)."""

    def body(v, pg):
        p, gi = pg
        v = step(v, p, h) + gi
        return v, v

    _, vs = jax.lax.scan(body, g[0], (params, g[1:]))
    return jnp.concatenate([g[:1], vs])


def _finite(u):
    return jnp.all(jnp.isfinite(u))


def _bad(level, ok, bad):
    return jnp.where(ok, bad, jnp.minimum(bad, level))


class Hierarchy:
    """The levels of one solve: per-level step size h m^l and injected parameters p[::m^l]."""

    def __init__(self, step, params, h, solver: Solver, coarse_params=None):
        n = jax.tree.leaves(params)[0].shape[0]
        self.sizes = hierarchy(n, solver)
        m = solver.cfactor
        if solver.data_mesh is not None and (n // m) % solver.mesh.shape["layers"]:
            raise ValueError(f"{n // m} chunks on the finest level (N={n}, m={m}) are not divisible by the "
                             f"'layers' axis size {solver.mesh.shape['layers']}")
        plist = [params]
        for level in range(1, solver.levels):
            plist.append(coarse_params(level) if coarse_params is not None else _every(plist[-1], m))
        rel = solver.relaxations
        self.levels = [_Level(step, plist[i], h * m**i, m, self.sizes[i], rel[i], solver)
                       for i in range(solver.levels - 1)]
        self.coarsest = (step, plist[-1], h * m ** (solver.levels - 1))
        self.none = solver.levels  # "no non-finite level" sentinel

    def cycle(self, i, u, g, bad):
        """Restrict, solve the coarse problem (recursively), correct the C-points, F-relax.

        ``u`` is already relaxed on level i.  Returns the new u and the level on which a non-finite
        value first appeared: level i's states are checked on entry, level i+1's (its right-hand
        side includes the coarse steps ``phi_c``) after its pre-relaxation, resp. after the serial
        solve on the coarsest level; the minimum keeps the finest such level (a non-finite coarse
        solve only reaches the finer levels after it was recorded)."""
        lv = self.levels[i]
        bad = _bad(i, _finite(u), bad)
        r = lv.residual(u, g)
        v = u[:: lv.m]
        phi_c = lv.cmap(self._coarse_step(i + 1))(v[:-1], self._coarse_params(i + 1))
        gc = jnp.concatenate([g[:1], r + v[1:] - phi_c])
        if i + 1 == len(self.levels):
            vs = _serial(*self.coarsest, gc)
            bad = _bad(i + 1, _finite(vs), bad)
        else:  # level i+1's states are checked on entry to its cycle
            vs, bad = self.cycle(i + 1, self.levels[i + 1].pre_relax(v, gc), gc, bad)
        u = lv.f_relax(u.at[:: lv.m].set(vs), g)
        return u, bad

    def _coarse_step(self, i):
        if i == len(self.levels):
            step, _, h = self.coarsest
        else:
            step, h = self.levels[i].step, self.levels[i].h
        return lambda a, p: step(a, p, h)

    def _coarse_params(self, i):
        return self.coarsest[1] if i == len(self.levels) else self.levels[i].params


def solve(step, params, h: float, g, u_init, solver: Solver, coarse_params=None):
    """Solve (3.1) on the finest level by MGRIT; returns (states (N+1, ...), :class:`SolveInfo`).

    ``step(u, p, h)`` is one step with per-step parameters ``p`` (a slice of ``params``, whose
    leaves have the leading step axis N); ``g`` (N+1, ...) is the right-hand side, ``g[0]`` the
    initial value; ``u_init`` the initial guess (warm start; its point 0 is replaced by g[0]).
    ``coarse_params(level)`` overrides the injected parameters of a coarse level (the adjoint
    uses it).  Traceable: runs a ``lax.while_loop`` inside ``jit``."""
    hier = Hierarchy(step, params, h, solver, coarse_params)
    fine = hier.levels[0]
    u = fine.f_relax(u_init.at[0].set(g[0]), g)
    res0 = jnp.linalg.norm(fine.residual(u, g).ravel())
    none = jnp.int32(hier.none)
    hist = jnp.full((solver.max_iter + 1,), jnp.nan, res0.dtype).at[0].set(res0)
    bad0 = jnp.where(jnp.isfinite(res0), none, jnp.int32(0))
    stop = jnp.maximum(solver.tol, solver.rtol * res0)

    def cond(c):
        k, _, res, _, bad = c
        return (k < solver.max_iter) & (res > stop) & (bad == none)

    def body(c):
        k, u, _, hist, bad = c
        if fine.relax == "FCF":  # the F of FCF was the previous iteration's interpolation
            u = fine.f_relax(fine.c_relax(u, g), g)
        u, bad = hier.cycle(0, u, g, bad)
        res = jnp.linalg.norm(fine.residual(u, g).ravel())
        # a non-finite value on a coarse level (recorded by the cycle with that level's index) reaches
        # the fine residual through the correction: only blame level 0 when nothing was recorded yet
        bad = jnp.where(jnp.isfinite(res) | (bad != none), bad, jnp.int32(0))
        return k + 1, u, res, hist.at[k + 1].set(res), bad

    k, u, _, hist, bad = jax.lax.while_loop(cond, body, (jnp.int32(0), u, res0, hist, bad0))
    failed = bad != none
    info = SolveInfo(k, hist, jnp.where(failed, k, -1), jnp.where(failed, bad, -1))
    return u, info


def critical_path(n_steps: int, solver: Solver, iterations: int, processors: int | None = None) -> int:
    """Sequential step applications on the critical path of ``iterations`` MGRIT iterations
    (plus the initial F-relaxation and residual) with ``processors`` (default N/m) processors,
    each holding ceil(chunks / P) chunks of a level (communication not counted).

    Per iteration: on every relaxed level, its relaxation (F: m-1, FCF: 2(m-1)+1; the finest
    level's F is the previous interpolation), the residual at the C-points (1), the coarse step
    ``phi_c`` of the FAS right-hand side (1: Phi_c(v_{J-1}) runs on the processor of chunk J-1,
    which also computes the residual step from its last F-point) and the interpolating
    F-relaxation (m-1); the coarsest level serially (N_L steps); and the fine residual after the
    cycle whose norm decides the stop (1).  :func:`solve` computes that residual afresh at the
    start of the next cycle, so it is counted as run: twice."""
    sizes = hierarchy(n_steps, solver)
    m, P_ = solver.cfactor, processors or n_steps // solver.cfactor  # noqa: N806
    per_iter = 0
    for i, rel in enumerate(solver.relaxations):
        groups = math.ceil(sizes[i] // m / P_)
        relax = (m - 1) if rel == "F" else 2 * (m - 1) + 1
        if i == 0:
            relax -= m - 1  # done by the previous iteration's interpolation
        per_iter += groups * (relax + 1 + 1 + (m - 1))  # relax, residual, phi_c, interpolation
    per_iter += sizes[-1]
    fine_groups = math.ceil(n_steps // m / P_)
    per_iter += fine_groups  # the stopping test's fine residual
    start = fine_groups * ((m - 1) + 1)  # the initial F-relaxation and residual
    return start + iterations * per_iter
