"""``python -m experiments.visualize``: see :mod:`experiments.visualize`."""

import sys

from experiments.visualize import main

main(sys.argv[1:])
