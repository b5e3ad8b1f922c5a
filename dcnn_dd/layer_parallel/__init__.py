"""Layer-parallel training of ODE-ResNets by MGRIT (Guenther, Ruthotto, Schroder, Cyr, Gauger 2020).

    model  = ODEResNet(n_layers=64, width=8, num_classes=5, T=5.0)
    params = model.init(key, x)
    fwd    = Solver(cfactor=4, levels=3, tol=1e-9, max_iter=30)     # exact: iterate to tolerance
    logits = apply_parallel(model, fwd, fwd, params, x)             # drop-in for model.apply_serial
    grads  = jax.grad(loss)(params)                                 # adjoint solved by MGRIT too

Files: ``model.py`` (ODE-ResNet, serial scan reference, regularisers), ``mgrit.py`` (FAS
multilevel solver, relaxation, hierarchy, cost model), ``adjoint.py`` (backward MGRIT,
parameter gradients, ``custom_vjp``), ``train.py`` (serial / exact / one-shot training steps; ``fit``, the training loop;
``place``: the batch over the ``data`` axis of a (``layers``, ``data``) mesh), ``data.py`` (the peaks problem).
"""

from dcnn_dd.layer_parallel.adjoint import (
    apply_parallel, backward, final_state, forward, gradients, layer_states, param_grads,
)
from dcnn_dd.layer_parallel.mgrit import (
    NonFiniteResidualError, SolveInfo, Solver, check_solve, conv_factor, critical_path, hierarchy, layers_data_mesh,
    layers_mesh, max_levels, residual_reduction, solve,
)
from dcnn_dd.layer_parallel.model import ODEResNet, cross_entropy, tikhonov, time_derivative
from dcnn_dd.layer_parallel.train import (
    METHODS, LayerParallelState, Method, accuracy, convergence, fit, init_state, make_step, place,
)

__all__ = [
    "METHODS", "LayerParallelState", "Method", "NonFiniteResidualError", "ODEResNet", "SolveInfo", "Solver",
    "accuracy", "apply_parallel", "backward", "check_solve", "conv_factor", "convergence", "critical_path",
    "cross_entropy", "final_state", "fit", "forward", "gradients", "hierarchy", "init_state", "layer_states",
    "layers_data_mesh", "layers_mesh", "make_step", "max_levels", "param_grads", "place", "residual_reduction",
    "solve", "tikhonov",
    "time_derivative",
]
