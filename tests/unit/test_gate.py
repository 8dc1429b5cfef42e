"""One lookup's gate toward its store (``_gate``): breaker -> rate limit -> concurrency."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from asyncwait import (
    AsyncTimeoutError,
    AttemptTimeoutError,
    BadInputError,
    CircuitOpenError,
    HttpStatusError,
    LookupFailedError,
)
from asyncwait._flow import AdaptiveSpec, BreakerSpec, RateLimitSpec
from asyncwait._gate import FlowGate, FlowStatistics

NAME = "lookup[0]:dim_user: lookup join on http://store/{key}"


def status(code: int, retry_after: float | None = None) -> HttpStatusError:
    return HttpStatusError(
        f"HTTP {code}", status=code, url="http://store/1", retry_after=retry_after
    )


def test_without_policies_everything_passes_and_nothing_is_counted() -> None:
    gate = FlowGate(NAME)
    assert not gate.limited
    assert gate.admit(0.0)
    assert gate.next_send(0.0, 10_000) is None
    gate.ended(0.1, 0.1, status(429, 5.0))
    gate.abandoned(0.2, 0.2)
    stats = gate.statistics()
    assert stats == FlowStatistics(0, 0, None, 0, 0, None, 0, 0)
    assert stats.counters() == {}
    assert repr(gate) == f"<FlowGate {NAME} unlimited>"


@pytest.mark.parametrize(
    "options",
    [
        {"rate_limit": RateLimitSpec(10)},
        {"adaptive": AdaptiveSpec(1, 4)},
        {"breaker": BreakerSpec(0.5, 4, 1.0)},
    ],
)
def test_any_one_policy_makes_it_limited(options: dict[str, object]) -> None:
    assert FlowGate(NAME, **options).limited  # type: ignore[arg-type]


def test_the_concurrency_limit_is_checked_before_a_token_is_taken() -> None:
    gate = FlowGate(NAME, rate_limit=RateLimitSpec(10, burst=2), adaptive=AdaptiveSpec(1, 8))
    assert gate.next_send(0.0, 0) is None  # limit 1: one call; one token of two taken
    assert gate.next_send(0.0, 1) == math.inf  # the limit is full: no token taken
    assert gate.next_send(0.0, 1) == math.inf
    assert gate.next_send(0.0, 0) is None  # the second token was still there
    assert gate.next_send(0.0, 0) == pytest.approx(0.1)  # now the bucket is empty
    stats = gate.statistics()
    assert (stats.rate_limit_waits, stats.concurrency_limit) == (1, 1)


def test_both_full_means_wait_for_a_call_to_end() -> None:
    gate = FlowGate(NAME, rate_limit=RateLimitSpec(1, burst=1), adaptive=AdaptiveSpec(1, 8))
    assert gate.next_send(0.0, 0) is None
    assert gate.next_send(0.5, 1) == math.inf
    assert gate.next_send(0.5, 0) == 1.0  # the call ended: now only the bucket holds it back


def test_a_wait_for_a_token_is_counted_once_however_often_the_caller_asks() -> None:
    gate = FlowGate(NAME, rate_limit=RateLimitSpec(2, burst=1))
    assert gate.next_send(0.0, 0) is None
    assert gate.next_send(0.1, 1) == 0.5
    assert gate.next_send(0.3, 1) == 0.5  # woken early: the same wait
    assert gate.next_send(0.5, 1) is None
    assert gate.next_send(0.6, 2) == 1.0  # a new wait
    assert gate.statistics().counters() == {"rate_limit_waits": 2, "slowdowns": 0}


@pytest.mark.parametrize(
    ("error", "paused_until"),
    [
        (status(429, retry_after=7.0), 17.0),  # Retry-After: that long
        (status(503), 11.0),  # no Retry-After: one second
        (status(500, retry_after=2.0), 12.0),  # any status that sends Retry-After
        (status(429, retry_after=3600.0), 70.0),  # at most a minute
        (status(429, retry_after=-5.0), 10.0),  # a negative wait: none
    ],
)
def test_the_store_pushing_back_slows_the_bucket_for_as_long_as_it_asks(
    error: HttpStatusError, paused_until: float
) -> None:
    gate = FlowGate(NAME, rate_limit=RateLimitSpec(100))  # burst 10
    gate.ended(10.0, 0.05, error)
    assert gate.next_send(paused_until - 0.001, 0) == paused_until
    assert gate.next_send(paused_until, 0) is None
    assert gate.next_send(paused_until, 1) == pytest.approx(paused_until + 0.01)  # not a burst
    assert gate.statistics().counters() == {"rate_limit_waits": 2, "slowdowns": 1}


def test_an_overload_cuts_the_concurrency_limit() -> None:
    gate = FlowGate(NAME, adaptive=AdaptiveSpec(1, 10))
    grow(gate, 10)  # how much a cut takes off is the limit's business (test_adaptive)
    gate.ended(50.0, 0.005, status(429))
    assert gate.statistics().concurrency_limit == 9
    gate.ended(60.0, 0.005, AttemptTimeoutError("slow"))
    assert gate.statistics().concurrency_limit == 8
    gate.abandoned(70.0, 1.0)
    assert gate.statistics().concurrency_limit == 7
    gate.ended(80.0, 0.005, LookupFailedError("bad body"))  # another failure: neutral
    gate.ended(90.0, 0.005, BadInputError("bad key"))
    stats = gate.statistics()
    assert (stats.concurrency_limit, stats.limit_decreases) == (7, 3)
    assert stats.counters() == {"concurrency_limit": 7}


def grow(gate: FlowGate, target: int) -> None:
    """Run one call after another at full concurrency against a flat 5 ms store."""
    now, in_flight, ends = 0.0, 0, []
    while (gate.statistics().concurrency_limit or 0) < target:
        while gate.next_send(now, in_flight) is None:
            ends.append(now + 0.005)
            in_flight += 1
        ends.sort()
        end = ends.pop(0)
        now, in_flight = end, in_flight - 1
        gate.ended(now, 0.005, None)
        assert now < 40.0
    assert gate.statistics().concurrency_limit == target


def breaker_gate() -> FlowGate:
    return FlowGate(NAME, breaker=BreakerSpec(0.5, 4, 5.0))


def test_the_breaker_fails_fast_while_open_and_counts_the_refusals() -> None:
    gate = breaker_gate()
    for t in range(4):
        assert gate.admit(t)
        gate.ended(t + 0.5, 0.5, ConnectionRefusedError("down"))
    stats = gate.statistics()
    assert (stats.breaker_state, stats.breaker_openings) == ("open", 1)
    assert [gate.admit(t) for t in (4.0, 6.0, 8.4)] == [False] * 3
    assert gate.admit(8.5)  # open_for after the opening: the probe
    assert not gate.admit(8.6)
    assert gate.statistics().counters() == {
        "breaker_openings": 1,
        "breaker_rejected": 4,
        "breaker_open": 1,  # probing counts as open: calls are still refused
    }
    assert gate.statistics().breaker_state == "half_open"


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError(),
        AsyncTimeoutError("deadline"),
        AttemptTimeoutError("attempt"),
        status(503),
        status(404),
        LookupFailedError("bad body"),
        ConnectionResetError("reset"),
    ],
)
def test_failures_of_the_store_count_for_the_breaker(error: Exception) -> None:
    gate = FlowGate(NAME, breaker=BreakerSpec(1.0, 1, 5.0))
    gate.ended(1.0, 0.1, error)
    assert gate.statistics().breaker_state == "open"


@pytest.mark.parametrize(
    "error", [BadInputError("no key"), CircuitOpenError("open"), asyncio.CancelledError()]
)
def test_what_is_not_the_stores_answer_counts_nowhere(error: BaseException) -> None:
    gate = FlowGate(NAME, breaker=BreakerSpec(1.0, 1, 5.0), adaptive=AdaptiveSpec(2, 8))
    gate.ended(1.0, 0.1, error)
    gate.abandoned(1.0, 0.1)  # an element's deadline: the limit's business, not the breaker's
    stats = gate.statistics()
    assert (stats.breaker_state, stats.concurrency_limit) == ("closed", 2)


def test_each_breaker_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    gate = breaker_gate()
    caplog.set_level(logging.INFO, logger="asyncwait.flow")
    gate.ended(0.1, 0.1, None)
    for t in (1.0, 2.0, 3.0):
        gate.ended(t, 0.1, ConnectionRefusedError("down"))  # 3 of 4 failed: opens
    gate.ended(3.5, 0.2, ConnectionRefusedError("down"))  # while open: ignored
    gate.admit(4.0)
    gate.admit(8.0)  # half-open, one probe
    gate.admit(8.1)
    gate.ended(8.2, 0.2, status(503))  # the probe failed: open again
    gate.ended(8.3, 7.0, None)  # a call from before the opening: ignored
    gate.admit(13.2)
    gate.ended(13.3, 0.1, None)  # the probe succeeded: closed
    gate.ended(13.4, 0.1, None)
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "asyncwait.flow"]
    assert records == [
        (
            logging.WARNING,
            f"{NAME}: circuit breaker opened: 3 of the last 4 calls failed (75%);"
            " calls fail fast for 5 s",
        ),
        (
            logging.INFO,
            f"{NAME}: circuit breaker half-open after 5 s: one probe call goes to the store",
        ),
        (
            logging.WARNING,
            f"{NAME}: circuit breaker opened: the probe call failed ({status(503)!r});"
            " calls fail fast for 5 s",
        ),
        (
            logging.INFO,
            f"{NAME}: circuit breaker half-open after 5 s: one probe call goes to the store",
        ),
        (logging.INFO, f"{NAME}: circuit breaker closed: the probe call succeeded"),
    ]
    stats = gate.statistics()
    assert (stats.breaker_state, stats.breaker_openings, stats.breaker_rejected) == (
        "closed",
        2,
        2,
    )


def test_statistics_and_counters_cover_every_configured_policy() -> None:
    gate = FlowGate(
        NAME,
        rate_limit=RateLimitSpec(50, burst=5),
        adaptive=AdaptiveSpec(3, 30),
        breaker=BreakerSpec(0.5, 10, 1.0),
    )
    assert gate.limited
    gate.ended(1.0, 0.01, status(429, 2.0))
    stats = gate.statistics()
    assert stats.rate_limit == 50.0
    assert stats.counters() == {
        "rate_limit_waits": 0,
        "slowdowns": 1,
        "concurrency_limit": 3,
        "breaker_openings": 0,
        "breaker_rejected": 0,
        "breaker_open": 0,
    }
    text = repr(gate)
    assert "<CircuitBreaker closed" in text
    assert "<TokenBucket 50/s" in text
    assert "<ConcurrencyLimit limit=3" in text
