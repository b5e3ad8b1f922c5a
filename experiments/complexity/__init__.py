"""Parameter and FLOP counts of the paper's global and sub-networks: Tables 2.2, 3.1 and 3.4.

    python -m experiments.complexity [--out results]

prints a markdown table and writes ``<out>/complexity.json`` (``{"rows": [...]}``) and
``<out>/complexity.md`` (the tables, our numbers next to the paper's, and why they differ).
Everything is computed on abstract shapes (``jax.eval_shape`` / ``jax.make_jaxpr``); it takes
seconds on a CPU.

Conventions (see :mod:`dcnn_dd.complexity`, :mod:`dcnn_dd.models.zoo`):

* ``params``: Table 2.2 is counted torchvision-style (no conv bias, BatchNorm scale+bias only);
  Tables 3.1 and 3.4 Keras-style (conv bias, BatchNorm moving mean/variance counted too).
* ``gflops``: (2.10) - convolutions and dense layers only, batch 1, 1 GFLOPs = 1e9 FLOPs.
  ``xla_style_gflops`` adds one op per conv/dense output (2 x MACs) and every other operation
  (bias, BatchNorm, ReLU, pooling, residual additions) - roughly TensorFlow's profiler count.
* ``partitions``: K of the decomposition the row belongs to; 1 for a global network.

Each row carries the paper's printed numbers (:data:`PAPER`, read from ``experiments/paper_numbers.json``,
the project's one transcription of the paper's tables, shared with :mod:`experiments.report`); some of Table 3.1's global GFLOPs are
garbled in the text and are inferred from sub-network GFLOPs x printed ratio (``paper_gflops_source``).

Layout: :mod:`experiments.complexity.config` (the networks counted), :mod:`.analysis` (the paper's
numbers, the counts, the tables and the discussion).
"""

from experiments.complexity.analysis import (PAPER, TITLES, compute_rows, discussion, load_paper, main, markdown_table,
                                             paper_gflops, printed_match, write_report)
from experiments.complexity.config import specs

__all__ = ["PAPER", "TITLES", "compute_rows", "discussion", "load_paper", "main", "markdown_table", "paper_gflops",
           "printed_match", "specs", "write_report"]
