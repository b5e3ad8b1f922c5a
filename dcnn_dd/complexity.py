"""Parameter and FLOP counts of Flax Linen models without running them (Section 2.1.2).

* :func:`count_params` - number of scalars in a variable tree (``params``, optionally
  ``batch_stats`` for the Keras convention, see below).
* :func:`count_flops` - FLOPs of one forward pass by the paper's convention (2.10): for every
  ``nn.Conv`` call ``(#output positions) * (2 * c_in * t_1 * t_2 - 1) * c_out`` (``c_in`` per group,
  i.e. the kernel's input features), for every ``nn.Dense`` call ``(2 * c_in - 1) * c_out`` per
  output vector, and nothing else.  By the paper's convention, pass a batch-1 ``input_shape``.
* :func:`flop_report` - the same, per layer, plus :attr:`FlopReport.extras`: what counting the
  rest would add (bias additions, BatchNorm, activations, pooling, reductions, residual additions),
  read off the model's jaxpr, and :attr:`FlopReport.xla_style`: 2 x multiply-accumulates plus all
  of these, which is roughly what TensorFlow's profiler (``keras-flops``) reports.

Everything runs on abstract values: one :func:`jax.make_jaxpr` trace of ``model.init`` under
:func:`flax.linen.intercept_methods` (every ``nn.Conv`` / ``nn.Dense`` call's input, output and
kernel shapes are recorded; the trace also gives the variables' shapes, as
:func:`jax.eval_shape` would, see :func:`abstract_variables`).  No convolution
is executed, so a 224x224 ResNet101 costs a fraction of a second, and any user Linen module works.

Parameter-count conventions used by the paper (see :mod:`dcnn_dd.models.zoo`):

* torchvision-style (Table 2.2's ResNets): no conv bias, BatchNorm scale + bias only:
  ``count_params(v)`` on a model with ``conv_bias=False``.
* Keras-style ``model.count_params()`` (Tables 3.1 and 3.4): conv biases, and BatchNorm moving
  mean/variance counted as (non-trainable) parameters: ``count_params(v, include=KERAS)`` on a
  model with ``conv_bias=True``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np

__all__ = [
    "TORCH", "KERAS", "LayerFlops", "FlopReport", "abstract_variables", "count_params", "count_flops",
    "flop_report", "params_and_flops",
]

TORCH = ("params",)
KERAS = ("params", "batch_stats")


# ------------------------------------------------------------------------------------- params
def count_params(variables: Mapping, include: Sequence[str] = ("params",)) -> int:
    """Number of scalars in the collections ``include`` of a variable tree (arrays or
    ``jax.ShapeDtypeStruct`` leaves).  ``include=("params", "batch_stats")`` is Keras' count."""
    if isinstance(include, str):
        include = (include,)
    total = 0
    for col in include:
        for leaf in jax.tree_util.tree_leaves(variables.get(col, {})):
            total += int(np.prod(np.shape(leaf), dtype=np.int64))
    return total


def _spec(input_shape, dtype) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(int(n) for n in input_shape), dtype)


def abstract_variables(model: nn.Module, input_shape: Sequence[int], dtype=jnp.float32, **call_kwargs):
    """The variable tree of ``model.init`` on an input of ``input_shape`` as ShapeDtypeStructs."""
    return jax.eval_shape(
        lambda x: model.init(jax.random.PRNGKey(0), x, **call_kwargs), _spec(input_shape, dtype)
    )


# -------------------------------------------------------------------------------------- FLOPs
@dataclasses.dataclass(frozen=True)
class LayerFlops:
    """One ``nn.Conv`` / ``nn.Dense`` call."""

    path: str
    kind: str  # "conv" | "dense"
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    use_bias: bool
    positions: int  # output positions (all leading dims, batch included)
    flops: int  # (2.10): positions * (2 * prod(kernel[:-1]) - 1) * c_out

    @property
    def macs(self) -> int:
        return self.positions * int(np.prod(self.kernel_shape, dtype=np.int64))

    @property
    def bias_flops(self) -> int:
        return self.positions * self.kernel_shape[-1] if self.use_bias else 0


EXTRA_KEYS = ("bias", "batchnorm", "activation", "pooling", "reduction", "add", "other")


