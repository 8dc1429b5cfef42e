"""Fault injection for the crash tests: the process kills itself at a named point (private).

Set ``ASYNCWAIT_CRASH_AT=<point>`` in a job's environment and the process sends itself
SIGKILL when it reaches that point (``checkpoint-partial``, ``checkpoint-written``,
``checkpoint-renamed``, ``commit``, ...): a crash at the worst moment, on demand.
"""

from __future__ import annotations

import os
import signal
from typing import Final

__all__ = ("crash_point",)

_CRASH_AT: Final = os.environ.get("ASYNCWAIT_CRASH_AT", "")


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``ASYNCWAIT_CRASH_AT`` names ``name`` (tests only)."""
    if _CRASH_AT and name == _CRASH_AT:
        os.kill(os.getpid(), signal.SIGKILL)
