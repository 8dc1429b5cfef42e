"""The token bucket and the options of the flow-control policies (``_flow``)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncwait import ConfigError
from asyncwait._flow import AdaptiveSpec, BreakerSpec, RateLimitSpec, TokenBucket

# ------------------------------------------------------------------------ TokenBucket


def test_a_full_bucket_hands_out_burst_tokens_at_once_then_rate_per_second() -> None:
    bucket = TokenBucket(100.0, burst=5)
    assert [bucket.try_take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.next_at(0.0) == pytest.approx(0.01)
    assert not bucket.try_take(0.009)
    assert bucket.try_take(0.01)
    assert not bucket.try_take(0.01)
    assert bucket.statistics().taken == 6


def test_the_default_burst_is_a_tenth_of_the_rate_and_at_least_one() -> None:
    assert TokenBucket(500.0).burst == 50
    assert TokenBucket(3.0).burst == 1
    assert [TokenBucket(3.0).try_take(0.0) for _ in range(1)] == [True]


def test_an_idle_bucket_refills_to_burst_never_more() -> None:
    bucket = TokenBucket(10.0, burst=3)
    assert all(bucket.try_take(0.0) for _ in range(3))
    # An hour idle: still only three tokens at once.
    assert [bucket.try_take(3600.0) for _ in range(4)] == [True, True, True, False]


def test_next_at_is_now_when_a_token_is_free() -> None:
    bucket = TokenBucket(10.0, burst=1)
    assert bucket.next_at(2.0) == 2.0
    bucket.try_take(2.0)
    assert bucket.next_at(2.0) == pytest.approx(2.1)


def test_a_slow_down_hands_out_nothing_before_its_end_then_one_token_not_a_burst() -> None:
    bucket = TokenBucket(10.0, burst=5)
    bucket.slow_down(1.0, 2.0)
    assert not bucket.try_take(2.999)
    assert bucket.next_at(2.0) == 3.0
    assert bucket.try_take(3.0)
    assert not bucket.try_take(3.0)  # not a burst into a store that just pushed back
    assert bucket.next_at(3.0) == pytest.approx(3.1)
    stats = bucket.statistics()
    assert (stats.slowdowns, stats.paused_until) == (1, 3.0)


def test_overlapping_slow_downs_keep_the_latest_end() -> None:
    bucket = TokenBucket(10.0)
    bucket.slow_down(0.0, 5.0)
    bucket.slow_down(1.0, 1.0)  # ends at 2.0, before the first
    assert bucket.next_at(1.0) == 5.0
    assert bucket.statistics().paused_until == 5.0
    bucket.slow_down(1.0, -3.0)  # a negative wait counts as none
    assert bucket.next_at(1.0) == 5.0
    assert bucket.statistics().slowdowns == 3


@pytest.mark.parametrize("seconds", [math.nan, math.inf, "1"])
def test_slow_down_refuses_a_wait_that_is_not_a_finite_number(seconds: object) -> None:
    with pytest.raises(ValueError, match="slow_down: seconds"):
        TokenBucket(10.0).slow_down(0.0, seconds)  # type: ignore[arg-type]


def test_waits_count_callers_that_waited_not_their_attempts() -> None:
    bucket = TokenBucket(1.0, burst=1)
    assert bucket.try_take(0.0)
    assert not bucket.try_take(0.5)  # a caller finds it empty: one wait
    assert not bucket.try_take(0.7, waited=True)  # the same caller, woken too early
    assert not bucket.try_take(0.8)  # another caller: a second wait
    assert bucket.try_take(1.0, waited=True)
    assert bucket.statistics().waits == 2


@pytest.mark.parametrize(
    ("rate", "burst", "match"),
    [
        (0, None, "rate_limit must be a number > 0, got 0"),
        (-1.0, None, "rate_limit must be a number > 0"),
        (math.inf, None, "rate_limit must be a number > 0"),
        (True, None, "rate_limit must be a number > 0, got True"),
        (10.0, 0.5, "burst must be a number >= 1, got 0.5"),
    ],
)
def test_a_bucket_refuses_bad_options(rate: object, burst: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TokenBucket(rate, burst)  # type: ignore[arg-type]


def test_the_repr_shows_the_tokens_left_and_a_pause() -> None:
    bucket = TokenBucket(10.0, burst=4)
    bucket.try_take(0.0)
    assert "tokens=3.0 taken=1 waits=0" in repr(bucket)
    bucket.slow_down(0.0, 2.0)
    assert "paused until 2" in repr(bucket)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[float, float, list[float]]:
    rate = draw(st.floats(0.5, 1000.0))
    burst = draw(st.floats(1.0, 50.0))
    gaps = draw(st.lists(st.floats(0.0, 3.0 / rate), min_size=1, max_size=200))
    return rate, burst, gaps


@given(schedules(), st.floats(0.01, 5.0))
def test_no_window_gets_more_than_rate_times_its_length_plus_burst(
    schedule: tuple[float, float, list[float]], window: float
) -> None:
    rate, burst, gaps = schedule
    bucket = TokenBucket(rate, burst)
    now, taken = 0.0, []
    for gap in gaps:
        now += gap
        if bucket.try_take(now):
            taken.append(now)
    # Every window [t, t + w] that starts at a take (the worst ones do) gets at most this.
    for i, start in enumerate(taken):
        inside = sum(1 for t in taken[i:] if t <= start + window)
        assert inside <= rate * (window + 1e-9) + burst  # a token a nanosecond early is free


@given(st.floats(0.5, 1000.0), st.floats(1.0, 50.0), st.floats(0.0, 100.0), st.floats(0.1, 5.0))
def test_a_caller_asking_whenever_a_token_is_due_gets_the_rate(
    rate: float, burst: float, start: float, window: float
) -> None:
    bucket = TokenBucket(rate, burst)
    now, got = start, 0
    while now <= start + window:
        if bucket.try_take(now):
            got += 1
        else:
            now = bucket.next_at(now)
    assert got >= rate * window - 1


# ------------------------------------------------------------------------ the options


def test_rate_limit_spec_builds_a_full_bucket() -> None:
    spec = RateLimitSpec.from_mapping("job.toml", {"rate_limit": 200, "burst": 4})
    assert spec == RateLimitSpec(200.0, 4.0)
    bucket = spec.build()
    assert (bucket.rate, bucket.burst) == (200.0, 4.0)
    assert RateLimitSpec(200).build().burst == 20
    assert RateLimitSpec.from_mapping("x", {"rate_limit": 5, "burst": None}).burst is None


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            {"rate_limit": 10, "brust": 2},
            "job.toml: lookup[0].brust: unknown key; did you mean 'burst'? "
            "(allowed: rate_limit, burst)",
        ),
        ({"burst": 2}, "job.toml: lookup[0].rate_limit: missing required field"),
        ({"rate_limit": 0}, "job.toml: lookup[0].rate_limit must be a number > 0, got 0"),
        ({"rate_limit": "fast"}, "job.toml: lookup[0].rate_limit must be a number > 0, got 'fast'"),
        ({"rate_limit": 10, "burst": 0}, "job.toml: lookup[0].burst must be a number >= 1, got 0"),
        (42, "job.toml: lookup[0] must be a table with rate_limit, burst, got 42"),
    ],
)
def test_rate_limit_spec_names_the_bad_field(mapping: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimitSpec.from_mapping("job.toml", mapping, field="lookup[0]")
    assert str(info.value) == message


def test_adaptive_spec_builds_a_limit_at_min() -> None:
    spec = AdaptiveSpec.from_mapping("job.toml", {"min": 2, "max": 50}, capacity=50)
    assert spec == AdaptiveSpec(2, 50)
    assert spec.build().limit == 2
    assert AdaptiveSpec.from_mapping("lookup join", spec) is spec


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            {"min": 1, "maz": 8},
            "job.toml: lookup[0].adaptive.maz: unknown key; did you mean 'max'? "
            "(allowed: min, max)",
        ),
        ({"max": 8}, "job.toml: lookup[0].adaptive.min: missing required field"),
        ({"min": 0, "max": 8}, "job.toml: lookup[0].adaptive.min must be an int >= 1, got 0"),
        ({"min": 1, "max": 2.5}, "job.toml: lookup[0].adaptive.max must be an int >= 1, got 2.5"),
        (
            {"min": 8, "max": 4},
            "job.toml: lookup[0].adaptive.min must be <= lookup[0].adaptive.max, "
            "got min = 8, max = 4",
        ),
        (
            {"min": 4, "max": 200},
            "job.toml: lookup[0].adaptive.max must be <= capacity (100), got 200",
        ),
    ],
)
def test_adaptive_spec_names_the_bad_field(mapping: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        AdaptiveSpec.from_mapping("job.toml", mapping, field="lookup[0].adaptive", capacity=100)
    assert str(info.value) == message


def test_an_adaptive_spec_from_python_is_checked_against_capacity_too() -> None:
    with pytest.raises(ConfigError, match=r"lookup join: adaptive.max must be <= capacity \(8\)"):
        AdaptiveSpec.from_mapping("lookup join", AdaptiveSpec(1, 9), capacity=8)
    with pytest.raises(ConfigError, match=r"AdaptiveSpec: adaptive\.min must be <= adaptive\.max"):
        AdaptiveSpec(3, 2)


def test_breaker_spec_builds_a_closed_breaker() -> None:
    mapping = {"failure_ratio": 1, "min_calls": 10, "open_for": 2}
    spec = BreakerSpec.from_mapping("job.toml", mapping)
    assert spec == BreakerSpec(1.0, 10, 2.0)
    assert isinstance(spec.failure_ratio, float)
    assert spec.build().state.value == "closed"
    assert BreakerSpec.from_mapping("lookup join", spec) is spec


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"open_fro": 1.0},
            "job.toml: lookup[1].circuit_breaker.open_fro: unknown key; did you mean "
            "'open_for'? (allowed: failure_ratio, min_calls, open_for)",
        ),
        (
            {"open_for": None},
            "job.toml: lookup[1].circuit_breaker.open_for: missing required field",
        ),
        (
            {"failure_ratio": 1.5},
            "job.toml: lookup[1].circuit_breaker.failure_ratio must be a number > 0 and <= 1, "
            "got 1.5",
        ),
        (
            {"failure_ratio": 0},
            "job.toml: lookup[1].circuit_breaker.failure_ratio must be a number > 0 and <= 1, "
            "got 0",
        ),
        (
            {"min_calls": 0},
            "job.toml: lookup[1].circuit_breaker.min_calls must be an int >= 1, got 0",
        ),
        (
            {"open_for": -1},
            "job.toml: lookup[1].circuit_breaker.open_for must be a number of seconds > 0, got -1",
        ),
    ],
)
def test_breaker_spec_names_the_bad_field(changes: dict[str, object], message: str) -> None:
    mapping = {"failure_ratio": 0.5, "min_calls": 20, "open_for": 5.0, **changes}
    with pytest.raises(ConfigError) as info:
        BreakerSpec.from_mapping("job.toml", mapping, field="lookup[1].circuit_breaker")
    assert str(info.value) == message


def test_specs_built_in_python_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"^RateLimitSpec: rate_limit must be a number > 0"):
        RateLimitSpec(-5)
    with pytest.raises(ConfigError, match=r"^BreakerSpec: circuit_breaker.min_calls must be"):
        BreakerSpec(0.5, True, 1.0)  # a bool is not an int here