@dataclasses.dataclass(frozen=True)
class FlopReport:
    """FLOPs of one forward pass on ``input_shape`` (batch included; the paper uses batch 1).

    ``total`` follows (2.10) (convs + dense only).  ``extras`` is what counting the other
    operations would add, one op per output element unless said otherwise: ``bias`` (conv/dense
    bias additions), ``batchnorm`` (inference: subtract mean, multiply, add shift, plus the tiny
    per-channel rsqrt), ``activation`` (ReLU's max etc.), ``pooling`` (window - 1 comparisons or
    additions per output), ``reduction`` (global average pooling etc.), ``add`` (residual and
    other additions), ``other`` (everything else that computes).
    """

    input_shape: tuple[int, ...]
    layers: tuple[LayerFlops, ...]
    extras: Mapping[str, int]

    @property
    def conv(self) -> int:
        return sum(r.flops for r in self.layers if r.kind == "conv")

    @property
    def dense(self) -> int:
        return sum(r.flops for r in self.layers if r.kind == "dense")

    @property
    def total(self) -> int:
        return self.conv + self.dense

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def extra_total(self) -> int:
        return int(sum(self.extras.values()))

    @property
    def xla_style(self) -> int:
        """2 x MACs + every other op: roughly what TF's profiler / keras-flops would print.
        (2 x MACs = ``total`` + one op per conv/dense output element.)"""
        return 2 * self.macs + self.extra_total

    def summary(self) -> dict:
        return {
            "flops": self.total, "gflops": self.gflops, "conv": self.conv, "dense": self.dense,
            "macs": self.macs, "extras": dict(self.extras), "extra_total": self.extra_total,
            "xla_style": self.xla_style,
        }


def _module_path(module: nn.Module) -> str:
    return "/".join(module.path)


