"""Plans from two Flax modules: :func:`plan_for` (one job: build the plan that composes them).

:func:`plan_for` builds a :class:`~dcnn_dd.composition.Plan` from a global network and one
sub-network (both Linen or both NNX, :mod:`dcnn_dd.nnx_adapter`): the shapes of their variables
(``jax.eval_shape``), the dense layers fed by a flattened map and the total stride in front of them
(found by tracing, :mod:`dcnn_dd.tracing`), then the rules by :func:`~dcnn_dd.composition.make_plan`
((2.11)-(2.14)).  Unless ``verify=False`` it hands the plan to :func:`dcnn_dd.verify.check_composition`
before returning it (the check is the other module's job; this one only asks for it).

Also here, because the plan's error messages need them: :func:`check_shapes` (the shapes of a
composition, shared with the check) and :func:`module_kinds` / :func:`rule_free_kinds` (which layer
kinds a model has, and which of them no rule covers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from dcnn_dd.composition import Plan, make_plan
from dcnn_dd.grid import Grid
from dcnn_dd.nnx_adapter import NNXModel, as_modules
from dcnn_dd.tracing import trace_flatten_shapes, traced_strides

# layer kinds (class names) without a rule, and normalisations whose statistics mix the K channel blocks
_ATTENTION = {"MultiHeadDotProductAttention", "SelfAttention", "MultiHeadAttention"}
_NORM_ACROSS_CHANNELS = {"LayerNorm", "GroupNorm", "RMSNorm", "InstanceNorm"}


def module_kinds(model, variables, x, init_kwargs: Mapping | None = None) -> dict[str, tuple[str, dict]]:
    """Every submodule's path -> (class name, a few attributes), from an abstract apply."""
    if isinstance(model, NNXModel) or callable(getattr(model, "module_kinds", None)):  # NNX (nnx_adapter, nnx_engine)
        return model.module_kinds(variables, x, init_kwargs)
    kinds: dict[str, tuple[str, dict]] = {}

    def record(mdl, method_name):
        path = "/".join(str(p) for p in (mdl.scope.path if mdl.scope is not None else ()))
        attrs = {a: getattr(mdl, a) for a in ("feature_group_count", "use_running_average", "num_groups",
                                              "group_size", "padding", "num_heads") if hasattr(mdl, a)}
        kinds.setdefault(path or "(output)", (type(mdl).__name__, attrs))
        return False

    jax.eval_shape(lambda v, a: model.apply(v, a, capture_intermediates=record, mutable=True, **dict(init_kwargs or {})),
                   variables, x)
    return kinds


def rule_free_kinds(kinds, sub_kinds, K) -> tuple[list[str], list[str]]:  # noqa: N803
    """(layer kinds without a rule that the composition cannot fix, normalisation across channels)."""
    causes, norms = [], []
    for path, (cls, attrs) in kinds.items():
        g = attrs.get("feature_group_count")
        s = sub_kinds.get(path, (None, {}))[1].get("feature_group_count")
        if g is not None and s is not None and not (g == K * s or g == s == 1):
            causes.append(f"a grouped convolution without a rule: {cls} {path!r} has feature_group_count={g} in the "
                          f"global network and {s} in the sub-network; the composition needs the global count to be "
                          f"K x the sub-network's ({K * s})")
        if cls in _ATTENTION:
            causes.append(f"an attention layer ({cls} {path!r}): a layer kind without a rule")
        if cls in _NORM_ACROSS_CHANNELS:
            what = ("it mixes the K channel blocks" if cls in ("LayerNorm", "RMSNorm")
                    else "its statistics span the whole map, and channel groups unless they lie inside the blocks")
            norms.append(f"normalisation across channels ({cls} {path!r}, no rule: {what})")
    return causes, norms


def unruled_layers(global_model, sub_model, K, g_vars, s_vars, x_g, x_s, init_kwargs) -> list[str]:  # noqa: N803
    """The known layer kinds without a rule in a model pair (for error messages)."""
    try:
        kinds = module_kinds(global_model, g_vars, x_g, init_kwargs)
        sub_kinds = module_kinds(sub_model, s_vars, x_s, init_kwargs)
    except Exception:  # noqa: BLE001 - only an addition to another error message
        return []
    causes, norms = rule_free_kinds(kinds, sub_kinds, K)
    return causes + norms


def check_shapes(grid: Grid | None, K: int | None, input_shape, sub_input_shape=None):  # noqa: N803
    """(K, input_shape, sub_input_shape) of a composition, checked: K from the grid when not given,
    ``input_shape`` with its batch and channel axes and the grid's spatial shape, the sub-networks'
    input shape (by default the grid's sub-images).  Shared by :func:`plan_for` and
    :func:`check_composition`."""
    if K is None:
        if grid is None:
            raise ValueError("give K= or grid=")
        K = grid.K  # noqa: N806
    if input_shape is None:
        raise ValueError("give input_shape= (with batch and channels), e.g. (1, 28, 28, 1)")
    input_shape = tuple(int(n) for n in input_shape)
    if grid is not None:
        if len(input_shape) == grid.ndim + 1 and input_shape[:-1] == grid.shape:
            raise ValueError(f"input_shape={input_shape} has no batch axis: pass (1, {', '.join(map(str, input_shape))})")
        if len(input_shape) != grid.ndim + 2:
            raise ValueError(f"input_shape={input_shape}: a {grid.ndim}-d grid takes (batch, *{grid.shape}, channels)")
        if input_shape[1:-1] != grid.shape:
            raise ValueError(f"input_shape={input_shape} does not match the grid: its spatial shape "
                             f"{input_shape[1:-1]} is not the grid's {grid.shape}")
    if sub_input_shape is None:
        sub_input_shape = (input_shape[0], *grid.sub_shape, input_shape[-1]) if grid is not None else input_shape
    return K, input_shape, tuple(int(n) for n in sub_input_shape)



