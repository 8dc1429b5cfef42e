"""The adaptive concurrency limit (``_adaptive``), alone and in a simulation of a store.

The simulation is discrete-event and deterministic (a seeded RNG jitters latencies by
±20%): a store whose latency is 5 ms while at most K calls are in flight and 2 ms more per
extra call, optionally with its own rate limit of R calls per second above which it
answers 429 within 1 ms; a client with an endless backlog that keeps as many calls in
flight as its limit allows. The adaptive client knows neither K nor R.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncwait import ConfigError
from asyncwait._adaptive import BACKOFF, ConcurrencyLimit
from asyncwait._flow import TokenBucket

BASE: Final = 0.005  # seconds per call up to the knee
EXTRA: Final = 0.002  # seconds more per call in flight past the knee
REFUSAL: Final = 0.001  # seconds a 429 takes


class Store:
    """The misbehaving store: latency fixed when a call starts, from the calls in flight."""

    def __init__(
        self, knee: int, rate: float | None = None, *, seed: int = 0, slower_at: float | None = None
    ) -> None:
        self.knee = knee
        self.in_flight = 0  # calls it accepted and still works on
        self.limiter = None if rate is None else TokenBucket(rate, rate / 10)
        self.rng = random.Random(seed)
        self.slower_at = slower_at  # from then on every call takes twice as long

    def start(self, now: float) -> tuple[float, bool]:
        """A call starts at ``now``: its latency, and whether it is refused (429)."""
        if self.limiter is not None and not self.limiter.try_take(now):
            return REFUSAL, True
        self.in_flight += 1
        latency = BASE + EXTRA * max(0, self.in_flight - self.knee)
        if self.slower_at is not None and now >= self.slower_at:
            latency *= 2
        return latency * self.rng.uniform(0.8, 1.2), False

    def end(self, refused: bool) -> None:
        if not refused:
            self.in_flight -= 1


Admit = Callable[[float, int], bool]
Report = Callable[[float, float, bool], None]


def simulate(
    store: Store,
    admit: Admit,
    report: Report,
    until: float,
    *,
    since: float | None = None,
    start: float = 0.0,
) -> float:
    """Run a closed-loop client from ``start`` to ``until``: its successes per second.

    Successes are counted from ``since`` (default: ``start``) on.
    """
    since = start if since is None else since
    ends: list[tuple[float, int, float, bool]] = []
    order = itertools.count()
    now, in_flight, done = start, 0, 0
    while True:
        while admit(now, in_flight):
            latency, refused = store.start(now)
            heapq.heappush(ends, (now + latency, next(order), latency, refused))
            in_flight += 1
        now, _, latency, refused = heapq.heappop(ends)
        if now > until:
            return done / (until - since)
        in_flight -= 1
        store.end(refused)
        done += not refused and now >= since
        report(now, latency, refused)


def fixed(store: Store, limit: int, until: float) -> float:
    return simulate(store, lambda _, in_flight: in_flight < limit, lambda *_: None, until)


def adaptive(store: Store, until: float, since: float = 0.0) -> tuple[float, ConcurrencyLimit]:
    limit = ConcurrencyLimit(1, 1000)

    def report(now: float, latency: float, refused: bool) -> None:
        if refused:
            limit.on_overload(now)
        else:
            limit.on_success(now, latency)

    return simulate(store, limit.acquire_ok, report, until, since=since), limit


@pytest.mark.parametrize("knee", [8, 32, 100])
def test_adaptive_does_at_least_nine_tenths_of_the_best_fixed_limit(knee: int) -> None:
    # The sweep knows roughly where to look; the adaptive limit starts at 1, max 1000.
    best = max(fixed(Store(knee, seed=limit), limit, 1.0) for limit in range(1, 2 * knee + 1))
    assert best > 0.9 * knee / BASE  # the sweep found the knee
    throughput, limit = adaptive(Store(knee), 5.0)  # warm-up from 1 included
    assert throughput >= 0.9 * best
    assert abs(limit.limit - knee) <= max(2, knee // 10)


@pytest.mark.parametrize(("knee", "rate"), [(32, 2000.0), (100, 5000.0)])
def test_adaptive_beats_a_thousand_in_flight_twice_in_a_429_storm(knee: int, rate: float) -> None:
    storm = fixed(Store(knee, rate), 1000, 3.0)
    throughput, limit = adaptive(Store(knee, rate), 3.0)
    assert throughput >= 2 * storm
    limits = [*range(1, 41), 48, 64, 96, 128]
    best = max(fixed(Store(knee, rate, seed=n), n, 3.0) for n in limits)
    assert throughput >= 0.9 * best
    assert limit.statistics().overloads > 0  # it learned R from the 429s alone


def test_a_store_that_gets_slower_for_good_does_not_collapse_the_limit() -> None:
    knee = 32
    # The best fixed limit is still the knee once every call takes twice as long.
    best = max(fixed(Store(knee, seed=n, slower_at=0.0), n, 1.0) for n in range(knee - 4, knee + 5))
    throughput, limit = adaptive(Store(knee, slower_at=2.0), 8.0, since=4.0)
    assert throughput >= 0.9 * best
    assert limit.limit >= knee // 2


# ------------------------------------------------------------------------ the limit alone


def warmed(limit: int, *, floor: int = 1) -> tuple[ConcurrencyLimit, float]:
    """A limit grown to ``limit`` (its max) against a flat 5 ms store; and the time."""
    store = Store(10_000)
    conc = ConcurrencyLimit(floor, limit)

    def report(now: float, latency: float, refused: bool) -> None:
        conc.on_success(now, latency)

    simulate(store, conc.acquire_ok, report, 1.0)
    assert conc.limit == limit  # a flat store: it climbs to max and stays
    return conc, 1.0


def test_it_starts_at_min_and_admits_calls_up_to_the_limit() -> None:
    conc = ConcurrencyLimit(3, 10)
    assert conc.limit == 3
    assert [conc.acquire_ok(0.0, n) for n in range(5)] == [True, True, True, False, False]
    assert ConcurrencyLimit(3, 10, initial=7).limit == 7


def test_it_never_grows_while_callers_do_not_fill_it() -> None:
    conc = ConcurrencyLimit(4, 100)
    now = 0.0
    for _ in range(1000):  # one call at a time: the limit of 4 is never the bound
        assert conc.acquire_ok(now, 0)
        now += 0.005
        conc.on_success(now, 0.005)
    assert conc.limit == 4
    assert conc.statistics().increases == 0


def test_it_never_grows_past_max_on_a_store_that_never_queues() -> None:
    conc, _ = warmed(20)
    assert conc.statistics().increases >= 1


@pytest.mark.parametrize("event", ["on_overload", "on_timeout"])
def test_overload_and_timeouts_cut_it_once_per_round_trip(event: str) -> None:
    conc, now = warmed(20)
    cut = getattr(conc, event)
    cut(now)
    assert conc.limit == int(20 * BACKOFF)
    cut(now + 0.001)  # answers to calls started under the old limit: no second cut
    assert conc.limit == int(20 * BACKOFF)
    cut(now + 0.010)  # two round trips later
    assert conc.limit == int(int(20 * BACKOFF) * BACKOFF)
    stats = conc.statistics()
    assert (stats.overloads + stats.timeouts, stats.decreases >= 2) == (3, True)


def test_a_cut_takes_one_call_off_at_least_and_never_goes_below_min() -> None:
    conc = ConcurrencyLimit(2, 10, initial=3)
    conc.on_timeout(0.0)
    assert conc.limit == 2  # 3 x 0.9 rounds down to 2
    conc.on_timeout(1.0)
    conc.on_overload(2.0)
    assert conc.limit == 2
    assert conc.statistics().decreases == 1


def test_other_errors_leave_the_limit_alone() -> None:
    conc, now = warmed(12)
    for i in range(50):
        conc.on_error(now + i)
    assert conc.limit == 12
    assert conc.statistics().errors == 50


def test_after_an_overload_it_probes_no_higher_than_where_the_store_refused() -> None:
    conc = ConcurrencyLimit(1, 100, initial=40)
    conc.on_overload(0.0)
    assert conc.limit == 36
    store = Store(10_000)  # a flat store: only the remembered overload holds it back

    def report(at: float, latency: float, refused: bool) -> None:
        conc.on_success(at, latency)

    seen: list[int] = []

    def admit(at: float, in_flight: int) -> bool:
        seen.append(conc.limit)
        return conc.acquire_ok(at, in_flight)

    simulate(store, admit, report, 0.5)  # fewer rounds than CALM
    assert max(seen) == 40  # back up to where it was refused, and no further
    seen.clear()
    simulate(store, admit, report, 3.0, start=0.5)  # calm for long: the cap rises
    assert max(seen) > 40


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 4), "ConcurrencyLimit: min must be an int >= 1, got 0"),
        ((4, 2), "ConcurrencyLimit: min must be <= max, got min = 4, max = 2"),
        ((1, 2.0), "ConcurrencyLimit: max must be an int >= 1, got 2.0"),
    ],
)
def test_bad_bounds_are_refused(args: tuple[int, int], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ConcurrencyLimit(*args)
    with pytest.raises(ConfigError, match="initial must be from 1 to 4, got 5"):
        ConcurrencyLimit(1, 4, initial=5)


def test_the_repr_shows_the_limit_its_bounds_and_latencies() -> None:
    conc, _ = warmed(8)
    assert repr(conc).startswith("<ConcurrencyLimit limit=8 (1..8) ")
    assert "min=" in repr(conc)
    assert "ms" in repr(conc)


event = st.tuples(
    st.sampled_from(["acquire", "success", "overload", "timeout", "error"]),
    st.floats(0.0, 0.05),  # time passing before it
    st.floats(0.0, 0.2),  # a latency
    st.integers(0, 300),  # calls in flight
)


@given(
    st.integers(1, 50),
    st.integers(0, 100),
    st.lists(event, max_size=400),
)
def test_the_limit_stays_within_its_bounds_whatever_happens(
    low: int, extra: int, events: list[tuple[str, float, float, int]]
) -> None:
    conc = ConcurrencyLimit(low, low + extra)
    now, ups, downs = 0.0, 0, 0
    for kind, gap, latency, in_flight in events:
        now += gap
        before = conc.limit
        if kind == "acquire":
            assert conc.acquire_ok(now, in_flight) is (in_flight < before)
        elif kind == "success":
            conc.on_success(now, latency)
        else:
            getattr(conc, f"on_{kind}")(now)
        assert low <= conc.limit <= low + extra
        ups += conc.limit > before
        downs += conc.limit < before
        stats = conc.statistics()
        assert (stats.limit, stats.increases, stats.decreases) == (conc.limit, ups, downs)
