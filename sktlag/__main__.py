"""``python -m sktlag``: the ``sktlag`` command."""

import sys

from .cli import main

sys.exit(main())
