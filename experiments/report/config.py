"""What the report expects: the entry keys, the experiments, which experiment fills each paper
table, the experiments without paper numbers, and where the paper's numbers are."""

from __future__ import annotations

import pathlib

KEYS = ("table", "row", "metric", "dataset", "model", "overlap", "K", "batch_size", "augment", "devices")
EXPECTED = ("cifar", "partitions", "visualize", "cnn_dnn", "layer_parallel")
# Experiments of papers whose numbers we do not have: said in their section, none invented.
NO_PAPER_NUMBERS = {
    "cnn_dnn": "Klawonn, Weber, Lanser (arXiv 2408.14442, 2302.06564): only the abstract is available to this "
               "project, so no paper numbers are listed for the CNN-DNN; its tables are under 'Tables not in the "
               "paper'.",
    "layer_parallel": "Guenther, Ruthotto, Schroder, Cyr, Gauger (SIAM J. Math. Data Sci. 2020): only the abstract is "
                      "available to this project, so no paper numbers are listed for layer-parallel training; its "
                      "table is under 'Tables not in the paper'.",
}
# Which experiment is expected to fill each paper table (for the "no results yet" hint).
PRODUCERS = {"2.2": "complexity", "3.1": "cifar", "3.2": "cifar", "3.3": "cifar", "3.4": "partitions", "3.5": "partitions"}
PAPER_PATH = pathlib.Path(__file__).parents[1] / "paper_numbers.json"  # experiments/paper_numbers.json
