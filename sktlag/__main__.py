"""``python -m sktlag``: the ``sktlag`` command."""

import sys

from ._command import main

sys.exit(main())
