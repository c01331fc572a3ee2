"""``python -m ftlab.cli``: the same as the ``ftlab`` console script."""

import sys

from . import main

sys.exit(main())