def float32_twin(module):
    """A Linen module with a compute ``dtype`` field (the zoo's, ``PlainCNN``, a user's) at float32:
    the plan is derived and checked in float32 whatever the compute dtype (bfloat16 rounding would
    read as a composition error), and it holds for the bfloat16 network too, whose parameters are
    the same float32 tree.  Any other module is returned as it is."""
    import flax.linen as nn

    if isinstance(module, nn.Module) and dataclasses.is_dataclass(module) and "dtype" in {
            f.name for f in dataclasses.fields(module)}:
        dt = getattr(module, "dtype", None)
        if dt is not None and jnp.dtype(dt) != jnp.float32:
            return module.clone(dtype=jnp.float32)
    return module


def plan_for(
    global_model,
    sub_model,
    grid: Grid | None,
    *,
    K: int | None = None,  # noqa: N803
    input_shape: Sequence[int] | None = None,
    sub_input_shape: Sequence[int] | None = None,
    init_kwargs: Mapping | None = None,
    verify: bool = True,
    exact: bool = False,
    samples: int = 2,
    **kwargs,
) -> Plan:
    """A plan from two Flax modules (both Linen or both NNX, see :mod:`dcnn_dd.nnx_adapter`): ``global_model`` on inputs of ``input_shape`` (with batch,
    e.g. ``(1, 28, 28, 1)``) and ``sub_model`` on the sub-images (``sub_input_shape``, by default
    the grid's sub-image shape with the same batch and channels).  Shapes come from
    ``jax.eval_shape``; flattened layers are found by :func:`~dcnn_dd.tracing.trace_flatten_shapes`, the total
    stride in front of them by tracing the model (:func:`~dcnn_dd.tracing.traced_strides`).
    Keyword arguments go to :func:`make_plan`.

    With ``verify=True`` (the default) the plan proves itself before it is returned:
    :func:`check_composition` composes K random, perturbed sub-networks and compares
    the global network with them layer by layer on ``samples`` random inputs.  A plan that should be
    exact and is not is a ``ValueError`` naming the first deviating layer and the likely cause; an
    architecture that is inexact by nature (padding, global pooling, normalisation across channels,
    BatchNorm in training mode) gets a ``UserWarning`` with the measured deviation, or a
    ``ValueError`` with ``exact=True``.  The report is ``plan.verification``."""
    K, input_shape, sub_input_shape = check_shapes(grid, K, input_shape, sub_input_shape)  # noqa: N806
    global_model, sub_model = as_modules(float32_twin(global_model), float32_twin(sub_model))
    init_kwargs = dict(init_kwargs or {})
    key = jax.random.PRNGKey(0)
    x_g = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    x_s = jax.ShapeDtypeStruct(tuple(sub_input_shape), jnp.float32)
    g_vars = jax.eval_shape(lambda x: global_model.init(key, x, **init_kwargs), x_g)
    try:
        s_vars = jax.eval_shape(lambda x: sub_model.init(key, x, **init_kwargs), x_s)
    except ZeroDivisionError as e:
        raise ValueError(
            f"the sub-network does not initialise on sub-images of shape {tuple(sub_input_shape)}: a feature map "
            f"shrinks to zero size (a layer initialised with zero inputs: {e}); the sub-images are too small for "
            f"the network's kernels and strides: use larger sub-images (grid size=) or fewer poolings"
        ) from e
    # mutable=True: also models whose init_kwargs put BatchNorm in training mode trace
    g_flat = trace_flatten_shapes(lambda v, x: global_model.apply(v, x, mutable=True, **init_kwargs), g_vars, x_g)
    s_flat = trace_flatten_shapes(lambda v, x: sub_model.apply(v, x, mutable=True, **init_kwargs), s_vars, x_s)
    for p, shp in s_flat.items():
        if 0 in tuple(shp):
            raise ValueError(f"the sub-network's feature map in front of {p} has shape {tuple(shp)} on sub-images of "
                             f"shape {tuple(sub_input_shape)}: it shrinks to zero; use larger sub-images")
    flatten = {}
    for p, shp in g_flat.items():
        if p in s_flat and (tuple(shp) != tuple(s_flat[p]) or len(shp) > 1):
            flatten[p] = (tuple(shp), tuple(s_flat[p]))
    if "flatten" in kwargs:
        flatten.update(kwargs.pop("flatten"))
    if grid is not None and flatten and "stride" not in kwargs and "windows" not in kwargs and K > 1:
        kwargs.update(traced_strides(global_model, g_vars, x_g, grid, flatten, init_kwargs, kwargs.get("strict", True)))
    try:
        plan = make_plan(g_vars, s_vars, K, grid=grid, flatten=flatten, **kwargs)
    except ValueError as e:
        unruled = unruled_layers(global_model, sub_model, K, g_vars, s_vars, x_g, x_s, init_kwargs)
        if unruled:
            raise ValueError(f"{e} (the model has layer kinds without a rule: {'; '.join(unruled)})") from e
        raise
    if not verify:
        return plan
    from dcnn_dd.verify import check_composition  # the check builds on this module (its default plan, the layer kinds)

    report = check_composition(global_model, sub_model, grid, plan=plan, K=K, input_shape=input_shape,
                               sub_input_shape=sub_input_shape, init_kwargs=init_kwargs, samples=samples)
    report.enforce(exact=exact, stacklevel=3)
    return dataclasses.replace(plan, verification=report)


__all__ = ["check_shapes", "module_kinds", "plan_for", "rule_free_kinds", "unruled_layers"]
