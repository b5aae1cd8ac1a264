"""`python -m tavgbench` runs the command line (also under torchrun)."""

import sys

from tavgbench.cli import main

sys.exit(main())
