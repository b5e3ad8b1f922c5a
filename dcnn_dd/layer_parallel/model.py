"""The ODE-ResNet of Guenther et al. (2020), Sec. 2, and its layer-serial reference.

The network is an opening layer, N residual steps and a classifier::

    u_0     = opening(x)                                    (opening layer, Sec. 2.1)
    u_{n+1} = u_n + h * F(u_n; theta_n),  n = 0..N-1        (forward Euler, (2.3), h = T / N)
    y       = classifier(u_N)

with ``F(u; theta) = act(K u + b)``, ``K`` a dense matrix (``kind="dense"``) or a SAME-padded
convolution (``kind="conv"``).  The N step parameters are one pytree ``{"K": (N, ...), "b": (N, c)}``
stacked on a leading layer axis, which is what the layer-parallel solver slices, shards and
injects onto coarse levels.

Parameters of the whole network: ``{"open": ..., "steps": {"K", "b"}, "cls": ...}``; opening and
classifier are Flax modules (``nn.Dense`` / ``nn.Conv``).  :func:`serial_states` is the
layer-serial forward pass (``lax.scan``); the layer-parallel solvers in :mod:`.mgrit` compute the
same states (to the solver tolerance) from the same parameters.

Regularisation of the paper's code (Sec. 2.2, (2.6)): Tikhonov ``alpha/2 * sum ||theta||^2`` over
all weights and the time-derivative penalty ``beta/2 * h * sum_n ||(theta_n - theta_{n-1}) / h||^2``
over the step parameters, which makes the weights smooth in layer time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable] = {"tanh": jnp.tanh, "relu": jax.nn.relu, "softplus": jax.nn.softplus}


@dataclasses.dataclass(frozen=True)
class ODEResNet:
    """Architecture of the ODE-ResNet.

    ``kind="dense"``: inputs (B, in_features), states (B, width).
    ``kind="conv"``: inputs (B, H, W, C), the opening is a 3x3 conv with ``open_stride``, states
    (B, H', W', width), steps 3x3 SAME convolutions, the classifier a dense layer on the flattened
    final state.
    """

    n_layers: int
    width: int
    num_classes: int
    T: float = 1.0  # noqa: N815
    kind: str = "dense"
    activation: str = "tanh"
    open_stride: int = 1
    kernel_size: int = 3
    init_scale: float = 1.0

    def __post_init__(self):
        if self.kind not in ("dense", "conv"):
            raise ValueError(f"kind={self.kind!r}: choose 'dense' or 'conv'")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: choose one of {sorted(ACTIVATIONS)}")
        if self.n_layers < 1 or self.width < 1:
            raise ValueError(f"n_layers={self.n_layers}, width={self.width}: both must be >= 1")

    @property
    def h(self) -> float:
        return self.T / self.n_layers

    @property
    def act(self) -> Callable:
        return ACTIVATIONS[self.activation]

    # --- the three parts ---------------------------------------------------------------------
    def _opening(self) -> nn.Module:
        if self.kind == "dense":
            return nn.Dense(self.width)
        return nn.Conv(self.width, (self.kernel_size,) * 2, strides=self.open_stride, padding="SAME")

    def _classifier(self) -> nn.Module:
        return nn.Dense(self.num_classes)

    def open(self, p_open, x):
        return self.act(self._opening().apply({"params": p_open}, x))

    def classify(self, p_cls, u):
        return self._classifier().apply({"params": p_cls}, u.reshape(u.shape[0], -1))

    def F(self, u, theta):  # noqa: N802
        """The right-hand side F(u; theta) = act(K u + b) of one layer, (2.3)."""
        if self.kind == "dense":
            z = u @ theta["K"]
        else:
            z = jax.lax.conv_general_dilated(u, theta["K"], (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return self.act(z + theta["b"])

    def step(self, u, theta, h):
        """Phi(u; theta, h) = u + h F(u; theta): one forward-Euler layer with step size h."""
        return u + h * self.F(u, theta)

    # --- parameters --------------------------------------------------------------------------
    def init(self, key, x) -> dict:
        """All parameters for inputs shaped like ``x``; step weights ~ N(0, init_scale^2 / fan_in)."""
        k_open, k_steps, k_cls = jax.random.split(key, 3)
        p_open = self._opening().init(k_open, x)["params"]
        u0 = self.open(p_open, x)
        c = self.width
        shape = (c, c) if self.kind == "dense" else (self.kernel_size, self.kernel_size, c, c)
        fan_in = c if self.kind == "dense" else self.kernel_size**2 * c
        K = self.init_scale * jax.random.normal(k_steps, (self.n_layers, *shape), u0.dtype) / jnp.sqrt(fan_in)  # noqa: N806
        steps = {"K": K, "b": jnp.zeros((self.n_layers, c), u0.dtype)}
        p_cls = self._classifier().init(k_cls, u0.reshape(u0.shape[0], -1))["params"]
        return {"open": p_open, "steps": steps, "cls": p_cls}

    def check_steps(self, steps) -> None:
        """A clear error for a step stack whose length is not ``n_layers``."""
        for path, leaf in jax.tree_util.tree_leaves_with_path(steps):
            if leaf.ndim == 0 or leaf.shape[0] != self.n_layers:
                raise ValueError(f"step parameter {jax.tree_util.keystr(path)} has shape {leaf.shape}: its leading "
                                 f"(layer) axis must be n_layers={self.n_layers}")

    # --- the layer-serial reference ----------------------------------------------------------
    def serial_states(self, steps, u0):
        """All states (N+1, *u0.shape) by the layer-serial forward pass (``lax.scan``)."""
        self.check_steps(steps)
        h = self.h

        def body(u, theta):
            v = self.step(u, theta, h)
            return v, v

        _, us = jax.lax.scan(body, u0, steps)
        return jnp.concatenate([u0[None], us])

    def serial_final(self, steps, u0):
        """u_N by ``lax.scan`` without storing the states (reverse-mode AD stores them itself)."""
        self.check_steps(steps)
        h = self.h
        uN, _ = jax.lax.scan(lambda u, th: (self.step(u, th, h), None), u0, steps)  # noqa: N806
        return uN

    def apply_serial(self, params, x):
        """Logits of the layer-serial network."""
        return self.classify(params["cls"], self.serial_final(params["steps"], self.open(params["open"], x)))


def tikhonov(params, alpha: float):
    """alpha/2 * sum of squares of every weight (biases excluded), (2.6) first term."""
    leaves = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
              if not jax.tree_util.keystr(path).endswith(("'b']", "'bias']"))]
    return 0.5 * alpha * sum(jnp.sum(leaf**2) for leaf in leaves)


def time_derivative(steps, beta: float, h: float):
    """beta/2 * h * sum_n ||(theta_n - theta_{n-1}) / h||^2 over the step parameters, (2.6) second term."""
    return 0.5 * beta * h * sum(jnp.sum(((a[1:] - a[:-1]) / h) ** 2) for a in jax.tree.leaves(steps))


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))
