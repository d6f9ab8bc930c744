"""``python -m backend`` = the ``greentui`` console script (the runner is started this way)."""

import sys

from .cli import main

sys.exit(main())
