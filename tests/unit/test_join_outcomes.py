"""What a lookup join's lookups came to: matched, missed, dropped, failed, and what it says.

The invariant: every lookup the join starts ends in exactly one outcome, in every output
mode, with or without a cache, batched or not, whatever fails or times out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asyncwait import (
    AsyncFunction,
    AsyncFunctionError,
    AsyncWaitOperator,
    ClosedError,
    ConfigError,
    Metrics,
    OutputMode,
    Record,
    RuntimeContext,
    StreamElement,
    StreamEnvironment,
    cache,
    retry,
    sinks,
)
from asyncwait.function import Deliver, Pending
from asyncwait.join import LookupJoin
from asyncwait.lookups import Row

KEYS = 8


class MemoryTable:
    """A lookup table in memory whose keys fail (``failures``) or hang (``hanging``)."""

    name = "memory:dim_user"

    def __init__(
        self,
        rows: set[int],
        failures: dict[int, int] | None = None,
        hanging: frozenset[int] = frozenset(),
    ) -> None:
        self.rows = {k: {"age": 20 + k} for k in rows}
        self.failures = dict(failures or {})  # key -> queries of it that still fail
        self.hanging = hanging
        self.asked: list[Hashable] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _answer(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        self.asked += keys
        failing = [k for k in keys if self.failures.get(k)]  # type: ignore[call-overload]
        for key in failing:
            self.failures[key] -= 1  # type: ignore[index]
        if failing:
            msg = f"the store lost keys {failing}"
            raise ConnectionError(msg)
        return {k: self.rows.get(k) for k in keys}  # type: ignore[call-overload]

    async def get(self, key: Hashable) -> Row | None:
        return (await self.get_many([key]))[key]

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        if any(k in self.hanging for k in keys):
            await asyncio.sleep(3600)
        await asyncio.sleep(0.001)
        return self._answer(keys)

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        for key, row in self.rows.items():
            yield key, row


class Counting(AsyncFunction[Any, Any]):
    """The join, counting the lookups the operator starts (a user function of its own)."""

    def __init__(self, join: LookupJoin) -> None:
        self.join = join
        self.started = 0

    async def open(self, context: RuntimeContext) -> None:
        await self.join.open(context)

    async def close(self) -> None:
        await self.join.close()

    async def end_input(self) -> None:
        await self.join.end_input()

    async def async_invoke(self, value: Any) -> list[Any]:
        self.started += 1
        return await self.join.async_invoke(value)

    def key_of(self, value: Any) -> Hashable:
        return self.join.key_of(value)

    def start_call(self, value: Any, deliver: Deliver) -> list[Any] | Pending:
        self.started += 1
        return self.join.start_call(value, deliver)

    def start_keyed(self, key: Hashable, value: Any, deliver: Deliver) -> list[Any] | Pending:
        self.started += 1
        return self.join.start_keyed(key, value, deliver)


@settings(max_examples=150, deadline=None)
@example(  # a query spawned as the operator failed was cancelled before it first ran
    mode=OutputMode.KEY_ORDERED,
    cached="none",
    how="left",
    keys=[1, 0, 0],
    rows=set(),
    failures={0: 1},
    hanging=set(),
    retries=0,
    capacity=3,
    batch=1,
)
@given(
    mode=st.sampled_from(list(OutputMode)),
    cached=st.sampled_from(["none", "lru", "full"]),
    how=st.sampled_from(["left", "inner"]),
    keys=st.lists(st.integers(0, KEYS - 1), min_size=1, max_size=40),
    rows=st.sets(st.integers(0, KEYS - 1)),
    failures=st.dictionaries(st.integers(0, KEYS - 1), st.integers(1, 2), max_size=3),
    hanging=st.sets(st.integers(0, KEYS - 1), max_size=1),
    retries=st.integers(0, 6),
    capacity=st.integers(1, 8),
    batch=st.integers(1, 4),
)
@pytest.mark.looptime
async def test_every_lookup_started_has_exactly_one_outcome(
    mode: OutputMode,
    cached: str,
    how: str,
    keys: list[int],
    rows: set[int],
    failures: dict[int, int],
    hanging: set[int],
    retries: int,
    capacity: int,
    batch: int,
) -> None:
    table = MemoryTable(rows, failures, frozenset(hanging))
    spec = {"none": None, "lru": cache.lru(3, miss_ttl=60), "full": cache.full(None)}[cached]
    join = LookupJoin(table, on="k", how=how, cache=spec, max_batch_size=batch)
    function = Counting(join)
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(
        function,
        mode=mode,
        capacity=capacity,
        timeout=10.0,
        retry=retry.fixed_delay(retries, 0.01),
        key=function.key_of if mode is OutputMode.KEY_ORDERED else None,
        name="lookup[0]:dim_user",
    )
    out: list[StreamElement] = []
    await op.open(out.append)
    failed = None
    try:
        for i, key in enumerate(keys):
            await op.process_element(Record({"k": key, "n": i}))
        await op.end_input()
    except AsyncFunctionError as exc:
        failed = exc
    finally:
        await op.close()

    stats = join.statistics()
    outcomes = (stats.matched, stats.missed, stats.dropped, stats.failed, stats.rejected)
    assert sum(outcomes) == function.started, outcomes
    assert stats.rejected == 0  # every event has a usable key
    counters = op.metrics.snapshot().counters
    assert (
        counters["matched"],
        counters["missed"],
        counters["dropped"],
        counters["lookup_failed"],
    ) == outcomes[:4]
    if cached == "full":
        assert stats.failed == 0  # a full cache answers every key without a query
    if failed is None:
        # Every event ended with a row or without one; each failed attempt was retried.
        assert stats.failed == op.statistics().retries
        assert function.started == len(keys) + op.statistics().retries
        found = sum(key in rows for key in keys)
        assert stats.matched == found
        assert (stats.missed, stats.dropped) == (
            (len(keys) - found, 0) if how == "left" else (0, len(keys) - found)
        )
        assert len(out) == stats.matched + stats.missed
    else:
        assert stats.failed >= 1


async def test_a_timed_out_lookup_counts_as_failed() -> None:
    table = MemoryTable({1})
    gate = asyncio.Event()

    async def held(keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        await gate.wait()
        return table._answer(keys)

    table.get_many = held  # type: ignore[method-assign]
    join = LookupJoin(table, on="k")
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(join, timeout=0.05, name="j")
    await op.open(lambda element: None)
    await op.process_element(Record({"k": 1}))
    with pytest.raises(AsyncFunctionError, match="timed out"):
        await op.end_input()
    await op.close()
    stats = join.statistics()
    assert (stats.matched, stats.missed, stats.failed) == (0, 0, 1)


async def test_a_lookup_started_on_a_closed_join_counts_as_failed() -> None:
    join = LookupJoin(MemoryTable({1}), on="k")
    await join.open(RuntimeContext("j", Metrics("j"), 10))
    await join.close()
    with pytest.raises(ClosedError):
        join.start_call({"k": 1}, lambda handle, outputs, error: None)
    with pytest.raises(ClosedError):
        await join.async_invoke({"k": 1})
    stats = join.statistics()
    assert (stats.matched, stats.missed, stats.failed) == (0, 0, 2)


# --------------------------------------------------------------------------- the warning


async def test_a_join_that_matches_nothing_warns_once_naming_its_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = StreamEnvironment()
    out = (
        env.from_collection([{"userID": i % 50} for i in range(2500)])
        .lookup_join(
            MemoryTable(set()),
            on="userID",
            how="inner",
            cache=cache.lru(10, miss_ttl=60),
            name="lookup[0]:users",
        )
        .sink_to(sinks.collect())
    )
    with caplog.at_level(logging.WARNING, logger="asyncwait.join"):
        result = await env.execute_async()
    assert out.values == []
    (record,) = caplog.records
    assert record.name == "asyncwait.join"
    message = record.getMessage()
    assert message.startswith("lookup[0]:users: lookup join on memory:dim_user: ")
    assert "none of the first 1,000 lookups found a row" in message
    assert "(event field 'userID' is looked up as the table's key)" in message
    (op,) = result.operators
    assert (op.counters["matched"], op.counters["dropped"]) == (0, 2500)


async def test_a_join_that_matched_early_never_warns(caplog: pytest.LogCaptureFixture) -> None:
    events = [{"k": 1}] + [{"k": 2}] * 1500
    env = StreamEnvironment()
    env.from_collection(events).lookup_join(MemoryTable({1}), on="k").sink_to(sinks.collect())
    with caplog.at_level(logging.WARNING, logger="asyncwait.join"):
        await env.execute_async()
    assert caplog.records == []


# --------------------------------------------------------------------------- min_match_ratio


@pytest.mark.parametrize(
    ("ratio", "fails"), [(0.5, True), (0.25, False), (0.0, False), (1, True), (None, False)]
)
async def test_min_match_ratio_fails_the_job_at_the_end_of_input(
    ratio: float | None, fails: bool
) -> None:
    # 1 of 4 events finds a row: a ratio of 0.25.
    env = StreamEnvironment()
    out = (
        env.from_collection([{"k": 1}, {"k": 2}, {"k": 3}, {"k": 2}])
        .lookup_join(MemoryTable({1}), on="k", min_match_ratio=ratio, name="lookup[0]:users")
        .sink_to(sinks.collect())
    )
    if not fails:
        await env.execute_async()
        assert len(out.values) == 4
        return
    with pytest.raises(AsyncFunctionError) as info:
        await env.execute_async()
    assert str(info.value) == (
        f"lookup[0]:users: lookup join on memory:dim_user: matched 1 of 4 events (25.0%), "
        f"below min_match_ratio {ratio:g}"
    )


async def test_min_match_ratio_without_any_lookup_does_not_fail() -> None:
    env = StreamEnvironment()
    out = (
        env.from_collection([])
        .lookup_join(MemoryTable(set()), on="k", min_match_ratio=1.0)
        .sink_to(sinks.collect())
    )
    await env.execute_async()
    assert out.values == []


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True, float("nan")])
def test_min_match_ratio_must_be_a_number_in_0_1(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"min_match_ratio must be a number in \[0, 1\]"):
        LookupJoin(MemoryTable(set()), on="k", min_match_ratio=bad)  # type: ignore[arg-type]