def _kernel_shape(module: nn.Module, x_shape, out_shape) -> tuple[int, ...]:
    try:
        k = module.variables["params"]["kernel"]
        return tuple(int(n) for n in np.shape(k))
    except (KeyError, TypeError):  # e.g. an unusual variable layout: rebuild it from the attributes
        c_out = int(out_shape[-1])
        if isinstance(module, nn.Dense):
            return (int(x_shape[-1]), c_out)
        ks = module.kernel_size if isinstance(module.kernel_size, Sequence) else (module.kernel_size,)
        return tuple(int(n) for n in ks) + (int(x_shape[-1]) // module.feature_group_count, c_out)


def _trace(model: nn.Module, input_shape, dtype, call_kwargs):
    """One abstract trace of ``model.init`` on ``input_shape``: (variables as ShapeDtypeStructs,
    its jaxpr, the recorded conv/dense calls, {module path: class name})."""
    x = _spec(input_shape, dtype)
    records: list[LayerFlops] = []
    kinds: dict[str, str] = {}

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        out = next_fun(*args, **kwargs)
        path = _module_path(module)
        kinds.setdefault(path, type(module).__name__)
        if context.method_name == "__call__" and isinstance(module, (nn.Conv, nn.Dense)) and args:
            in_shape = tuple(int(n) for n in np.shape(args[0]))
            out_shape = tuple(int(n) for n in np.shape(out))
            kshape = _kernel_shape(module, in_shape, out_shape)
            positions = int(np.prod(out_shape[:-1], dtype=np.int64))
            fan_in = int(np.prod(kshape[:-1], dtype=np.int64))
            records.append(LayerFlops(
                path=path, kind="conv" if isinstance(module, nn.Conv) else "dense",
                in_shape=in_shape, out_shape=out_shape, kernel_shape=kshape,
                use_bias=bool(getattr(module, "use_bias", False)), positions=positions,
                flops=positions * (2 * fan_in - 1) * int(out_shape[-1]),
            ))
        return out

    def init(x):
        with nn.intercept_methods(interceptor):
            return model.init(jax.random.PRNGKey(0), x, **call_kwargs)

    # The init trace contains the forward pass (on the input) and the initialisers (on the RNG
    # key only); _extras tells them apart by data flow from the input.
    jaxpr, variables = jax.make_jaxpr(init, return_shape=True)(x)
    return variables, jaxpr, records, kinds


# primitives that move or relabel data but compute nothing
_FREE = {
    "reshape", "broadcast_in_dim", "convert_element_type", "squeeze", "expand_dims", "transpose",
    "slice", "dynamic_slice", "dynamic_update_slice", "concatenate", "pad", "gather", "scatter",
    "copy", "copy_p", "iota", "select_n", "rev", "stop_gradient", "device_put", "sharding_constraint",
    "argmax", "argmin", "random_bits", "random_seed", "random_wrap", "random_unwrap", "threefry2x32",
    "shift_right_logical", "or", "and", "not", "eq", "ne", "lt", "le", "gt", "ge", "sort",
}
_MATMUL = {"conv_general_dilated", "dot_general"}
_ACTIVATION = {"max", "min", "tanh", "logistic", "exp", "log", "erf", "log1p", "expm1", "abs", "sign"}


def _size(aval) -> int:
    return int(np.prod(getattr(aval, "shape", ()), dtype=np.int64))


def _sub_jaxprs(eqn):
    for p in eqn.params.values():
        for q in p if isinstance(p, (tuple, list)) else (p,):
            if hasattr(q, "eqns"):
                yield q
            elif hasattr(q, "jaxpr") and hasattr(q.jaxpr, "eqns"):
                yield q.jaxpr


def _owner(stack: str, kinds: Mapping[str, str]) -> str | None:
    """Class name of the innermost recorded module whose scope contains ``stack``
    ('Root/a/b' -> path 'a/b', then 'a', ...)."""
    parts = [p for p in stack.split("/") if p][1:]
    while parts:
        kind = kinds.get("/".join(parts))
        if kind is not None:
            return kind
        parts.pop()
    return None


def _is_literal(v) -> bool:
    return isinstance(v, jax_core.Literal)


def _extras(jaxpr, kinds: Mapping[str, str]) -> dict[str, int]:
    """Non-matmul operations of the forward pass, by category.  Only equations that depend on
    the input (``jaxpr``'s first argument) count: that excludes the parameter initialisers of an
    init trace and per-channel arithmetic on parameters alone."""
    out = dict.fromkeys(EXTRA_KEYS, 0)

    def walk(jx, tainted_in: Sequence[bool], outer: str) -> list[bool]:
        taint = {v: t for v, t in zip(jx.invars, tainted_in)}

        def tainted(v) -> bool:
            return (not _is_literal(v)) and taint.get(v, False)

        for eqn in jx.eqns:
            ins = [tainted(v) for v in eqn.invars]
            if not any(ins):
                continue  # computes nothing from the input (initialisers, constants)
            local = str(eqn.source_info.name_stack)
            stack = local if not outer else (outer + "/" + local if local else outer)
            subs = list(_sub_jaxprs(eqn))
            if subs:
                # custom_jvp/vjp: the primal; pjit: the body; cond: the first branch; loops once
                sub = subs[0]
                n_in = len(sub.invars)
                if n_in == len(ins):
                    sub_in = ins
                elif n_in == len(ins) - 1:  # cond: the branch index comes first
                    sub_in = ins[1:]
                else:
                    sub_in = [True] * n_in
                sub_out = walk(sub, sub_in, stack)
                if len(sub_out) != len(eqn.outvars):
                    sub_out = [True] * len(eqn.outvars)
                for v, t in zip(eqn.outvars, sub_out):
                    taint[v] = t
                continue
            for v in eqn.outvars:
                taint[v] = True
            name = eqn.primitive.name
            if name in _FREE or name in _MATMUL:
                continue
            n = sum(_size(v.aval) for v in eqn.outvars)
            owner = _owner(stack, kinds)
            if name.startswith("reduce_window"):
                win = int(np.prod(eqn.params.get("window_dimensions", (1,))))
                out["pooling"] += n * max(win - 1, 1)
            elif name.startswith("reduce_") or name in ("cumsum", "cumprod", "cummax"):
                nin = sum(_size(v.aval) for v in eqn.invars if hasattr(v, "aval"))
                out["reduction"] += max(nin - n, 0)
            elif owner in ("Conv", "Dense", "ConvLocal", "ConvTranspose", "DenseGeneral") and name == "add":
                out["bias"] += n
            elif owner is not None and "Norm" in owner:
                out["batchnorm"] += n
            elif name in _ACTIVATION:
                out["activation"] += n
            elif name in ("add", "sub"):
                out["add"] += n
            else:
                out["other"] += n
        return [tainted(v) for v in jx.outvars]

    top = jaxpr.jaxpr
    walk(top, [True] + [False] * (len(top.invars) - 1), "")
    return out


def flop_report(model: nn.Module, input_shape: Sequence[int], dtype=jnp.float32, **call_kwargs) -> FlopReport:
    """Per-layer FLOPs of ``model.apply(v, x, **call_kwargs)`` for ``x`` of ``input_shape``
    (batch included), by (2.10), plus the :attr:`FlopReport.extras` not counted by it."""
    _, jaxpr, records, kinds = _trace(model, input_shape, dtype, call_kwargs)
    return FlopReport(tuple(int(n) for n in input_shape), tuple(records), _extras(jaxpr, kinds))


def count_flops(model: nn.Module, input_shape: Sequence[int], dtype=jnp.float32, **call_kwargs) -> int:
    """FLOPs of one forward pass on ``input_shape`` (give batch 1, the paper's convention) by
    (2.10): convolutions and dense layers only."""
    return flop_report(model, input_shape, dtype, **call_kwargs).total


def params_and_flops(model: nn.Module, input_shape: Sequence[int], include: Sequence[str] = ("params",),
                     dtype=jnp.float32, **call_kwargs) -> tuple[int, FlopReport]:
    """(count_params, flop_report) from a single trace."""
    variables, jaxpr, records, kinds = _trace(model, input_shape, dtype, call_kwargs)
    rep = FlopReport(tuple(int(n) for n in input_shape), tuple(records), _extras(jaxpr, kinds))
    return count_params(variables, include), rep

