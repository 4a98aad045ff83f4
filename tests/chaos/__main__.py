"""``python -m tests.chaos``: the chaos run (see run.py); ``make test-chaos`` calls it."""

import sys

from .run import main

sys.exit(main())
