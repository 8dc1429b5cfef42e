"""One lookup's flow control toward its store: breaker, rate limit, concurrency (private).

:class:`FlowGate` combines the components of ``_flow``, ``_adaptive`` and ``_breaker``
for the calls of one lookup, in this order::

    event ─► admit(now) ──────────► next_send(now, in_flight) ──► call ──► ended(...)
             circuit breaker        concurrency limit, then         │      or abandoned(...)
             False: fail fast       rate limit (a token is taken    │
             (CircuitOpenError)     only when a call may start)     ▼
                                                               the store

Like its parts it is synchronous, with no awaits, tasks or clock: the caller (the lookup
join's batcher) passes loop time and does the waiting and the I/O.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from ._breaker import BreakerState
from .errors import BadInputError, CircuitOpenError, HttpStatusError

if TYPE_CHECKING:
    from ._adaptive import ConcurrencyLimit
    from ._breaker import CircuitBreaker
    from ._flow import AdaptiveSpec, BreakerSpec, RateLimitSpec, TokenBucket

__all__ = ("FlowGate", "FlowStatistics")

logger = logging.getLogger("asyncwait.flow")

MAX_SLOW_DOWN: Final = 60.0  # seconds: the most a store's Retry-After may pause a lookup
DEFAULT_SLOW_DOWN: Final = 1.0  # seconds: a 429/503 without a Retry-After
_OVERLOADED: Final = frozenset({429, 503})


@final
@dataclass(frozen=True, slots=True)
class FlowStatistics:
    """A snapshot of a :class:`FlowGate`.

    Attributes:
        rate_limit_waits: times a call had to wait for a token (each wait counted once,
            however often the caller asked during it).
        slowdowns: times the store's 429/503/Retry-After paused the rate limit.
        concurrency_limit: calls that may be in flight now; ``None`` without ``adaptive``.
        limit_increases: times the concurrency limit went up; limit_decreases: down.
        breaker_state: ``"closed"``, ``"open"`` or ``"half_open"``; ``None`` without a
            circuit breaker.
        breaker_openings: times the breaker opened.
        breaker_rejected: calls the breaker refused (failed fast).
        rate_limit: the configured calls per second; ``None`` without ``rate_limit``.
    """

    rate_limit_waits: int
    slowdowns: int
    concurrency_limit: int | None
    limit_increases: int
    limit_decreases: int
    breaker_state: str | None
    breaker_openings: int
    breaker_rejected: int
    rate_limit: float | None = None

    def counters(self) -> dict[str, int]:
        """The integer statistics of the configured policies, by name (for summaries).

        >>> stats = FlowStatistics(3, 1, None, 0, 0, "open", 2, 40, rate_limit=10.0)
        >>> sorted(stats.counters().items())  # doctest: +NORMALIZE_WHITESPACE
        [('breaker_open', 1), ('breaker_openings', 2), ('breaker_rejected', 40),
         ('rate_limit_waits', 3), ('slowdowns', 1)]
        """
        found: dict[str, int] = {}
        if self.rate_limit is not None:
            found["rate_limit_waits"] = self.rate_limit_waits
            found["slowdowns"] = self.slowdowns
        if self.concurrency_limit is not None:
            found["concurrency_limit"] = self.concurrency_limit
        if self.breaker_state is not None:
            found["breaker_openings"] = self.breaker_openings
            found["breaker_rejected"] = self.breaker_rejected
            found["breaker_open"] = int(self.breaker_state != "closed")  # open or probing
        return found


@final
class FlowGate:
    """One lookup's calls to its store: breaker -> rate limit -> concurrency limit.

    The caller asks :meth:`admit` once per event (``False``: fail the event fast with
    :class:`~asyncwait.CircuitOpenError`), :meth:`next_send` before each call (``None``:
    start it now; a time: try again then; ``math.inf``: try again when a call ends), and
    reports each call's end with :meth:`ended` or, for a call nobody waits for any more,
    :meth:`abandoned`. Nothing here waits, cancels or drops anything; with no policy
    configured every method is a few attribute reads.

    How an ending is read:

    ==================================  =====================  ===============  ==========
    error                               concurrency limit      rate limit       breaker
    ==================================  =====================  ===============  ==========
    ``None``                            success (latency)      -                success
    ``HttpStatusError`` 429/503, or     overload               slowed down for  failure
    any with ``retry_after``                                   Retry-After (1 s
                                                               without, <= 60 s)
    ``TimeoutError`` (attempt timeout)  timeout                -                failure
    ``BadInputError``                   -                      -                -
    another ``Exception``               error (neutral)        -                failure
    ==================================  =====================  ===============  ==========

    A ``CircuitOpenError`` or a ``BaseException`` that is no ``Exception`` (a cancelled
    call) is not the store's answer and counts nowhere. Breaker state changes are logged
    once each on the ``asyncwait.flow`` logger: an opening at WARNING, half-open and
    closed at INFO.

    Args:
        name: the lookup, for log lines (``lookup[0]:dim_user: lookup join on http:...``).
        rate_limit: calls per second and burst, or ``None``.
        adaptive: the bounds of the adaptive concurrency limit, or ``None``.
        breaker: the circuit breaker's options, or ``None``.

    >>> from asyncwait._flow import RateLimitSpec
    >>> gate = FlowGate("lookup[0]", rate_limit=RateLimitSpec(10.0, burst=1))
    >>> gate.admit(0.0), gate.next_send(0.0, 0), gate.next_send(0.0, 1)
    (True, None, 0.1)
    >>> gate.statistics().counters()
    {'rate_limit_waits': 1, 'slowdowns': 0}
    """

    __slots__ = ("_breaker", "_bucket", "_limit", "_name", "_open_for", "_rate_blocked")

    def __init__(
        self,
        name: str,
        *,
        rate_limit: RateLimitSpec | None = None,
        adaptive: AdaptiveSpec | None = None,
        breaker: BreakerSpec | None = None,
    ) -> None:
        self._name = name
        self._bucket: TokenBucket | None = None if rate_limit is None else rate_limit.build()
        self._limit: ConcurrencyLimit | None = None if adaptive is None else adaptive.build()
        self._breaker: CircuitBreaker | None = None if breaker is None else breaker.build()
        self._open_for = 0.0 if breaker is None else breaker.open_for
        # A send refused by the rate limit and not started since: the next refusal is the
        # same wait, not a new one.
        self._rate_blocked = False

    @property
    def limited(self) -> bool:
        """Whether any policy is configured."""
        return self._bucket is not None or self._limit is not None or self._breaker is not None

    @property
    def rate_limited(self) -> bool:
        """Whether a rate limit is set (a 429/503 pauses it)."""
        return self._bucket is not None

    def admit(self, now: float) -> bool:
        """Whether an event may call the store at ``now`` (the circuit breaker's answer).

        ``False``: the caller fails the event fast with ``CircuitOpenError``. Once the
        breaker's ``open_for`` has passed this lets a probe through (half-open).
        """
        breaker = self._breaker
        if breaker is None:
            return True
        before = breaker.state
        allowed = breaker.allow(now)
        if breaker.state is not before:
            logger.info(
                "%s: circuit breaker half-open after %g s: one probe call goes to the store",
                self._name,
                self._open_for,
                extra=self._event("breaker_half_open"),
            )
        return allowed

    def next_send(self, now: float, in_flight: int) -> float | None:
        """Whether one more call may start at ``now`` while ``in_flight`` calls run.

        Returns:
            ``None``: start it now (a token was taken). ``math.inf``: the concurrency
            limit is full; ask again when a call ends. Otherwise the loop time at which
            the rate limit has a token; ask again then.
        """
        limit = self._limit
        if limit is not None and in_flight >= limit.limit:
            limit.acquire_ok(now, in_flight)  # False; tells it callers fill the limit
            return math.inf
        bucket = self._bucket
        if bucket is not None:
            if not bucket.try_take(now, waited=self._rate_blocked):
                self._rate_blocked = True
                return bucket.next_at(now)
            self._rate_blocked = False
        # Only now, with the call certain to start: a limit told it is filled while the
        # rate limit holds calls back would measure rounds it never ran.
        if limit is not None:
            limit.acquire_ok(now, in_flight)
        return None

    def ended(self, now: float, latency: float, error: BaseException | None) -> None:
        """A call that took ``latency`` seconds ended at ``now``: ``error`` ``None`` or why.

        See the class docstring for how each kind of error counts.
        """
        limit, breaker = self._limit, self._breaker
        if error is None:
            if limit is not None:
                limit.on_success(now, latency)
            if breaker is not None:
                self._changed(breaker.on_success(now, started=now - latency), None)
            return
        if not isinstance(error, Exception) or isinstance(error, BadInputError | CircuitOpenError):
            return  # not the store's answer: a bad key, a refusal, a cancellation
        if isinstance(error, HttpStatusError) and (
            error.status in _OVERLOADED or error.retry_after is not None
        ):
            if self._bucket is not None:
                asked = DEFAULT_SLOW_DOWN if error.retry_after is None else error.retry_after
                self._bucket.slow_down(now, min(max(asked, 0.0), MAX_SLOW_DOWN))
            if limit is not None:
                limit.on_overload(now)
        elif isinstance(error, TimeoutError):  # AttemptTimeoutError and AsyncTimeoutError too
            if limit is not None:
                limit.on_timeout(now)
        elif limit is not None:
            limit.on_error(now)
        if breaker is not None:
            probing = breaker.state is BreakerState.HALF_OPEN
            failed = breaker.on_failure(now, started=now - latency)
            self._changed(failed, error if probing else None)

    def abandoned(self, now: float, latency: float) -> None:
        """A call nobody waits for was cancelled at ``now`` after ``latency`` seconds.

        Its element timed out: the concurrency limit counts a timeout. It says nothing
        about whether the store works, so the breaker does not count it.
        """
        if self._limit is not None:
            self._limit.on_timeout(now)

    def _changed(self, state: BreakerState | None, probe_error: BaseException | None) -> None:
        """Log a breaker state change (``None``: none happened).

        ``probe_error``: the failure of the half-open probe that reopened the breaker.
        """
        if state is BreakerState.OPEN:
            if probe_error is not None:
                why = f"the probe call failed ({probe_error!r})"
            else:
                assert self._breaker is not None  # only a breaker changes state
                stats = self._breaker.statistics()
                why = _ratio(stats.window_failures, stats.window_calls)
            logger.warning(
                "%s: circuit breaker opened: %s; calls fail fast for %g s",
                self._name,
                why,
                self._open_for,
                extra=self._event("breaker_opened", why=why, open_for=self._open_for),
            )
        elif state is BreakerState.CLOSED:
            logger.info(
                "%s: circuit breaker closed: the probe call succeeded",
                self._name,
                extra=self._event("breaker_closed"),
            )

    def _event(self, event: str, **fields: object) -> dict[str, object]:
        """A log record's extras: the event, and the operator (``"<operator>: ..."``)."""
        operator = self._name.split(": ", 1)[0]
        return {"event": event, "operator": operator, "fields": {"source": self._name, **fields}}

    def statistics(self) -> FlowStatistics:
        bucket, limit, breaker = self._bucket, self._limit, self._breaker
        rate = None if bucket is None else bucket.statistics()
        conc = None if limit is None else limit.statistics()
        brk = None if breaker is None else breaker.statistics()
        return FlowStatistics(
            rate_limit_waits=0 if rate is None else rate.waits,
            slowdowns=0 if rate is None else rate.slowdowns,
            concurrency_limit=None if conc is None else conc.limit,
            limit_increases=0 if conc is None else conc.increases,
            limit_decreases=0 if conc is None else conc.decreases,
            breaker_state=None if brk is None else brk.state.value,
            breaker_openings=0 if brk is None else brk.openings,
            breaker_rejected=0 if brk is None else brk.rejected,
            rate_limit=None if rate is None else rate.rate,
        )

    def __repr__(self) -> str:
        parts = [
            repr(part) for part in (self._breaker, self._bucket, self._limit) if part is not None
        ]
        return f"<FlowGate {self._name} {' '.join(parts) or 'unlimited'}>"


def _ratio(failures: int, calls: int) -> str:
    share = failures / calls if calls else 1.0
    return f"{failures} of the last {calls} calls failed ({share:.0%})"
