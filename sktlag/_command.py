"""The ``sktlag`` command's entry point, light enough to catch Ctrl-C while it loads.

Loading the command takes seconds (torch, pandas, scikit-learn). An interrupt in that
time would otherwise end in Python's traceback, before :func:`sktlag.cli.main` and its
handler exist. This module imports nothing heavy, and neither does ``import sktlag``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: Exit statuses of the command: success, bad input or usage, interrupted (Ctrl-C).
EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130
#: What the command says on stderr when it is interrupted.
INTERRUPTED = "sktlag: interrupted"


def main(argv: Sequence[str] | None = None) -> int:
    """Load and run the ``sktlag`` command (:func:`sktlag.cli.main`)."""
    try:
        from .cli import main as command
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    return command(argv)
