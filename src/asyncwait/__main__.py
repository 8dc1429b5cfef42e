"""``python -m asyncwait``: the ``asyncwait`` command line (see :mod:`asyncwait.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
