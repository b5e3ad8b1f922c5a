"""The coherent CNN-DNN: the K local CNNs and the DNN as one model (Klawonn, Weber, Lanser).

    image x (B, H, W, C)
      -> decompose_input(x, grid)                 (K, B, h, w, C): sub-image k for local CNN k
      -> local CNN k on sub-image k, k = 1..K     (K, B, classes) local logits
      -> softmax                                  (K, B, classes) local class probabilities
      -> DNN on the K probability vectors         (B, classes) global logits

which is exactly the two-stage pipeline (local CNNs, then the DNN on their frozen outputs) with
the same parameters - one differentiable function, so it can also be trained end to end.

The variables are one tree: ``{'params': {'local': L, 'dnn': D}, 'batch_stats': {'local': S}}``
where L (and S, for local CNNs with BatchNorm) hold the K local CNNs *stacked on axis 0*, the
layout of the sub-network phase of Algorithm 1 (:meth:`dcnn_dd.train.Setup.subnet_init`, the
``snets`` checkpoints), and D is the :class:`~dcnn_dd.cnn_dnn.aggregate.DNN`'s.  :func:`join` and
:func:`split` convert between the two, so transfer learning starts from the pre-trained trees as
they are (no copy, no reshaping).

:class:`CNNDNN` is not a Flax module but has the two methods the engine calls, ``init(key, x,
train=False)`` and ``apply(variables, x, train=False, mutable=False)`` (:mod:`dcnn_dd.train.state`);
the K local CNNs run with a strategy of :mod:`dcnn_dd.sharding` (``vmap`` or
``sequential``) inside it, and the model is trained data-parallel like the global network.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcnn_dd import sharding
from dcnn_dd.cnn_dnn.aggregate import DNN
from dcnn_dd.grid import Grid, decompose_input
from dcnn_dd.tree import call_kwargs, init_variables, stack

INNER = ("vmap", "sequential")


def join(local_vars: dict, dnn_vars: dict) -> dict:
    """(stacked local CNN variables, DNN variables) -> the coherent model's variables.  The leaves
    are the given arrays themselves."""
    out = {"params": {"local": local_vars["params"], "dnn": dnn_vars["params"]}}
    for col, tree in local_vars.items():
        if col != "params":
            out[col] = {"local": tree}
    extra = set(dnn_vars) - {"params"}
    if extra:
        raise ValueError(f"the DNN has no state, got collections {sorted(extra)}")
    return out


def split(variables: dict) -> tuple[dict, dict]:
    """The coherent model's variables -> (stacked local CNN variables, DNN variables)."""
    local = {col: tree["local"] for col, tree in variables.items() if "local" in tree}
    return local, {"params": variables["params"]["dnn"]}


@dataclasses.dataclass(frozen=True, eq=False)
class CNNDNN:
    """K local CNNs (``local``: the global architecture's ``subnet(K)``) on the sub-images of
    ``grid``, aggregated by ``dnn``; ``inner``: how the K local CNNs run, ``vmap`` or ``sequential``
    (:mod:`dcnn_dd.sharding`; on XLA:CPU ``sequential`` is usually faster)."""

    local: nn.Module
    dnn: DNN
    grid: Grid
    inner: str = "vmap"

    def __post_init__(self):
        if self.inner not in INNER:
            raise ValueError(f"inner={self.inner!r}: choose one of {INNER}")

    @property
    def K(self) -> int:  # noqa: N802
        return self.grid.K

    def local_logits(self, local_vars, x, train: bool = False, mutable=False, rngs=None):
        """(K, B, classes) logits of the K local CNNs on their sub-images of ``x`` (and their
        updated state, stacked, when ``mutable``); ``rngs={"dropout": key}``: local CNN k draws
        from ``fold_in(key, k)``, as sub-network k of Algorithm 1's stacked step."""
        xs = decompose_input(x, self.grid)

        def one(v, xk, key=None):
            kw = call_kwargs(self.local, train, key)
            return self.local.apply(v, xk, mutable=mutable, **kw) if mutable else self.local.apply(v, xk, **kw)

        if rngs is None:
            return sharding.kmap(one, self.inner, K=self.K, in_axes=(0, 0))(local_vars, xs)
        keys = jax.vmap(lambda k: jax.random.fold_in(rngs["dropout"], k))(jnp.arange(self.K))
        return sharding.kmap(one, self.inner, K=self.K, in_axes=(0, 0, 0))(local_vars, xs, keys)

    def aggregate(self, dnn_vars, local_logits):
        """The DNN on the local class probabilities: (K, B, classes) logits -> (B, classes)."""
        probs = jnp.swapaxes(jax.nn.softmax(local_logits, axis=-1), 0, 1)  # (B, K, classes)
        return self.dnn.apply(dnn_vars, probs)

    def apply(self, variables, x, train: bool = False, mutable=False, rngs=None):
        local_vars, dnn_vars = split(variables)
        if mutable:
            logits, new = self.local_logits(local_vars, x, train, mutable, rngs)
            return self.aggregate(dnn_vars, logits), {col: {"local": tree} for col, tree in new.items()}
        return self.aggregate(dnn_vars, self.local_logits(local_vars, x, train, rngs=rngs))

    def init(self, key, x, train: bool = False) -> dict:
        """Independent random initialisations: local CNN k from ``fold``-split keys (as
        :meth:`~dcnn_dd.train.Setup.subnet_init` does), the DNN from its own key."""
        k_local, k_dnn = jax.random.split(key)
        sub_shape = (1, *self.grid.sub_shape, x.shape[-1])
        local_vars = stack([init_variables(self.local, k, sub_shape) for k in jax.random.split(k_local, self.K)])
        dnn_vars = init_variables(self.dnn, k_dnn, (1, self.K, self.dnn.num_classes))
        return join(local_vars, dnn_vars)


def two_stage(local: nn.Module, dnn: DNN, grid: Grid, local_vars, dnn_vars, x):
    """The reference pipeline, one local CNN at a time in plain Python: local CNN k on sub-image
    k, softmax, stack, DNN.  Returns (global logits (B, classes), local probabilities (B, K, classes))."""
    xs = decompose_input(x, grid)
    probs = []
    for k in range(grid.K):
        v = jax.tree.map(lambda a, k=k: a[k], local_vars)
        probs.append(jax.nn.softmax(local.apply(v, xs[k], **call_kwargs(local, False)), axis=-1))
    probs = jnp.stack(probs, axis=1)
    return dnn.apply(dnn_vars, probs), probs
