"""Console output shared by the subcommands."""
from __future__ import annotations

import sys


def console():
    """A rich console on stdout; 160 columns when piped, so wide tables are not squeezed to 80."""
    from rich.console import Console

    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)
