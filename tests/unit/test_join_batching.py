"""Micro-batching of lookup-join misses: ``max_batch_size`` and ``max_batch_wait``.

The table is an in-memory fake (the join's collaborator) that records each query with the
loop's time; everything runs on looptime's virtual clock, so the timeline is asserted
exactly and nothing really sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

import pytest

import asyncwait
from asyncwait import (
    AsyncFunctionError,
    AsyncTimeoutError,
    BadInputError,
    ClosedError,
    ConfigError,
    LookupFailedError,
    Metrics,
    RuntimeContext,
    StreamEnvironment,
    sinks,
)
from asyncwait.jobfile import parse
from asyncwait.join import LookupJoin
from asyncwait.lookups import Row
from asyncwait.retry import exception_type, fixed_delay

pytestmark = pytest.mark.looptime

WAIT = 0.05  # seconds a batch waits for more keys


def now() -> float:
    return asyncio.get_running_loop().time()


class Table:
    """A dict-backed lookup table recording ``(time, keys)`` of every query.

    ``latency`` is each query's duration (virtual time); ``fail_first`` queries raise
    ``ConnectionError``; the key ``"bad"`` is bad input, alone or in a batch; the key
    ``"garbled"`` has a stored row the table cannot read (``LookupFailedError``).
    """

    name = "fake:dim_user"

    def __init__(self, *, latency: float = 0.0, fail_first: int = 0) -> None:
        self.rows: dict[Hashable, Row] = {f"user_{i}": {"age": 20 + i} for i in range(1, 101)}
        self.queries: list[tuple[float, list[Hashable]]] = []
        self.latency = latency
        self.fail_first = fail_first
        self.expected_queries: int | None = None

    def expect_queries(self, queries: int) -> None:
        self.expected_queries = queries

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def _query(self, keys: list[Hashable]) -> None:
        self.queries.append((now(), keys))
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fail_first > 0:
            self.fail_first -= 1
            msg = "lost the connection"
            raise ConnectionError(msg)
        if "bad" in keys:
            msg = f"{self.name}: key 'bad' cannot be used"
            raise BadInputError(msg, source=self.name)
        if "garbled" in keys:
            msg = f"{self.name}: the row of key 'garbled' is not JSON"
            raise LookupFailedError(msg, table=self.name)

    async def get(self, key: Hashable) -> Row | None:
        await self._query([key])
        return self.rows.get(key)

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        await self._query(list(keys))
        return {k: self.rows.get(k) for k in keys}

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        for item in self.rows.items():
            yield item

    @property
    def sizes(self) -> list[int]:
        return [len(keys) for _, keys in self.queries]

    @property
    def times(self) -> list[float]:
        return [round(t, 6) for t, _ in self.queries]


async def opened(join: LookupJoin, capacity: int = 100) -> None:
    await join.open(RuntimeContext("enrich", Metrics("enrich"), capacity))


async def arrivals(users: list[int], gap: float) -> AsyncIterator[dict[str, Any]]:
    """Events for ``user_<i>``, one every ``gap`` seconds (virtual)."""
    for i, user in enumerate(users):
        if i:
            await asyncio.sleep(gap)
        yield {"userID": f"user_{user}", "n": i}


# ---------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_batch_wait": -0.1}, "max_batch_wait must be a number of seconds >= 0, got -0.1"),
        ({"max_batch_wait": float("nan")}, "max_batch_wait must be a number"),
        ({"max_batch_wait": float("inf")}, "max_batch_wait must be a number"),
        ({"max_batch_wait": True}, "max_batch_wait must be a number"),
        ({"max_batch_wait": "1s"}, "max_batch_wait must be a number"),
        ({"max_batch_size": 0}, "max_batch_size must be an int >= 1, got 0"),
        ({"max_batch_size": 2.5}, "max_batch_size must be an int >= 1, got 2.5"),
        ({"max_batch_size": 10, "max_batch": 20}, "max_batch is the old name of max_batch_size"),
    ],
)
def test_batch_options_are_checked(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LookupJoin(Table(), on="userID", **options)


async def test_max_batch_is_still_accepted_as_the_old_name() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", max_batch=3, max_batch_size=3)
    await opened(join)
    try:
        await asyncio.gather(*(join.async_invoke({"userID": f"user_{i}"}) for i in range(7)))
    finally:
        await join.close()
    assert table.sizes == [3, 3, 1]


async def test_the_join_tells_a_pooled_table_how_many_queries_it_runs() -> None:
    batched, unbatched = Table(), Table()
    await opened(LookupJoin(batched, on="userID"), capacity=40)
    await opened(LookupJoin(unbatched, on="userID", max_batch_size=1), capacity=40)
    assert (batched.expected_queries, unbatched.expected_queries) == (2, 40)


# ---------------------------------------------------------------------------------- timeline


async def test_without_a_wait_a_lone_miss_is_sent_at_once() -> None:
    table = Table()
    join = LookupJoin(table, on="userID")
    outs = [out async for out in asyncwait.ordered_wait(arrivals([1, 2, 3], 0.01), join)]
    assert [o["age"] for o in outs] == [21, 22, 23]
    assert table.times == [0.0, 0.01, 0.02]
    assert table.sizes == [1, 1, 1]


async def test_a_batch_waits_max_batch_wait_for_more_keys() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", max_batch_wait=WAIT)
    events = arrivals([1, 2, 3, 4, 5, 6], 0.02)  # at 0, .02, .04 | .06, .08, .10
    outs = [out async for out in asyncwait.unordered_wait(events, join)]
    assert sorted(o["age"] for o in outs) == [21, 22, 23, 24, 25, 26]
    # The first batch opens at 0 and leaves at 0.05; the next opens at 0.06, leaves at 0.11.
    assert table.times == [0.05, 0.11]
    assert [keys for _, keys in table.queries] == [
        ["user_1", "user_2", "user_3"],
        ["user_4", "user_5", "user_6"],
    ]


async def test_a_full_batch_leaves_before_its_wait_is_over() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", max_batch_size=4, max_batch_wait=10.0)
    await opened(join)
    try:
        outs = await asyncio.gather(
            *(join.async_invoke({"userID": f"user_{i}"}) for i in range(1, 10))
        )
    finally:
        await join.close()
    assert [o["age"] for [o] in outs] == [20 + i for i in range(1, 10)]
    assert table.sizes == [4, 4, 1]
    assert table.times == [0.0, 0.0, 10.0]  # the last, not full, waited its 10 s


async def test_a_batch_keeps_gathering_while_the_query_slot_is_busy() -> None:
    table = Table(latency=0.2)  # one query at a time, each 0.2 s
    join = LookupJoin(table, on="userID", max_batch_wait=WAIT, max_queries=1)
    outs = [out async for out in asyncwait.ordered_wait(arrivals(list(range(1, 13)), 0.03), join)]
    assert [o["age"] for o in outs] == [20 + i for i in range(1, 13)]
    # 1st batch: keys at 0, .03 -> sent at .05, busy until .25; meanwhile keys at .06 ..
    # .24 gather (their wait ended at .11) and go at .25; the rest at .45.
    assert table.times == [0.05, 0.25, 0.45]
    assert table.sizes == [2, 7, 3]


async def test_misses_of_one_key_share_the_waiting_batch() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", max_batch_wait=WAIT)
    events = arrivals([1, 1, 2, 1], 0.01)
    outs = [out async for out in asyncwait.ordered_wait(events, join)]
    assert [o["userID"] for o in outs] == ["user_1", "user_1", "user_2", "user_1"]
    assert [keys for _, keys in table.queries] == [["user_1", "user_2"]]
    assert join.statistics().coalesced == 2


# ---------------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mode", ["ordered", "unordered", "key_ordered"])
async def test_every_mode_batches_with_capacity_and_keeps_its_order(mode: str) -> None:
    table = Table(latency=0.1)
    join = LookupJoin(table, on="userID", max_batch_size=8, max_batch_wait=WAIT)
    users = [i % 20 + 1 for i in range(60)]  # 20 keys, each 3 times
    source = arrivals(users, 0.01)
    if mode == "ordered":
        stream = asyncwait.ordered_wait(source, join, capacity=10)
    elif mode == "unordered":
        stream = asyncwait.unordered_wait(source, join, capacity=10)
    else:
        stream = asyncwait.key_ordered_wait(source, join, key=lambda e: e["userID"], capacity=10)
    outs = [out async for out in stream]
    assert sorted(o["n"] for o in outs) == list(range(60))
    assert all(o["age"] == 20 + int(o["userID"][5:]) for o in outs)
    if mode == "ordered":
        assert [o["n"] for o in outs] == list(range(60))
    if mode == "key_ordered":
        for user in range(1, 21):
            ns = [o["n"] for o in outs if o["userID"] == f"user_{user}"]
            assert ns == sorted(ns)
    assert max(table.sizes) <= 8
    assert len(table.queries) < 60  # batched: fewer queries than events


async def test_dataflow_lookup_join_takes_the_batch_options() -> None:
    table = Table()
    env = StreamEnvironment(name="batching")
    events = [{"userID": f"user_{i}"} for i in range(1, 21)]
    out = (
        env.from_collection(events)
        .lookup_join(table, on="userID", max_batch_size=5, max_batch_wait=WAIT, capacity=20)
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert result.errors == 0
    assert sorted(e["age"] for e in out.values) == [20 + i for i in range(1, 21)]
    assert max(table.sizes) <= 5


def test_dataflow_lookup_join_checks_the_batch_options() -> None:
    env = StreamEnvironment(name="batching")
    with pytest.raises(ConfigError, match="max_batch_wait"):
        env.from_collection([]).lookup_join(Table(), on="userID", max_batch_wait=-1)


# ---------------------------------------------------------------------------------- faults


async def test_a_timeout_shorter_than_the_wait_calls_the_timeout_hook_and_sends_nothing() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", max_batch_wait=10.0)

    class WithFallback(asyncwait.AsyncFunction[Any, Any]):
        async def open(self, context: RuntimeContext) -> None:
            await join.open(context)

        async def close(self) -> None:
            await join.close()

        async def async_invoke(self, value: Any) -> list[Any]:
            return await join.async_invoke(value)

        def timeout(self, value: Any) -> list[Any]:
            return [{**value, "age": None, "timed_out": now()}]

    events = [{"userID": "user_1"}, {"userID": "user_2"}]
    outs = [out async for out in asyncwait.ordered_wait(events, WithFallback(), timeout=1.0)]
    assert outs == [
        {"userID": "user_1", "age": None, "timed_out": 1.0},
        {"userID": "user_2", "age": None, "timed_out": 1.0},
    ]
    assert table.queries == []  # the batch nobody waited for any more was dropped
    assert join.statistics().in_flight == 0


async def test_the_operator_timeout_covers_the_wait() -> None:
    table = Table(latency=0.5)
    join = LookupJoin(table, on="userID", max_batch_wait=0.6)
    with pytest.raises(AsyncFunctionError) as info:
        async for _ in asyncwait.unordered_wait([{"userID": "user_1"}], join, timeout=1.0):
            pass
    assert isinstance(info.value.__cause__, AsyncTimeoutError)
    assert table.times == [0.6]  # sent after its wait, then timed out mid-query at 1.0
    assert now() == pytest.approx(1.0)


async def test_a_retry_batches_the_retried_keys_again() -> None:
    table = Table(fail_first=1)
    join = LookupJoin(table, on="userID", max_batch_wait=WAIT)
    policy = fixed_delay(2, 0.5, on_exception=exception_type(ConnectionError))
    events = arrivals([1, 2, 3], 0.01)
    outs = [out async for out in asyncwait.ordered_wait(events, join, retry=policy)]
    assert [o["age"] for o in outs] == [21, 22, 23]
    # Batch [1, 2, 3] fails at 0.05; each element retries 0.5 s later (0.55, 0.56, 0.57):
    # one new batch, opened at 0.55, sent at 0.60.
    assert table.times == [0.05, 0.6]
    assert table.sizes == [3, 3]


async def test_a_bad_key_fails_alone_and_its_batch_mates_get_their_rows() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", max_batch_wait=WAIT)
    await opened(join)
    try:
        outs = await asyncio.gather(
            *(join.async_invoke({"userID": u}) for u in ["user_1", "bad", "user_2"]),
            return_exceptions=True,
        )
    finally:
        await join.close()
    assert outs[0] == [{"userID": "user_1", "age": 21}]
    assert isinstance(outs[1], BadInputError)
    assert outs[2] == [{"userID": "user_2", "age": 22}]
    # The batch, then each key alone at the same instant.
    assert [keys for _, keys in table.queries] == [
        ["user_1", "bad", "user_2"],
        ["user_1"],
        ["bad"],
        ["user_2"],
    ]
    assert table.times == [WAIT] * 4


async def test_a_row_the_table_cannot_read_fails_its_batch_once() -> None:
    # Not bad input: the batch is not asked again key by key (each key once per attempt).
    table = Table()
    join = LookupJoin(table, on="userID", max_batch_wait=WAIT)
    await opened(join)
    try:
        outs = await asyncio.gather(
            *(join.async_invoke({"userID": u}) for u in ["user_1", "garbled", "user_2"]),
            return_exceptions=True,
        )
    finally:
        await join.close()
    assert all(isinstance(out, LookupFailedError) for out in outs)
    assert [keys for _, keys in table.queries] == [["user_1", "garbled", "user_2"]]
    stats = join.statistics()
    assert (stats.lookups, stats.lookup_errors, stats.failed, stats.rejected) == (1, 1, 3, 0)


async def test_in_a_dataflow_a_row_the_table_cannot_read_fails_the_job() -> None:
    table = Table()
    env = StreamEnvironment(name="batching")
    events = [{"userID": u} for u in ["user_1", "garbled", "user_2"]]
    policy = fixed_delay(2, 0.5)
    env.from_collection(events).lookup_join(
        table, on="userID", max_batch_wait=WAIT, retry=policy
    ).sink_to(sinks.collect())
    with pytest.raises(AsyncFunctionError) as info:
        await env.execute_async()
    assert isinstance(info.value.__cause__, LookupFailedError)
    # Every attempt asked each of its keys once: 3 attempts, never a key on its own.
    assert [sorted(map(str, keys)) for _, keys in table.queries] == [
        ["garbled", "user_1", "user_2"]
    ] * 3


async def test_in_a_dataflow_a_bad_key_is_one_error_and_the_rest_flows() -> None:
    table = Table()
    env = StreamEnvironment(name="batching")
    events = [{"userID": u} for u in ["user_1", "bad", "user_2", "user_3"]]
    out = (
        env.from_collection(events)
        .lookup_join(table, on="userID", max_batch_wait=WAIT)
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert result.errors == 1
    assert sorted(e["age"] for e in out.values) == [21, 22, 23]


async def test_close_fails_the_lookups_of_a_waiting_batch() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", max_batch_wait=10.0)
    await opened(join)
    pending = asyncio.ensure_future(join.async_invoke({"userID": "user_1"}))
    await asyncio.sleep(1.0)
    await join.close()
    with pytest.raises(ClosedError):
        await pending
    await asyncio.sleep(20.0)  # its timer was cancelled: nothing is sent later
    assert table.queries == []


async def test_a_waiting_batch_nobody_waits_for_is_never_sent() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", max_batch_wait=10.0)
    await opened(join)
    try:
        gone = asyncio.ensure_future(join.async_invoke({"userID": "user_1"}))
        await asyncio.sleep(1.0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert await join.async_invoke({"userID": "user_2"}) == [{"userID": "user_2", "age": 22}]
        assert now() == pytest.approx(11.0)
    finally:
        await join.close()
    assert [keys for _, keys in table.queries] == [["user_2"]]


# ---------------------------------------------------------------------------------- job file

JOB = """
[job]
name = "batching"
[source]
type = "stdin"
[[lookup]]
type = "mysql"
dsn = "mysql://app:secret@127.0.0.1:3306/shop"
table = "dim_user"
key = "user_id"
on = "userID"
{options}
[sink]
type = "stdout"
"""


def test_job_file_batch_fields() -> None:
    spec = parse(JOB.format(options="max_batch_size = 8\nmax_batch_wait = 0.01"))
    assert (spec.lookups[0].max_batch_size, spec.lookups[0].max_batch_wait) == (8, 0.01)
    spec = parse(JOB.format(options=""))
    assert (spec.lookups[0].max_batch_size, spec.lookups[0].max_batch_wait) == (None, 0.0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ("max_batch_size = 0", r"lookup\[0\]\.max_batch_size: must be >= 1, got 0"),
        ("max_batch_size = 2.5", r"lookup\[0\]\.max_batch_size: expected an integer"),
        ("max_batch_wait = -1", r"lookup\[0\]\.max_batch_wait: must be >= 0"),
        ("max_batch_wait = 'soon'", r"lookup\[0\]\.max_batch_wait: expected a number"),
        ("max_batch_siz = 3", r"unknown key; did you mean 'max_batch_size'"),
    ],
)
def test_job_file_batch_fields_are_checked(options: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse(JOB.format(options=options))


async def test_a_batch_leaves_early_when_the_whole_capacity_waits_for_it() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", max_batch_wait=10.0, max_queries=1)
    events = [{"userID": f"user_{i}"} for i in range(1, 9)]
    outs = [out async for out in asyncwait.ordered_wait(events, join, capacity=4)]
    assert [o["age"] for o in outs] == [20 + i for i in range(1, 9)]
    # Four elements fill the operator and all wait for the batch: no fifth key can come.
    assert table.times == [0.0, 0.0]
    assert table.sizes == [4, 4]


async def test_by_default_two_batches_share_the_capacity_and_overlap() -> None:
    # Capacity 4 and two query slots: batches of at most 2 keys, two in flight together,
    # so the table answers one while the other's answer is handed out.
    table = Table(latency=0.1)
    join = LookupJoin(table, on="userID")
    events = [{"userID": f"user_{i}"} for i in range(1, 13)]
    outs = [out async for out in asyncwait.ordered_wait(events, join, capacity=4)]
    assert [o["age"] for o in outs] == [20 + i for i in range(1, 13)]
    assert table.sizes == [2, 2, 2, 2, 2, 2]
    assert table.times == [0.0, 0.0, 0.1, 0.1, 0.2, 0.2]
    assert join.statistics().lookups == 6
