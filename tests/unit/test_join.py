from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest

import asyncwait
from asyncwait import (
    AsyncFunctionError,
    BadInputError,
    ClosedError,
    ConfigError,
    Metrics,
    RuntimeContext,
    cache,
    lookups,
)
from asyncwait.join import JoinStatistics, JoinType, LookupJoin
from asyncwait.lookups import LookupTable, Row

EVENT = {
    "userID": "user_1",
    "eventTime": "2016-06-06 07:03:42",
    "eventType": "browse",
    "productID": 2,
}


def write(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
    db.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "dim.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER, city TEXT)")
        conn.executemany(
            "INSERT INTO dim_user VALUES (?, ?, ?)",
            [(f"user_{i}", 20 + i, f"city {i}") for i in range(1, 201)],
        )
    conn.close()
    return path


class Recording:
    """Records the calls reaching a real SQLite table; ``gate`` (when set) holds queries."""

    def __init__(self, inner: LookupTable) -> None:
        self.inner = inner
        self.name = inner.name
        self.gets: list[Hashable] = []
        self.get_manys: list[list[Hashable]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()  # a query reached the table
        self.answered = asyncio.Event()  # the table answered a query
        self.closed = False

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        self.closed = True
        await self.inner.close()

    async def get(self, key: Hashable) -> Row | None:
        self.gets.append(key)
        await self._hold()
        row = await self.inner.get(key)
        self.answered.set()
        return row

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        self.get_manys.append(list(keys))
        await self._hold()
        rows = await self.inner.get_many(keys)
        self.answered.set()
        return rows

    def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        return self.inner.scan()

    @property
    def queries(self) -> int:
        return len(self.gets) + len(self.get_manys)

    async def _hold(self) -> None:
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()


def users(db: Path, columns: list[str] | None = ["age"]) -> Recording:  # noqa: B006
    return Recording(lookups.sqlite(db, table="dim_user", key="user_id", columns=columns))


async def opened(join: LookupJoin, metrics: Metrics | None = None) -> Metrics:
    metrics = metrics or Metrics("enrich")
    await join.open(RuntimeContext("enrich", metrics, 100))
    return metrics


async def run(join: LookupJoin, events: list[Any], **options: Any) -> list[Any]:
    return [out async for out in asyncwait.ordered_wait(events, join, **options)]


# ---------------------------------------------------------------------------------- semantics


async def test_the_seed_scenario_enriches_browse_events_with_age(db: Path) -> None:
    join = LookupJoin(users(db), on=lambda e: e["userID"])
    events = [EVENT, {**EVENT, "userID": "user_404"}, {**EVENT, "userID": "user_7"}]
    assert await run(join, events) == [
        {**EVENT, "age": 21},
        {**EVENT, "userID": "user_404"},  # left join: unchanged
        {**EVENT, "userID": "user_7", "age": 27},
    ]


async def test_a_left_join_without_columns_merges_the_whole_row(db: Path) -> None:
    join = LookupJoin(users(db, columns=None), on="userID")
    [out] = await run(join, [EVENT])
    assert out == {**EVENT, "user_id": "user_1", "age": 21, "city": "city 1"}
    assert out is not EVENT
    assert "age" not in EVENT


async def test_a_left_join_miss_emits_the_event_itself(db: Path) -> None:
    join = LookupJoin(users(db), on="userID")
    event = {"userID": "nobody"}
    [out] = await run(join, [event])
    assert out is event


async def test_columns_pick_row_fields_and_fill_misses_with_none(db: Path) -> None:
    join = LookupJoin(users(db, columns=None), on="userID", columns=["age", "email"])
    events = [EVENT, {"userID": "nobody"}]
    assert await run(join, events) == [
        {**EVENT, "age": 21, "email": None},
        {"userID": "nobody", "age": None, "email": None},
    ]


async def test_an_inner_join_drops_events_without_a_row(db: Path) -> None:
    join = LookupJoin(users(db), on="userID", how="inner", columns=["age"])
    events = [{"userID": "nobody"}, EVENT, {"userID": "ghost"}]
    assert await run(join, events) == [{**EVENT, "age": 21}]


async def test_combine_builds_the_output(db: Path) -> None:
    def combine(event: dict[str, Any], row: Row | None) -> tuple[str, int | None]:
        return event["userID"], None if row is None else row["age"]

    left = LookupJoin(users(db), on="userID", combine=combine)
    assert await run(left, [EVENT, {"userID": "nobody"}]) == [("user_1", 21), ("nobody", None)]
    inner = LookupJoin(users(db), on="userID", combine=combine, how=JoinType.INNER)
    assert await run(inner, [EVENT, {"userID": "nobody"}]) == [("user_1", 21)]


async def test_combine_lets_events_be_anything(db: Path) -> None:
    join = LookupJoin(
        users(db), on=lambda e: f"user_{e}", combine=lambda e, row: (e, row and row["age"])
    )
    assert await run(join, [3, 1, 9999]) == [(3, 23), (1, 21), (9999, None)]


@pytest.mark.parametrize(
    ("on", "event", "reason"),
    [
        (lambda e: e["userID"], {"user": "user_1"}, "KeyError: 'userID'"),
        (lambda e: e["userID"], 17, "TypeError"),
        (lambda e: e[3], ["user_1"], "IndexError"),
        (lambda e: e.user_id, {"userID": "user_1"}, "AttributeError"),
        (lambda e: e.get("userID"), {"user": "user_1"}, "is None"),
        (lambda e: e["userID"], {"userID": ["user_1"]}, "unhashable"),
        ("userID", {"user_id": "user_1"}, "KeyError: 'userID'"),
    ],
)
async def test_an_event_without_a_usable_key_is_bad_input(
    db: Path, on: Any, event: Any, reason: str
) -> None:
    table = users(db)
    join = LookupJoin(table, on=on)
    await opened(join)
    try:
        with pytest.raises(BadInputError) as info:
            await join.async_invoke(event)
    finally:
        await join.close()
    message = str(info.value)
    assert repr(event)[:40] in message
    assert reason in message
    assert table.name in message
    assert message.startswith("enrich: lookup join on sqlite:")
    assert info.value.source == f"enrich: lookup join on {table.name}"
    assert table.queries == 0


async def test_bad_input_fails_the_element_in_an_operator(db: Path) -> None:
    join = LookupJoin(users(db), on="userID")
    with pytest.raises(AsyncFunctionError) as info:
        await run(join, [EVENT, {"user": 1}])
    assert isinstance(info.value.__cause__, BadInputError)


async def test_merging_a_row_into_a_non_dict_event_is_bad_input(db: Path) -> None:
    join = LookupJoin(users(db), on=lambda e: e[0])
    await opened(join)
    try:
        with pytest.raises(BadInputError, match=r"event \('user_1',\) is not a dict.*combine="):
            await join.async_invoke(("user_1",))
        assert await join.async_invoke(("nobody",)) == [("nobody",)]  # a miss: unchanged
    finally:
        await join.close()


# ---------------------------------------------------------------------------------- coalescing


async def test_concurrent_lookups_of_one_key_make_one_query(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on="userID")
    metrics = await opened(join)
    try:
        outs = await asyncio.gather(*(join.async_invoke(EVENT) for _ in range(100)))
    finally:
        await join.close()
    assert outs == [[{**EVENT, "age": 21}]] * 100
    assert (table.gets, table.get_manys) == (["user_1"], [])
    assert metrics.counter("lookups") == 1
    assert metrics.counter("coalesced") == 99
    assert join.statistics() == JoinStatistics(
        lookups=1, keys=1, coalesced=99, lookup_errors=0, in_flight=0, cache=None, matched=100
    )


async def test_coalescing_inside_an_operator_at_capacity_100(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on="userID")
    outs = [o async for o in asyncwait.unordered_wait([EVENT] * 100, join, capacity=100)]
    assert outs == [{**EVENT, "age": 21}] * 100
    assert table.queries == 1


async def test_a_query_in_flight_is_shared_until_it_answers(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()
    join = LookupJoin(table, on="userID", cache=cache.lru(10))
    await opened(join)
    try:
        first = asyncio.ensure_future(join.async_invoke(EVENT))
        await table.started.wait()
        assert join.statistics().in_flight == 1
        late = [asyncio.ensure_future(join.async_invoke(EVENT)) for _ in range(5)]
        await asyncio.sleep(0)
        table.gate.set()
        assert await first == [{**EVENT, "age": 21}]
        assert [await f for f in late] == [[{**EVENT, "age": 21}]] * 5
        assert join.statistics().coalesced == 5
        # Answered and cached: the next lookup is a hit.
        assert await join.async_invoke(EVENT) == [{**EVENT, "age": 21}]
        assert table.queries == 1
    finally:
        await join.close()


async def test_misses_of_one_loop_iteration_go_out_in_one_get_many(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on="userID", max_queries=1)
    metrics = await opened(join)  # capacity 100: one batch can hold them all
    events = [{"userID": f"user_{i}"} for i in range(1, 100)] + [{"userID": "nobody"}]
    try:
        outs = await asyncio.gather(*(join.async_invoke(e) for e in events))
    finally:
        await join.close()
    assert outs[:2] == [[{"userID": "user_1", "age": 21}], [{"userID": "user_2", "age": 22}]]
    assert outs[-1] == [{"userID": "nobody"}]
    assert table.gets == []
    assert [len(keys) for keys in table.get_manys] == [100]
    assert metrics.counter("lookups") == 1
    assert metrics.counter("lookup_keys") == 100


async def test_by_default_the_capacitys_keys_are_split_over_two_queries(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on="userID")
    await opened(join)  # capacity 100, two queries in flight: at most 50 keys per batch
    events = [{"userID": f"user_{i}"} for i in range(1, 151)]
    try:
        outs = await asyncio.gather(*(join.async_invoke(e) for e in events))
    finally:
        await join.close()
    assert [o[0]["age"] for o in outs] == [20 + i for i in range(1, 151)]
    assert [len(keys) for keys in table.get_manys] == [50, 50, 50]


async def test_max_batch_bounds_the_keys_per_query(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on="userID", max_batch=40)
    await opened(join)
    events = [{"userID": f"user_{i}"} for i in range(1, 101)]
    try:
        outs = await asyncio.gather(*(join.async_invoke(e) for e in events))
    finally:
        await join.close()
    assert [len(keys) for keys in table.get_manys] == [40, 40, 20]
    assert [o[0]["age"] for o in outs] == [20 + i for i in range(1, 101)]


async def test_max_batch_one_sends_one_get_per_key_all_at_once(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()
    join = LookupJoin(table, on="userID", max_batch=1)
    await opened(join)  # capacity 100: up to 100 queries in flight
    try:
        pending = [
            asyncio.ensure_future(join.async_invoke({"userID": f"user_{i}"})) for i in range(1, 11)
        ]
        await table.started.wait()  # the ten queries start in the same loop iteration
        assert table.gets == [f"user_{i}" for i in range(1, 11)]  # all in flight together
        table.gate.set()
        assert [out for [out] in await asyncio.gather(*pending)][-1] == {
            "userID": "user_10",
            "age": 30,
        }
        await join.async_invoke({"userID": "user_1"})
    finally:
        await join.close()
    assert table.gets == [f"user_{i}" for i in range(1, 11)] + ["user_1"]
    assert table.get_manys == []


async def test_keys_missed_while_a_query_is_in_flight_gather_into_the_next(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()
    join = LookupJoin(table, on="userID", max_queries=1)  # one query in flight at a time
    metrics = await opened(join)
    try:
        first = asyncio.ensure_future(join.async_invoke({"userID": "user_1"}))
        await table.started.wait()
        later = []
        for i in range(2, 7):  # one per loop iteration, all while user_1 is queried
            later.append(asyncio.ensure_future(join.async_invoke({"userID": f"user_{i}"})))
            await asyncio.sleep(0)
        later.append(asyncio.ensure_future(join.async_invoke({"userID": "user_1"})))
        await asyncio.sleep(0)
        assert (table.gets, table.get_manys) == (["user_1"], [])
        assert join.statistics().in_flight == 6
        table.gate.set()
        assert await first == [{"userID": "user_1", "age": 21}]
        assert [out["age"] for [out] in await asyncio.gather(*later)] == [22, 23, 24, 25, 26, 21]
    finally:
        await join.close()
    assert table.get_manys == [[f"user_{i}" for i in range(2, 7)]]
    assert (metrics.counter("lookups"), metrics.counter("lookup_keys")) == (2, 6)
    assert metrics.counter("coalesced") == 1


async def test_max_queries_bounds_the_queries_in_flight(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()
    join = LookupJoin(table, on="userID", max_queries=2)
    await opened(join)
    try:
        pending = []
        for i in range(1, 6):
            pending.append(asyncio.ensure_future(join.async_invoke({"userID": f"user_{i}"})))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert table.gets == ["user_1", "user_2"]
        table.gate.set()
        await asyncio.gather(*pending)
    finally:
        await join.close()
    assert table.get_manys == [["user_3", "user_4", "user_5"]]


async def test_one_unusable_key_does_not_fail_its_batch(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on=lambda e: e["k"])
    metrics = await opened(join)
    events: list[dict[str, Any]] = [{"k": "user_1"}, {"k": (1, 2)}, {"k": "user_2"}]
    try:
        outs = await asyncio.gather(*(join.async_invoke(e) for e in events), return_exceptions=True)
    finally:
        await join.close()
    assert outs[0] == [{"k": "user_1", "age": 21}]
    assert isinstance(outs[1], BadInputError)
    assert "(1, 2)" in str(outs[1])
    assert outs[2] == [{"k": "user_2", "age": 22}]
    assert metrics.counter("lookup_errors") == 0


# ---------------------------------------------------------------------------------- failures


async def test_a_failed_query_fails_every_waiter_and_is_not_cached(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on="userID", cache=cache.lru(100, miss_ttl=60))
    metrics = await opened(join)
    try:
        write(db, "ALTER TABLE dim_user RENAME TO dim_user_old")
        outs = await asyncio.gather(
            *(join.async_invoke(EVENT) for _ in range(3)),
            join.async_invoke({"userID": "user_2"}),
            return_exceptions=True,
        )
        assert all(isinstance(o, sqlite3.OperationalError) for o in outs), outs
        assert "no such table" in str(outs[0])
        assert metrics.counter("lookup_errors") == 1
        assert join.statistics().cache is not None
        assert join.statistics().cache.size == 0  # type: ignore[union-attr]
        write(db, "ALTER TABLE dim_user_old RENAME TO dim_user")
        assert await join.async_invoke(EVENT) == [{**EVENT, "age": 21}]
        assert table.queries == 2
    finally:
        await join.close()


@pytest.mark.looptime
async def test_an_operator_retry_queries_again(db: Path) -> None:
    class BrokenAfterOpen(Recording):
        async def open(self) -> None:
            await super().open()
            write(db, "ALTER TABLE dim_user RENAME TO dim_user_old")

    table = BrokenAfterOpen(lookups.sqlite(db, table="dim_user", key="user_id", columns=["age"]))
    join = LookupJoin(table, on="userID")
    calls = 0

    def fix_table(exc: BaseException) -> bool:
        nonlocal calls
        calls += 1
        write(db, "ALTER TABLE dim_user_old RENAME TO dim_user")
        return isinstance(exc, sqlite3.OperationalError)

    outs = await run(
        join, [EVENT], retry=asyncwait.retry.fixed_delay(1, 2.0, on_exception=fix_table)
    )
    assert outs == [{**EVENT, "age": 21}]
    assert calls == 1
    assert table.queries == 2


async def test_a_cancelled_lookup_leaves_the_others_their_answer(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()
    join = LookupJoin(table, on="userID", cache=cache.lru(10))
    await opened(join)
    try:
        first = asyncio.ensure_future(join.async_invoke(EVENT))
        await table.started.wait()
        second = asyncio.ensure_future(join.async_invoke(EVENT))
        await asyncio.sleep(0)
        first.cancel()  # e.g. its element timed out
        await asyncio.sleep(0)
        table.gate.set()
        assert await second == [{**EVENT, "age": 21}]
        assert first.cancelled()
        assert table.queries == 1
        # A query nobody waits for any more is cancelled, and nothing is cached.
        table.gate.clear()
        table.started.clear()
        lone = asyncio.ensure_future(join.async_invoke({"userID": "user_5"}))
        await table.started.wait()
        lone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await lone
        assert join.statistics().in_flight == 0
        table.gate.set()
        assert await join.async_invoke({"userID": "user_5"}) == [{"userID": "user_5", "age": 25}]
        assert table.gets == ["user_1", "user_5", "user_5"]
    finally:
        await join.close()


async def test_an_abandoned_hung_query_frees_its_slot(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()  # holds every query until set
    join = LookupJoin(table, on="userID")  # one query in flight at a time
    await opened(join)
    try:
        hung = asyncio.ensure_future(join.async_invoke({"userID": "user_1"}))
        await table.started.wait()
        table.gate = None  # later queries answer at once
        later = asyncio.ensure_future(join.async_invoke({"userID": "user_2"}))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert table.gets == ["user_1"]  # user_2 waits for the query slot
        hung.cancel()  # its element timed out
        assert await later == [{"userID": "user_2", "age": 22}]
        assert hung.cancelled()
    finally:
        await join.close()


async def test_a_batch_nobody_waits_for_is_never_sent(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()
    join = LookupJoin(table, on="userID")
    await opened(join)
    try:
        first = asyncio.ensure_future(join.async_invoke({"userID": "user_1"}))
        await table.started.wait()
        gone = asyncio.ensure_future(join.async_invoke({"userID": "user_2"}))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        table.gate.set()
        assert await first == [{"userID": "user_1", "age": 21}]
        assert await join.async_invoke({"userID": "user_3"}) == [{"userID": "user_3", "age": 23}]
    finally:
        await join.close()
    assert (table.gets, table.get_manys) == (["user_1", "user_3"], [])


@pytest.mark.looptime
async def test_timeouts_of_the_operator_cancel_lookups(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()  # never set: every query hangs
    join = LookupJoin(table, on="userID")
    with pytest.raises(AsyncFunctionError) as info:
        await run(join, [EVENT], timeout=5)
    assert isinstance(info.value.__cause__, asyncwait.AsyncTimeoutError)
    assert asyncio.get_running_loop().time() == pytest.approx(5)
    assert table.closed
    assert join.statistics().in_flight == 0


async def test_close_cancels_queries_in_flight_and_closes_the_table(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()
    join = LookupJoin(table, on="userID")
    await opened(join)
    pending = asyncio.ensure_future(join.async_invoke(EVENT))
    await table.started.wait()
    await join.close()
    with pytest.raises(ClosedError, match="closed during the lookup"):
        await pending
    assert table.closed
    assert join.statistics().in_flight == 0
    with pytest.raises(ClosedError, match="not open"):
        await join.async_invoke(EVENT)
    await join.close()  # idempotent


async def test_a_lookup_started_just_before_close_is_refused(db: Path) -> None:
    join = LookupJoin(users(db), on="userID")
    await opened(join)
    pending = asyncio.ensure_future(join.async_invoke(EVENT))
    await asyncio.sleep(0)  # its key waits for the batch to be sent on the next iteration
    await join.close()
    with pytest.raises(ClosedError, match="was closed"):
        await pending
    assert join.statistics().lookups == 0


# ---------------------------------------------------------------------------------- caches


async def test_an_lru_cache_answers_repeated_keys(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on="userID", cache=cache.lru(100, miss_ttl=60))
    metrics = await opened(join)
    try:
        for _ in range(3):
            assert await join.async_invoke(EVENT) == [{**EVENT, "age": 21}]
            assert await join.async_invoke({"userID": "nobody"}) == [{"userID": "nobody"}]
    finally:
        await join.close()
    assert table.queries == 2
    counters = metrics.snapshot().counters
    assert (counters["cache_hits"], counters["cache_misses"], counters["lookups"]) == (4, 2, 2)
    assert counters["cache_loads"] == 2
    assert metrics.snapshot().gauges["cache_size"] == 0  # cleared by close


@pytest.mark.looptime
async def test_lru_ttl_expiry_queries_again_in_virtual_time(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on="userID", cache=cache.lru(100, ttl=300))
    await opened(join)
    try:
        await join.async_invoke(EVENT)
        await asyncio.sleep(299)
        await join.async_invoke(EVENT)
        assert table.queries == 1
        write(db, "UPDATE dim_user SET age = 99 WHERE user_id = 'user_1'")
        await asyncio.sleep(1)
        assert await join.async_invoke(EVENT) == [{**EVENT, "age": 99}]
        assert table.queries == 2
    finally:
        await join.close()


async def test_a_full_cache_never_queries(db: Path) -> None:
    table = users(db)
    join = LookupJoin(table, on="userID", cache=cache.full(600))
    metrics = await opened(join)
    try:
        assert await join.async_invoke(EVENT) == [{**EVENT, "age": 21}]
        assert await join.async_invoke({"userID": "nobody"}) == [{"userID": "nobody"}]
        stats = join.statistics()
    finally:
        await join.close()
    assert table.queries == 0
    assert stats.cache is not None
    assert (stats.cache.size, stats.cache.loads, stats.cache.hits, stats.cache.misses) == (
        200,
        1,
        1,
        1,
    )
    assert metrics.counter("cache_loads") == 1
    assert [t for t in asyncio.all_tasks() if "reload" in t.get_name()] == []


async def test_a_full_cache_through_an_operator(db: Path) -> None:
    join = LookupJoin(users(db), on="userID", cache=cache.full(60), how="inner")
    events = [{"userID": f"user_{i}"} for i in range(195, 205)]
    outs = [o async for o in asyncwait.unordered_wait(events, join, capacity=4)]
    assert sorted(o["age"] for o in outs) == [215, 216, 217, 218, 219, 220]


# ---------------------------------------------------------------------------------- lifecycle


async def test_open_fails_with_the_tables_config_error_and_closes_it(tmp_path: Path) -> None:
    join = LookupJoin(lookups.sqlite(tmp_path / "nope.db", table="t", key="k"), on="k")
    with pytest.raises(ConfigError, match="does not exist"):
        await opened(join)
    with pytest.raises(ClosedError, match="state new"):
        await join.async_invoke({"k": 1})


async def test_a_failing_initial_cache_load_closes_the_table(db: Path) -> None:
    table = users(db)
    table.inner = lookups.sqlite(db, table="dim_user", key="user_id")
    join = LookupJoin(table, on="userID", cache=cache.full(60))

    async def broken_scan() -> AsyncIterator[tuple[Hashable, Row]]:
        raise sqlite3.OperationalError("disk I/O error")
        yield  # pragma: no cover - makes this an async generator

    table.scan = broken_scan  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        await opened(join)
    assert table.closed


async def test_open_twice_is_an_error(db: Path) -> None:
    join = LookupJoin(users(db), on="userID")
    await opened(join)
    try:
        with pytest.raises(RuntimeError, match="already open"):
            await opened(join)
    finally:
        await join.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"on": "userID", "how": "outer"}, ConfigError, "how must be 'left' or 'inner'"),
        ({"on": 5}, TypeError, "on must be a callable or a field name"),
        ({"on": "userID", "combine": "merge"}, TypeError, "combine must be callable"),
        ({"on": "userID", "cache": "lru"}, TypeError, "cache must be a spec"),
        ({"on": "userID", "columns": "age"}, ConfigError, "columns must be a list"),
        ({"on": "userID", "columns": ["age", 1]}, ConfigError, "columns must be a list"),
        ({"on": "userID", "max_batch": 0}, ConfigError, "max_batch must be an int >= 1"),
        ({"on": "userID", "max_queries": 0}, ConfigError, "max_queries must be an int >= 1"),
        ({"on": "userID", "max_batch": True}, ConfigError, "max_batch must be an int >= 1"),
    ],
)
def test_arguments_are_checked_at_construction(
    db: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        LookupJoin(users(db), **kwargs)


def test_the_table_must_be_a_lookup_table() -> None:
    with pytest.raises(TypeError, match="table must be a lookup table"):
        LookupJoin("dim.db", on="userID")  # type: ignore[arg-type]


async def test_repr_and_statistics_show_live_state(db: Path) -> None:
    table = users(db)
    table.gate = asyncio.Event()
    join = LookupJoin(table, on="userID", cache=cache.lru(10))
    assert repr(join) == (
        f"<LookupJoin {table.name!r} left new in-flight=0 lookups=0 coalesced=0 matched=0 "
        "missed=0 dropped=0 failed=0 cache=LruSpec(max_size=10, ttl=None, miss_ttl=None)>"
    )
    await opened(join)
    try:
        pending = [asyncio.ensure_future(join.async_invoke(EVENT)) for _ in range(3)]
        await table.started.wait()
        assert repr(join).startswith(
            f"<LookupJoin {table.name!r} left open in-flight=1 lookups=1 coalesced=2 matched=0 "
            "missed=0 dropped=0 failed=0 cache=<LruCache 0/10"
        )
        table.gate.set()
        await asyncio.gather(*pending)
        stats = join.statistics()
        assert (stats.lookups, stats.keys, stats.coalesced, stats.in_flight) == (1, 1, 2, 0)
        assert stats.cache is not None
        assert (stats.cache.misses, stats.cache.loads, stats.cache.size) == (3, 1, 1)
        assert join.table is table
    finally:
        await join.close()
