"""dcnn-dd: domain-decomposition training of deep networks in JAX/Flax.

The functional core (Gu, Zhang, Liu, Cai, ETNA 2022):

    grid   = Grid.uniform((28, 28), 2, size=16)          # K = 4 sub-images (2.6)
    subs   = decompose_input(images, grid)                # (K, B, 16, 16, C)
    plan   = plan_for(model, model.subnet(4), grid, input_shape=(1, 28, 28, 1))
    global = compose(plan, stacked_sub_variables)         # (2.11)-(2.14)
    report = check_composition(model, model.subnet(4), grid, input_shape=(1, 28, 28, 1))  # per layer
    stacked = decompose(plan, global)                     # the inverse

The same functions take Flax NNX modules and ``nnx.State`` (:mod:`dcnn_dd.nnx_adapter`).

What each module owns (the core, from the bottom up):

====================  =========================================================================
``tree``              pytree paths, stacks of K networks, variable initialisation
``grid``              the sub-image grid (2.6): ``Grid``, ``decompose_input``, ``assemble``
``fields``            activation fields (Section 2.1.1) and where the last feature map sits
``rules``             every (de)composition rule (2.11)-(2.14), one ``Place`` operation
``composition``       ``Plan``, rule inference from shapes (``make_plan``), ``compose``, ``decompose``
                      (nested dicts; other tree kinds register, ``register_tree_kind``)
``tracing``           what a trace of a model's jaxpr says: flattened layers, strides, padding
``planning``          ``plan_for``: a plan from two Flax modules (checked by ``verify`` before it
                      is returned)
``verify``            ``check_composition``: a plan checked layer by layer, its report and diagnosis
``theorems``          Theorem 2.1 (logit sum, feature maps) and Theorem 2.2 as checks on outputs
``sharding``          meshes, global arrays, ``kmap`` (the K sub-networks at once), strategies
``complexity``        parameter and FLOP counts, convention (2.10)
``nnx_adapter``       the Flax NNX dialect of the functional API (``nnx.State`` in ``compose``)
``nnx_engine``        an ``nnx.Module`` class trained by the engine (``register_model``)
``activation_maps``   per-layer feature maps and class activation maps, jitted
====================  =========================================================================

Subpackages (imported on first use, e.g. ``dd.train``): ``models`` (the zoo, the model
registry), ``data`` (datasets, augmentation, input pipeline), ``train`` (the engine: Algorithm 1
as resumable phases), ``cnn_dnn`` (Klawonn et al.), ``layer_parallel`` (Guenther et al., MGRIT).
"""

from dcnn_dd import rules
from dcnn_dd.composition import Plan, compose, decompose, make_plan
from dcnn_dd.fields import Window, activation_field, flatten_fields, probe_activation_field, total_stride
from dcnn_dd.grid import Box, Grid, assemble, decompose_input, paper_grid
from dcnn_dd.planning import plan_for
from dcnn_dd.tracing import trace_flatten_shapes
from dcnn_dd.tree import stack, unstack
from dcnn_dd.verify import CompositionReport, check_composition

SUBPACKAGES = ("cnn_dnn", "data", "layer_parallel", "models", "train")
MODULES = ("activation_maps", "complexity", "composition", "fields", "grid", "nnx_adapter", "nnx_engine", "planning",
           "rules", "sharding", "theorems", "tracing", "tree", "verify")

__all__ = [
    "Box", "CompositionReport", "Grid", "Plan", "Window", "activation_field", "assemble", "check_composition", "compose", "decompose", "decompose_input",
    "flatten_fields", "make_plan", "paper_grid", "plan_for", "probe_activation_field", "rules", "stack",
    "total_stride", "trace_flatten_shapes", "unstack",
]


def __getattr__(name):  # subpackages and modules as attributes, imported on first use (the engine pulls in data)
    if name in SUBPACKAGES or name in MODULES:
        import importlib

        return importlib.import_module(f"dcnn_dd.{name}")
    raise AttributeError(f"module 'dcnn_dd' has no attribute {name!r}")
