"""``python -m backend`` = the ``greentui`` console script (the runner is started this way)."""

import sys

from backend.cli.main import main

sys.exit(main())
