import sys

from experiments.complexity import main

sys.exit(main())
