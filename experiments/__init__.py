"""The experiment suite: one package per experiment, run as ``python -m experiments.<name>``.

Each experiment package holds ``config.py`` (its presets: functions returning configurations,
with what each costs and should reach), ``analysis.py`` (the runs, the numbers, the prose),
``figures.py`` (where it draws) and ``__main__.py``; its ``__init__`` docstring says how to run
it.  Shared by all of them:

==============  =========================================================================
``cli``         the parser (``--preset``, ``--out``, ``--set key=value`` on any configuration
                field, dotted keys into the model/grid specs), ``cli_errors``, the runner
``results``     run metadata, ``results.json`` / ``results.md``, cached measurements
``plotting``    matplotlib (Agg) and figure saving
``tables``      markdown tables and percentages
==============  =========================================================================

Experiments: ``quickstart`` (``make demo``), ``payoff`` (time to accuracy), ``cifar``,
``partitions``, ``visualize`` (Section 3 of Gu et al.), ``complexity`` (Tables 2.2, 3.1, 3.4),
``cnn_dnn`` (Klawonn et al.), ``layer_parallel`` (Guenther et al.), ``report`` (every result
next to the paper's printed number, from ``paper_numbers.json``).
"""
