"""A lookup join's resilience options, end to end through the runtime.

``on_error`` (skip, dead_letter, default), ``attempt_timeout``, retry on a missing row,
``rate_limit``, ``circuit_breaker`` and ``adaptive``, and their contradictions. The store is
an in-memory fake (the join's collaborator) whose failures, latency and rows are scripted by
virtual time: everything but the errors-file tests runs on looptime's clock, so timelines are
asserted exactly and nothing really sleeps. The real misbehaving store is in
``tests/integration``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest

from asyncwait import ConfigError, HttpStatusError, StreamEnvironment, cache, sinks, sources
from asyncwait.jobfile import parse
from asyncwait.lookups import Row
from asyncwait.retry import MISSING_ROW, fixed_delay
from asyncwait.runtime import JobResult


def now() -> float:
    return asyncio.get_running_loop().time()


class Store:
    """A scripted dimension table: ``user_<i>`` has ``{"age": i}``.

    Args:
        latency: seconds per query.
        down: ``(start, end)``: queries starting in that window raise ``ConnectionError``.
        failing: keys whose every query raises ``ConnectionError``.
        slow_first: the first query of each key takes this long (a slow attempt).
        appear_at: the loop time from which a key's row exists (``late_<i>`` keys).
        throttle_at: the loop times at which a query answers 429 with ``Retry-After: 1``.
    """

    name = "fake:dim_user"

    def __init__(
        self,
        *,
        latency: float = 0.01,
        down: tuple[float, float] | None = None,
        failing: Sequence[str] = (),
        slow_first: float = 0.0,
        appear_at: float = 0.0,
        throttle_at: Sequence[float] = (),
    ) -> None:
        self.latency = latency
        self.down = down
        self.failing = set(failing)
        self.slow_first = slow_first
        self.appear_at = appear_at
        self.throttle_at = list(throttle_at)
        self.started: list[float] = []  # start time of each query
        self.seen: set[Hashable] = set()
        self.in_flight = self.most_in_flight = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _row(self, key: Hashable) -> Row | None:
        text = str(key)
        if text.startswith("late_") and now() < self.appear_at:
            return None
        if text.startswith(("user_", "late_")):
            return {"age": int(text.split("_")[1])}
        return None

    async def get(self, key: Hashable) -> Row | None:
        return (await self.get_many([key]))[key]

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        start = now()
        self.started.append(start)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            latency = self.latency
            if self.slow_first and not self.seen.issuperset(keys):
                latency = self.slow_first
            self.seen.update(keys)
            await asyncio.sleep(latency)
            if self.throttle_at and start >= self.throttle_at[0]:
                self.throttle_at.pop(0)
                msg = "429 Too Many Requests"
                raise HttpStatusError(msg, status=429, url="http://dim/users", retry_after=1.0)
            if self.down is not None and self.down[0] <= start < self.down[1]:
                msg = "connection refused"
                raise ConnectionError(msg)
            if self.failing.intersection(map(str, keys)):
                msg = "the store failed"
                raise ConnectionError(msg)
            return {key: self._row(key) for key in keys}
        finally:
            self.in_flight -= 1


def events(keys: Sequence[str]) -> list[dict[str, Any]]:
    return [{"n": n, "userID": key} for n, key in enumerate(keys)]


async def run(
    store: Store,
    keys: Sequence[str],
    *,
    errors_path: Path | None = None,
    gap: float = 0.0,
    **options: Any,
) -> tuple[JobResult, list[dict[str, Any]]]:
    async def arriving() -> Any:
        for value in events(keys):
            if gap:
                await asyncio.sleep(gap)
            yield value

    env = StreamEnvironment(name="enrich", errors_path=errors_path)
    source = sources.collection(arriving() if gap else events(keys))
    out = (
        env.from_source(source).lookup_join(store, on="userID", **options).sink_to(sinks.collect())
    )
    result = await env.execute_async()
    return result, list(out.values)


def accounted(result: JobResult) -> bool:
    """in = out + errors + skipped + dead letters, for this run and over the runs."""
    run = result.events_in == (
        result.events_out + result.errors + result.skipped + result.dead_letters
    )
    totals = result.totals
    assert totals is not None
    over = totals.events_in == (
        totals.events_out + totals.errors + totals.skipped + totals.dead_letters
    )
    return run and over


# ---------------------------------------------------------------------------------- on_error


async def test_dead_letters_go_to_the_errors_file_with_the_event_and_the_attempts(
    tmp_path: Path,
) -> None:
    keys = [f"user_{i}" if i % 10 else f"broken_{i}" for i in range(100)]
    store = Store(latency=0.0, failing=[k for k in keys if k.startswith("broken")])
    errors = tmp_path / "errors.jsonl"
    result, out = await run(
        store,
        keys,
        errors_path=errors,
        on_error="dead_letter",
        retry=fixed_delay(2, 0.001),
        max_batch_size=1,
    )
    assert sorted(o["n"] for o in out) == [n for n in range(100) if n % 10]
    assert (result.dead_letters, result.skipped, result.errors) == (10, 0, 0)
    assert result.operators[0].dead_letters == 10
    assert accounted(result)
    entries = [json.loads(line) for line in errors.read_text().splitlines()]
    assert sorted(e["event"]["n"] for e in entries) == list(range(0, 100, 10))
    for entry in entries:
        assert entry["kind"] == "lookup_failed"
        assert entry["operator"] == "lookup_join"
        assert entry["attempts"] == 3
        assert entry["reason"] == "ConnectionError: the store failed"
        assert entry["event"]["userID"] == f"broken_{entry['event']['n']}"


@pytest.mark.looptime
async def test_skip_drops_the_event_and_counts_it() -> None:
    keys = ["user_1", "broken_2", "user_3", "broken_4"]
    store = Store(failing=["broken_2", "broken_4"])
    result, out = await run(store, keys, on_error="skip", max_batch_size=1)
    assert [o["n"] for o in sorted(out, key=lambda o: o["n"])] == [0, 2]
    assert (result.skipped, result.dead_letters) == (2, 0)
    assert result.operators[0].skipped == 2
    assert accounted(result)


@pytest.mark.looptime
async def test_default_merges_the_default_row_into_the_event() -> None:
    keys = ["user_1", "broken_2"]
    result, out = await run(
        Store(failing=["broken_2"]),
        keys,
        on_error="default",
        default={"age": -1, "segment": "unknown"},
        mode="ordered",
        max_batch_size=1,
    )
    assert out == [
        {"n": 0, "userID": "user_1", "age": 1},
        {"n": 1, "userID": "broken_2", "age": -1, "segment": "unknown"},
    ]
    assert result.operators[0].defaulted == 1


@pytest.mark.looptime
async def test_without_on_error_a_failed_lookup_still_fails_the_job() -> None:
    with pytest.raises(Exception, match="the store failed"):
        await run(Store(failing=["broken_1"]), ["user_0", "broken_1"], max_batch_size=1)


# ---------------------------------------------------------------------------------- attempts


@pytest.mark.looptime
async def test_attempt_timeout_abandons_a_slow_attempt_and_the_retry_answers() -> None:
    keys = [f"user_{i}" for i in range(20)]
    store = Store(latency=0.01, slow_first=30.0)
    start = now()
    result, out = await run(
        store,
        keys,
        attempt_timeout=0.1,
        timeout=1.0,
        retry=fixed_delay(3, 0.05),
        max_batch_size=1,
    )
    assert sorted(o["age"] for o in out) == list(range(20))
    assert result.operators[0].attempt_timeouts == 20
    assert now() - start == pytest.approx(0.16, abs=0.01)  # 0.1 + 0.05 + 0.01, not 30


@pytest.mark.looptime
async def test_a_missing_row_is_asked_again_until_it_arrives() -> None:
    store = Store(latency=0.01, appear_at=0.2)
    result, out = await run(
        store,
        ["late_7", "nobody_1"],
        retry=fixed_delay(4, 0.1, on_result=MISSING_ROW),
        max_batch_size=1,
        mode="ordered",
    )
    # late_7's row exists from 0.2 s: its third attempt finds it. nobody_1 never has a row:
    # after the last retry it is a normal miss, passed on unchanged by the left join.
    assert out == [{"n": 0, "userID": "late_7", "age": 7}, {"n": 1, "userID": "nobody_1"}]
    assert len(store.started) == 3 + 5
    counters = result.operators[0].counters
    assert (counters["matched"], counters["missed"]) == (1, 2 + 5)
    assert result.operators[0].result_retries == 2 + 4


# ---------------------------------------------------------------------------------- flow control


@pytest.mark.looptime
async def test_rate_limit_spaces_the_queries() -> None:
    store = Store(latency=0.001)
    keys = [f"user_{i}" for i in range(30)]
    result, out = await run(store, keys, rate_limit=10, burst=1, max_batch_size=1)
    assert len(out) == 30
    gaps = [b - a for a, b in zip(store.started, store.started[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.1, abs=1e-6)
    assert store.started[-1] - store.started[0] == pytest.approx(2.9, abs=1e-6)
    assert result.operators[0].counters["rate_limit_waits"] >= 29


@pytest.mark.looptime
async def test_a_429_with_retry_after_pauses_the_rate_limit_and_the_batch_goes_again() -> None:
    store = Store(latency=0.001, throttle_at=[0.5])
    keys = [f"user_{i}" for i in range(20)]
    # No retry: the overloaded answer is not a failure of the lookup, but a pause.
    result, out = await run(store, keys, rate_limit=10, burst=1, max_batch_size=1)
    assert sorted(o["n"] for o in out) == list(range(20))
    throttled = next(t for t in store.started if t >= 0.5)
    after = [t for t in store.started if t > throttled]
    # Nothing is sent for the Retry-After second; then the throttled key first, at the rate.
    assert after[0] == pytest.approx(throttled + 1.001, abs=0.01)
    counters = result.operators[0].counters
    assert (counters["throttled"], counters["slowdowns"], counters["lookup_failed"]) == (1, 1, 0)


@pytest.mark.looptime
async def test_without_a_rate_limit_a_429_is_a_failed_lookup() -> None:
    store = Store(latency=0.001, throttle_at=[0.0])
    result, out = await run(store, ["user_1", "user_2"], max_batch_size=1, on_error="skip")
    assert (len(out), result.skipped) == (1, 1)


@pytest.mark.looptime
async def test_a_circuit_breaker_fails_fast_during_an_outage_and_loses_nothing() -> None:
    store = Store(latency=0.005, down=(1.0, 3.0))
    keys = [f"user_{i}" for i in range(500)]
    result, out = await run(
        store,
        keys,
        gap=0.01,  # one event every 10 ms: 5 s of events, 2 s of them in the outage
        on_error="dead_letter",
        max_batch_size=1,
        circuit_breaker={"failure_ratio": 0.5, "min_calls": 10, "open_for": 0.5},
    )
    during = [t for t in store.started if 1.0 <= t < 3.0]
    # Open after 10 failed calls, then one probe every 0.5 s: far fewer than 200 events.
    assert len(during) <= 10 + 5
    assert result.dead_letters >= 150
    assert len({o["n"] for o in out}) == len(out)  # none twice
    assert len(out) + result.dead_letters == 500
    assert accounted(result)
    assert result.operators[0].counters["breaker_openings"] >= 1
    # Once the store is back, the probe closes the breaker and events are enriched again.
    assert all(o["age"] == int(o["userID"].split("_")[1]) for o in out)
    assert max(o["n"] for o in out) == 499


@pytest.mark.looptime
async def test_adaptive_concurrency_stays_within_its_bounds() -> None:
    store = Store(latency=0.02)
    keys = [f"user_{i}" for i in range(400)]
    result, out = await run(
        store, keys, capacity=100, max_batch_size=1, adaptive={"min": 2, "max": 8}
    )
    assert len(out) == 400
    # The store's latency stays flat, so the limit climbs from min to max, never past it.
    assert store.most_in_flight == 8
    assert result.operators[0].counters["concurrency_limit"] == 8


# ---------------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"default": {"age": -1}}, "default is given but on_error is 'fail'"),
        ({"on_error": "default"}, "on_error 'default' needs default"),
        ({"on_error": "later"}, "on_error must be one of"),
        ({"timeout": 1.0, "attempt_timeout": 1.0}, "attempt_timeout .* must be shorter"),
        ({"capacity": 10, "adaptive": {"min": 1, "max": 20}}, r"adaptive.max must be <= capacity"),
        ({"adaptive": {"min": 9, "max": 3}}, "adaptive.min must be <= adaptive.max"),
        ({"burst": 5}, "rate_limit: missing required field"),
        ({"rate_limit": 0}, "rate_limit must be a number > 0"),
        ({"circuit_breaker": {"failure_ratio": 2, "min_calls": 5, "open_for": 1}}, "failure_ratio"),
        (
            {
                "retry": fixed_delay(2, 0.1, on_result=MISSING_ROW),
                "cache": cache.lru(9, miss_ttl=5),
            },
            "retry on a missing row cannot work with a cache that keeps misses",
        ),
    ],
)
async def test_contradicting_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        await run(Store(), ["user_1"], **options)


JOB = """
[job]
name = "j"
[source]
type = "jsonl"
path = "{events}"
[[lookup]]
type = "sqlite"
path = "{db}"
table = "dim_user"
key = "user_id"
on = "userID"
{extra}
[sink]
type = "jsonl"
path = "out.jsonl"
"""


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("default = { age = -1 }", r'lookup\[0\]\.default: only used with on_error = "default"'),
        ('on_error = "default"', r'lookup\[0\]\.on_error: "default" needs default'),
        ('on_error = "retry"', r"lookup\[0\]\.on_error"),
        ("timeout = 1.0\nattempt_timeout = 2.0", r"lookup\[0\]\.attempt_timeout: must be shorter"),
        ("adaptive = { min = 8, max = 4 }", r"lookup\[0\]\.adaptive\.min must be <="),
        ("capacity = 10\nadaptive = { min = 1, max = 50 }", r"lookup\[0\]\.adaptive: max \(50\)"),
        ("adaptive = { min = 1 }", r"lookup\[0\]\.adaptive\.max: missing required field"),
        ("burst = 10", r"lookup\[0\]\.burst: only used with rate_limit"),
        ("rate_limit = -1", r"lookup\[0\]\.rate_limit must be a number > 0"),
        (
            "circuit_breaker = { failure_ratio = 0.5, min_calls = 0, open_for = 1 }",
            r"lookup\[0\]\.circuit_breaker\.min_calls",
        ),
        (
            'retry = { type = "fixed", max_retries = 0, delay = 0.1, on_miss = true }',
            r"lookup\[0\]\.retry: on_miss needs max_retries >= 1",
        ),
        (
            'retry = { type = "fixed", max_retries = 2, delay = 0.1, on_miss = true }\n'
            'cache = { type = "full" }',
            r"lookup\[0\]\.retry: on_miss cannot work with a cache that keeps misses",
        ),
        (
            'retry = { type = "fixed", max_retries = 2, delay = 0.1, on_miss = "yes" }',
            r"lookup\[0\]\.retry\.on_miss: expected true or false",
        ),
    ],
)
def test_job_file_contradictions_name_the_field(tmp_path: Path, extra: str, match: str) -> None:
    (tmp_path / "events.jsonl").write_text("")
    (tmp_path / "dim.db").write_bytes(b"")
    text = JOB.format(events=tmp_path / "events.jsonl", db=tmp_path / "dim.db", extra=extra)
    with pytest.raises(ConfigError, match=match):
        parse(text, file=tmp_path / "job.toml")


def test_job_file_resilience_fields_are_read(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text("")
    (tmp_path / "dim.db").write_bytes(b"")
    extra = "\n".join(
        [
            'on_error = "default"',
            "default = { age = -1 }",
            "timeout = 2.0",
            "attempt_timeout = 0.5",
            'retry = { type = "fixed", max_retries = 3, delay = 0.2, on_miss = true }',
            "rate_limit = 500.0",
            "burst = 50",
            "adaptive = { min = 4, max = 80 }",
            "circuit_breaker = { failure_ratio = 0.5, min_calls = 20, open_for = 5.0 }",
        ]
    )
    text = JOB.format(events=tmp_path / "events.jsonl", db=tmp_path / "dim.db", extra=extra)
    lookup = parse(text, file=tmp_path / "job.toml").lookups[0]
    res = lookup.resilience
    assert (res.on_error, res.default, res.attempt_timeout) == ("default", {"age": -1}, 0.5)
    assert res.rate_limit is not None
    assert (res.rate_limit.rate, res.rate_limit.burst) == (500.0, 50.0)
    assert res.adaptive is not None
    assert (res.adaptive.min, res.adaptive.max) == (4, 80)
    assert res.circuit_breaker is not None
    assert res.circuit_breaker.open_for == 5.0
    assert lookup.retry is not None
    assert lookup.retry.strategy.on_result is MISSING_ROW
