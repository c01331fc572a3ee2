"""``python -m ftlab``: the same as the ``ftlab`` console script."""

import sys

from .cli import main

sys.exit(main())
