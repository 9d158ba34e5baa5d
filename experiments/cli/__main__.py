"""``python -m experiments.cli ...``: the same as ``cl-ssvdo ...``."""

import sys

from experiments.cli import main

sys.exit(main())
