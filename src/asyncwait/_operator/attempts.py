"""Per-attempt deadlines: an attempt that runs too long is abandoned and retried (private).

``timeout`` is one deadline per element covering every attempt; ``attempt_timeout`` bounds
each attempt, so a slow call is given up and tried again while the element's deadline
allows::

    attempt 1 starts ──── attempt_timeout ───► abandoned: AttemptTimeoutError ─► retry?
                                                 │ yes (backoff) ─► attempt 2 starts ...
    admission ─────────────────────── timeout ─────────────────────► the element's deadline

Every attempt gets the same fixed time from its start, so deadlines arrive in the order
attempts start: one deque and one armed timer serve them all, as for elements.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Final, final

from ..queues import EntryState, QueueEntry

__all__ = ("AttemptClock",)

_RUNNING: Final = EntryState.RUNNING
# asyncio runs a timer up to one clock tick early; a deadline that close counts as passed.
_TICK: Final = time.get_clock_info("monotonic").resolution


@final
class AttemptClock:
    """Calls ``expired(entry)`` when an attempt of ``entry`` outlives ``seconds``.

    Args:
        seconds: the time one attempt may take.
        expired: called with an entry whose current attempt ran out of time (still running).
    """

    __slots__ = ("_deadlines", "_expired", "_loop", "_timer", "expirations", "seconds")

    def __init__(self, seconds: float, expired: Callable[[QueueEntry], None]) -> None:
        self.seconds = seconds
        self._expired = expired
        # (deadline, entry, attempt) in the order attempts started, so by deadline too.
        self._deadlines: deque[tuple[float, QueueEntry, int]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.expirations = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` from now on."""
        self._loop = loop

    def started(self, entry: QueueEntry) -> None:
        """``entry``'s current attempt started now."""
        loop = self._loop
        assert loop is not None  # bound at open
        deadline = loop.time() + self.seconds
        self._deadlines.append((deadline, entry, entry.attempt))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire)

    def stop(self) -> None:
        """The operator closes: disarm."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()

    def _fire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None  # bound at open
        now = loop.time() + _TICK
        deadlines = self._deadlines
        while deadlines:
            deadline, entry, attempt = deadlines[0]
            if deadline > now:
                self._timer = loop.call_at(deadline, self._fire)
                return
            deadlines.popleft()
            if entry.state is _RUNNING and entry.attempt == attempt and not entry.final:
                self.expirations += 1
                self._expired(entry)
