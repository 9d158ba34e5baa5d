"""``python -m experiments.study ...``: the same as ``cl-ssvdo study ...``."""

import sys

from experiments.study.cli import main

sys.exit(main())
