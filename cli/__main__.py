"""``python -m diffblocks.cli``: the ``diffblocks`` command."""

import sys

from . import main

sys.exit(main())
