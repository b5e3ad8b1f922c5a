"""One markdown report of every experiment's results next to the paper's printed numbers.

    python -m experiments.report [--results results] [--out results/REPORT.md]

Reads every ``<results>/<experiment>/results.json`` (any experiment name) and the paper's numbers
(``experiments/paper_numbers.json``, Tables 2.2 and 3.1-3.5 of Gu, Zhang, Liu, Cai, ETNA 56, 2022: the
project's one transcription of them, which :mod:`experiments.complexity` reads too) and writes
one markdown file (default ``<results>/REPORT.md``): a header listing the experiments found (preset,
device, date, command, wall time) and those expected but missing, one table per paper table with
our value next to the paper's, our entries of tables the paper does not have, and per experiment
its stand-in, its notes (deviations) and its figures.  Our values from an experiment that ran a
stand-in (e.g. Fashion-MNIST and ResNet-8 filed under CIFAR-10 / ResNet32) are marked "(stand-in)".  Missing results are listed as missing,
never invented; an unreadable results.json is reported, not fatal.  The CNN-DNN experiment
(``results/cnn_dnn/``, Klawonn et al.) and the layer-parallel one (``results/layer_parallel/``,
Guenther et al.) have no paper numbers here (only the abstracts are available): their tables
appear among "Tables not in the paper" and their sections say so.  Standard library only.

Layout: :mod:`experiments.report.config` (the keys, the experiments expected, where the paper's
numbers are), :mod:`.analysis` (loading, matching, the report).
"""

from experiments.report.analysis import (build_report, cell, experiment_section, fmt, load_paper_numbers, load_results,
                                         main, match, md_table, meta_row, other_section, our_cell, paper_section,
                                         run_hint, source, split_keys)
from experiments.report.config import EXPECTED, KEYS, NO_PAPER_NUMBERS, PAPER_PATH, PRODUCERS

__all__ = ["EXPECTED", "KEYS", "NO_PAPER_NUMBERS", "PAPER_PATH", "PRODUCERS", "build_report", "cell",
           "experiment_section", "fmt", "load_paper_numbers", "load_results", "main", "match", "md_table", "meta_row",
           "other_section", "our_cell", "paper_section", "run_hint", "source", "split_keys"]
