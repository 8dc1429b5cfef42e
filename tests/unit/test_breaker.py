"""The circuit breaker (``_breaker``): closed, open, half-open, driven with explicit times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncwait import ConfigError
from asyncwait._breaker import BreakerState, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def opened(at: float = 0.0, *, open_for: float = 5.0) -> CircuitBreaker:
    """A breaker (ratio 0.5 over 4 calls) that opened at ``at``."""
    breaker = CircuitBreaker(0.5, 4, open_for)
    breaker.on_success(at)
    breaker.on_success(at)
    breaker.on_failure(at)
    assert breaker.on_failure(at) is OPEN
    return breaker


def test_it_opens_at_the_ratio_only_once_the_window_is_full() -> None:
    breaker = CircuitBreaker(0.5, 4, 5.0)
    assert breaker.on_failure(0.0) is None  # 1 of 1 failed, but the window is not full
    assert breaker.on_failure(0.1) is None
    assert breaker.on_success(0.2) is None
    assert breaker.state is CLOSED
    assert breaker.on_success(0.3) is None  # full: 2 of 4 = 0.5, but it counts on a failure
    assert breaker.on_failure(0.4) is OPEN  # the window slid: 2 of 4 failed (F S S F)
    stats = breaker.statistics()
    assert (stats.openings, stats.window_calls, stats.window_failures) == (1, 4, 2)
    assert stats.last_change == 0.4


def test_a_window_below_the_ratio_stays_closed_however_many_failures() -> None:
    breaker = CircuitBreaker(0.75, 4, 5.0)
    for t in range(100):
        breaker.on_failure(t)
        breaker.on_success(t)
    assert breaker.state is CLOSED
    assert breaker.statistics().window_failures == 2


def test_old_outcomes_leave_the_window() -> None:
    breaker = CircuitBreaker(1.0, 3, 5.0)
    breaker.on_failure(0.0)
    breaker.on_failure(0.0)
    breaker.on_success(0.0)
    assert breaker.on_failure(0.0) is None  # F S F: 2 of 3
    assert breaker.on_failure(0.0) is None  # S F F
    assert breaker.on_failure(0.0) is OPEN  # F F F


def test_it_refuses_every_call_while_open_and_counts_them() -> None:
    breaker = opened(10.0)
    assert [breaker.allow(t) for t in (10.0, 12.0, 14.999)] == [False] * 3
    assert breaker.statistics().rejected == 3
    assert breaker.state is OPEN


def test_after_open_for_one_probe_goes_through() -> None:
    breaker = opened(10.0)
    assert breaker.allow(15.0)
    assert breaker.state is HALF_OPEN
    assert not breaker.allow(15.1)  # the probe still runs
    assert not breaker.allow(19.9)
    stats = breaker.statistics()
    assert (stats.probes, stats.rejected, stats.transitions) == (1, 2, 2)


def test_a_probe_that_never_answers_is_followed_by_another_after_open_for() -> None:
    breaker = opened(0.0)
    assert breaker.allow(5.0)
    assert breaker.allow(10.0)
    assert breaker.statistics().probes == 2


def test_a_probe_success_closes_it_with_an_empty_window() -> None:
    breaker = opened(0.0)
    assert breaker.allow(5.0)
    assert breaker.on_success(5.2, started=5.0) is CLOSED
    stats = breaker.statistics()
    assert (stats.window_calls, stats.window_failures) == (0, 0)
    assert breaker.allow(5.3)
    # A fresh window: three failures in a row do not reopen it (4 needed to fill).
    assert [breaker.on_failure(5.4) for _ in range(3)] == [None] * 3


def test_a_probe_failure_opens_it_again_for_open_for() -> None:
    breaker = opened(0.0)
    assert breaker.allow(5.0)
    assert breaker.on_failure(5.5, started=5.0) is OPEN
    assert not breaker.allow(10.4)
    assert breaker.allow(10.5)
    assert breaker.statistics().openings == 2


def test_outcomes_while_open_are_ignored() -> None:
    breaker = opened(0.0)
    assert breaker.on_success(1.0) is None
    assert breaker.on_failure(1.0) is None
    assert breaker.state is OPEN
    stats = breaker.statistics()
    assert (stats.window_calls, stats.window_failures, stats.transitions) == (4, 2, 1)


def test_a_call_begun_before_the_breaker_opened_does_not_decide_the_probe() -> None:
    breaker = opened(1.0)
    assert breaker.allow(6.0)
    assert breaker.on_success(6.5, started=0.5) is None  # a slow call from before it opened
    assert breaker.on_failure(6.6, started=0.9) is None
    assert breaker.state is HALF_OPEN
    assert breaker.on_success(6.7, started=6.0) is CLOSED


def test_without_start_times_the_first_outcome_while_half_open_is_the_probes() -> None:
    breaker = opened(0.0)
    assert breaker.on_success(1.0) is None  # OPEN: ignored
    assert breaker.allow(5.0)
    assert breaker.on_failure(5.1) is OPEN


def test_calls_begun_before_it_closed_do_not_fill_the_new_window() -> None:
    breaker = CircuitBreaker(1.0, 2, 1.0)
    breaker.on_failure(0.0)
    breaker.on_failure(0.0)
    assert breaker.allow(1.0)
    assert breaker.on_success(1.1, started=1.0) is CLOSED
    # Two slow calls from before the opening fail now: they say nothing about the store now.
    assert breaker.on_failure(1.2, started=0.0) is None
    assert breaker.on_failure(1.3, started=0.0) is None
    assert breaker.statistics().window_calls == 0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0, 4, 1.0), "failure_ratio must be a number > 0 and <= 1, got 0.0"),
        ((1.01, 4, 1.0), "failure_ratio must be a number > 0 and <= 1"),
        ((0.5, 0, 1.0), "min_calls must be an int >= 1, got 0"),
        ((0.5, 4, 0), "open_for must be a number of seconds > 0, got 0"),
    ],
)
def test_bad_options_are_refused(args: tuple[float, int, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CircuitBreaker(*args)


def test_the_repr_shows_the_state_and_the_window() -> None:
    breaker = opened(0.0)
    breaker.allow(1.0)
    assert repr(breaker) == "<CircuitBreaker open 2/4 failed of last 4 openings=1 rejected=1>"


LEGAL = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}

events = st.lists(
    st.tuples(
        st.sampled_from(["allow", "success", "failure"]),
        st.floats(0.0, 3.0),  # time passing before the event
        st.floats(0.0, 10.0),  # the call's latency (for outcomes)
        st.booleans(),  # whether the caller passes its start time
    ),
    max_size=300,
)


@given(
    st.floats(0.05, 1.0),
    st.integers(1, 10),
    st.floats(0.1, 5.0),
    events,
)
def test_any_sequence_of_calls_keeps_the_breaker_legal(
    ratio: float, min_calls: int, open_for: float, sequence: list[tuple[str, float, float, bool]]
) -> None:
    breaker = CircuitBreaker(ratio, min_calls, open_for)
    now, refused, openings, transitions = 0.0, 0, 0, 0
    for kind, gap, latency, timed in sequence:
        now += gap
        before = breaker.state
        started = max(now - latency, 0.0) if timed else None
        if kind == "allow":
            if not breaker.allow(now):
                refused += 1
                assert breaker.state is not CLOSED
            returned = None
        elif kind == "success":
            returned = breaker.on_success(now, started=started)
        else:
            returned = breaker.on_failure(now, started=started)
        after = breaker.state
        if after is not before:
            transitions += 1
            openings += after is OPEN
            assert (before, after) in LEGAL
            # The outcome methods report their change; allow() only moves OPEN -> HALF_OPEN.
            assert returned is after if kind != "allow" else (before, after) == (OPEN, HALF_OPEN)
        else:
            assert returned is None
        if before is OPEN and kind != "allow":
            assert after is OPEN  # outcomes while open are ignored
        stats = breaker.statistics()
        assert (stats.rejected, stats.openings, stats.transitions) == (
            refused,
            openings,
            transitions,
        )
        assert 0 <= stats.window_failures <= stats.window_calls <= min_calls
