"""dcnn-dd: domain-decomposition training of deep networks in JAX/Flax.

The functional core (Gu, Zhang, Liu, Cai, ETNA 2022):

    grid   = Grid.uniform((28, 28), 2, size=16)          # K = 4 sub-images (2.6)
    subs   = decompose_input(images, grid)                # (K, B, 16, 16, C)
    plan   = plan_for(model, model.subnet(4), grid, input_shape=(1, 28, 28, 1))
    global = compose(plan, stacked_sub_variables)         # (2.11)-(2.14)
    report = check_composition(model, model.subnet(4), grid, input_shape=(1, 28, 28, 1))  # per layer
    stacked = decompose(plan, global)                     # the inverse

The same functions take Flax NNX modules and ``nnx.State`` (:mod:`dcnn_dd.nnx_adapter`).
"""

from dcnn_dd import rules
from dcnn_dd.compose import Plan, compose, decompose, make_plan, plan_for, stack, trace_flatten_shapes, unstack
from dcnn_dd.fields import Window, activation_field, flatten_fields, probe_activation_field, total_stride
from dcnn_dd.grid import Box, Grid, assemble, decompose_input, paper_grid
from dcnn_dd.verify import CompositionReport, check_composition

__all__ = [
    "Box", "CompositionReport", "Grid", "Plan", "Window", "activation_field", "assemble", "check_composition", "compose", "decompose", "decompose_input",
    "flatten_fields", "make_plan", "paper_grid", "plan_for", "probe_activation_field", "rules", "stack",
    "total_stride", "trace_flatten_shapes", "unstack",
]
