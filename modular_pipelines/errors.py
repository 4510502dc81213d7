"""The errors live in :mod:`diffblocks.components.errors`, the bottom layer every other one imports; this
module keeps the older import path working."""

from ..components.errors import *  # noqa: F401,F403
from ..components.errors import closest  # noqa: F401
