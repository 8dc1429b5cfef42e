"""The circuit breaker: stop calling a store that fails, then probe it (private).

A plain synchronous object like the queues: no awaits, no tasks, no clock; the caller
passes ``now`` (loop time, float seconds) into every method.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final, final

from ._checks import check_int, check_seconds, is_number
from .errors import ConfigError, InternalError

__all__ = ("BreakerState", "BreakerStatistics", "CircuitBreaker", "check_ratio")


def check_ratio(owner: str, field: str, value: object) -> float:
    """Return ``value`` as a float if it is a number > 0 and <= 1 (a failure ratio)."""
    if not is_number(value) or not 0 < value <= 1:  # type: ignore[operator]
        msg = f"{owner}: {field} must be a number > 0 and <= 1, got {value!r}"
        raise ConfigError(msg)
    return float(value)  # type: ignore[arg-type]


class BreakerState(enum.Enum):
    """Where a :class:`CircuitBreaker` is; :meth:`CircuitBreaker._move` allows only these.

    ::

        CLOSED ──(window full, failure ratio reached)──► OPEN
          ▲                                              │  ▲
          │                             open_for passed  │  │  the probe failed
          │                                              ▼  │
          ╰────────────(the probe succeeded)────────── HALF_OPEN
    """

    CLOSED = "closed"  # calls flow; outcomes fill the window
    OPEN = "open"  # calls fail fast until open_for seconds have passed
    HALF_OPEN = "half_open"  # one probe call at a time decides: CLOSED or OPEN again


_SAME_INSTANT: Final = 1e-9  # seconds: `now - latency` may round a start time down this much

_BREAKER_MOVES: Final[dict[BreakerState, frozenset[BreakerState]]] = {
    BreakerState.CLOSED: frozenset({BreakerState.OPEN}),
    BreakerState.OPEN: frozenset({BreakerState.HALF_OPEN}),
    BreakerState.HALF_OPEN: frozenset({BreakerState.CLOSED, BreakerState.OPEN}),
}


@final
@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    """A snapshot of a :class:`CircuitBreaker`.

    Attributes:
        state: the state as of the last call.
        openings: times it opened (from CLOSED or after a failed probe).
        rejected: calls refused by :meth:`CircuitBreaker.allow` (open, or a probe running).
        probes: probe calls let through while half-open.
        window_calls: outcomes in the window now; window_failures: failures among them.
        transitions: state changes so far; last_change: loop time of the last (or None).
    """

    state: BreakerState
    openings: int
    rejected: int
    probes: int
    window_calls: int
    window_failures: int
    transitions: int
    last_change: float | None


@final
class CircuitBreaker:
    """Stops calls to a store that fails, for ``open_for`` seconds, then probes it.

    The window is the outcomes of the last ``min_calls`` calls while CLOSED. The breaker
    opens when the window is full and its failure ratio is at least ``failure_ratio``:
    with calls arriving at ``min_calls`` per second or more and all failing, it is open
    within one second; at higher rates within ``ceil(failure_ratio * min_calls)``
    failures. While OPEN, :meth:`allow` refuses every call until ``open_for`` seconds
    have passed; then HALF_OPEN lets one probe call through at a time (another one
    ``open_for`` later if the first never reports). The probe's success closes the
    breaker with an empty window; its failure opens it again for ``open_for``. Outcomes
    reported while OPEN (calls started before it opened) are ignored. A caller that passes
    ``started`` (when the call began) also has outcomes of calls that began before the last
    state change ignored, so a slow call from before an opening can neither close the
    breaker nor fail its probe; without ``started``, while a probe runs, the first outcome
    reported is taken as the probe's.

    :meth:`on_success` and :meth:`on_failure` return the new state when they changed it
    (so the caller logs each change once); :meth:`allow` moves OPEN to HALF_OPEN
    silently, visible in ``transitions`` and ``last_change``.

    Args:
        failure_ratio: a number > 0 and <= 1.
        min_calls: the window's size, an int >= 1.
        open_for: seconds to stay open, a number > 0.

    Raises:
        ConfigError: an argument is out of range.

    >>> breaker = CircuitBreaker(0.5, 4, 5.0)
    >>> [breaker.on_failure(t) for t in (0.0, 0.1, 0.2)]
    [None, None, None]
    >>> breaker.on_failure(0.3)  # 4 of 4 calls failed
    <BreakerState.OPEN: 'open'>
    >>> breaker.allow(1.0), breaker.allow(5.3), breaker.allow(5.4)
    (False, True, False)
    >>> breaker.on_failure(5.6, started=0.2)  # a call from before it opened: ignored
    >>> breaker.on_success(5.7, started=5.3)  # the probe answered
    <BreakerState.CLOSED: 'closed'>
    """

    __slots__ = (
        "_failures",
        "_last_change",
        "_open_for",
        "_opened_at",
        "_openings",
        "_probe_at",
        "_probes",
        "_ratio",
        "_rejected",
        "_state",
        "_transitions",
        "_window",
    )

    def __init__(self, failure_ratio: float, min_calls: int, open_for: float) -> None:
        self._ratio = check_ratio("CircuitBreaker", "failure_ratio", failure_ratio)
        size = check_int("CircuitBreaker", "min_calls", min_calls)
        self._open_for = check_seconds("CircuitBreaker", "open_for", open_for)
        self._window: deque[bool] = deque(maxlen=size)  # True: that call failed
        self._failures = 0  # == sum(self._window)
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0  # loop time of the last opening (OPEN/HALF_OPEN)
        self._probe_at: float | None = None  # HALF_OPEN: when the running probe started
        self._openings = 0
        self._rejected = 0
        self._probes = 0
        self._transitions = 0
        self._last_change: float | None = None

    @property
    def state(self) -> BreakerState:
        """The state as of the last call (OPEN turns HALF_OPEN in :meth:`allow`)."""
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a call may start at ``now``; a refusal is counted in ``rejected``."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if now < self._opened_at + self._open_for:
                self._rejected += 1
                return False
            self._move(BreakerState.HALF_OPEN, now)
        if self._probe_at is None or now >= self._probe_at + self._open_for:
            self._probe_at = now
            self._probes += 1
            return True
        self._rejected += 1
        return False

    def on_success(self, now: float, *, started: float | None = None) -> BreakerState | None:
        """A call (begun at ``started``, if given) succeeded at ``now``.

        Returns the new state if this changed it.
        """
        if self._stale(started):
            return None
        if self._state is BreakerState.CLOSED:
            self._record(failed=False)
        elif self._state is BreakerState.HALF_OPEN and self._probe_at is not None:
            self._move(BreakerState.CLOSED, now)
            return self._state
        return None

    def on_failure(self, now: float, *, started: float | None = None) -> BreakerState | None:
        """A call (begun at ``started``, if given) failed at ``now``.

        Returns the new state if this changed it.
        """
        if self._stale(started):
            return None
        if self._state is BreakerState.CLOSED:
            self._record(failed=True)
            window = self._window
            if len(window) == window.maxlen and self._failures / len(window) >= self._ratio:
                self._move(BreakerState.OPEN, now)
                return self._state
        elif self._state is BreakerState.HALF_OPEN and self._probe_at is not None:
            self._move(BreakerState.OPEN, now)
            return self._state
        return None

    def _stale(self, started: float | None) -> bool:
        """Whether a call that began at ``started`` began before the last state change."""
        last = self._last_change
        return started is not None and last is not None and started < last - _SAME_INSTANT

    def _record(self, *, failed: bool) -> None:
        window = self._window
        if len(window) == window.maxlen and window[0]:
            self._failures -= 1  # the oldest outcome leaves the window
        window.append(failed)
        self._failures += failed

    def _move(self, new: BreakerState, now: float) -> None:
        """Change state, or raise :class:`InternalError` when the move is illegal."""
        if new not in _BREAKER_MOVES[self._state]:
            msg = (
                f"illegal circuit breaker transition {self._state.name} -> {new.name}"
                " (a bug in asyncwait; please report it)"
            )
            raise InternalError(msg)
        self._state = new
        self._transitions += 1
        self._last_change = now
        self._probe_at = None
        if new is BreakerState.OPEN:
            self._openings += 1
            self._opened_at = now
        elif new is BreakerState.CLOSED:
            self._window.clear()
            self._failures = 0

    def statistics(self) -> BreakerStatistics:
        return BreakerStatistics(
            state=self._state,
            openings=self._openings,
            rejected=self._rejected,
            probes=self._probes,
            window_calls=len(self._window),
            window_failures=self._failures,
            transitions=self._transitions,
            last_change=self._last_change,
        )

    def __repr__(self) -> str:
        window = f"{self._failures}/{len(self._window)} failed of last {self._window.maxlen}"
        return (
            f"<CircuitBreaker {self._state.value} {window} openings={self._openings}"
            f" rejected={self._rejected}>"
        )
