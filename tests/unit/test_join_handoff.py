"""The operator's callback path into a lookup join (``LookupJoin.start_call``).

Inside an operator a lookup join hands its outcomes to the operator through a callback
instead of a coroutine per element; the other join tests mostly call ``async_invoke``
directly. These run the same situations through the operator, and check that both paths
produce the same outputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asyncwait
from asyncwait import (
    AsyncFunction,
    AsyncFunctionError,
    AsyncWaitOperator,
    BadInputError,
    OutputMode,
    Record,
    RuntimeContext,
    StreamElement,
    StreamEnvironment,
    Watermark,
    cache,
    sinks,
    sources,
)
from asyncwait.join import LookupJoin
from asyncwait.lookups import Row
from tests.helpers import settle

ROWS = {f"user_{i}": {"age": 20 + i} for i in range(1, 9)}


class Table:
    """An in-memory lookup table; ``holds[key]`` (an event) holds queries of ``key``."""

    name = "memory:dim_user"

    def __init__(self, delays: dict[Hashable, int] | None = None) -> None:
        self.holds: dict[Hashable, asyncio.Event] = {}
        self.delays = delays or {}  # key -> loop iterations its queries take
        self.queries: list[list[Hashable]] = []
        self.cancelled = 0
        self.closed = False

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    async def get(self, key: Hashable) -> Row | None:
        return (await self.get_many([key]))[key]

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        self.queries.append(list(keys))
        try:
            for key in keys:
                hold = self.holds.get(key)
                if hold is not None:
                    await hold.wait()
            for _ in range(max((self.delays.get(k, 0) for k in keys), default=0)):
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return {key: ROWS.get(str(key)) for key in keys}

    def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        raise NotImplementedError


class CoroutineOnly(AsyncFunction[Any, Any]):
    """Wraps a join so the operator can only call ``async_invoke`` (the coroutine path)."""

    def __init__(self, join: LookupJoin) -> None:
        self.join = join

    async def open(self, context: RuntimeContext) -> None:
        await self.join.open(context)

    async def close(self) -> None:
        await self.join.close()

    async def async_invoke(self, value: Any) -> list[Any]:
        return await self.join.async_invoke(value)


def event(user: str, n: int = 0) -> dict[str, Any]:
    return {"userID": user, "n": n}


def enriched(user: str, n: int = 0) -> dict[str, Any]:
    row = ROWS.get(user)
    return {**event(user, n), **row} if row is not None else event(user, n)


async def test_the_operator_takes_the_callback_path(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_coroutines(self: LookupJoin, value: Any) -> list[Any]:
        raise AssertionError("the operator called async_invoke")

    monkeypatch.setattr(LookupJoin, "async_invoke", no_coroutines)
    table = Table()
    join = LookupJoin(table, on="userID", cache=cache.lru(100))
    users = ["user_1", "user_2", "user_1", "nobody", "user_3", "user_1"]
    events = [event(u, i) for i, u in enumerate(users)]
    outs = [o async for o in asyncwait.ordered_wait(events, join)]
    assert outs == [enriched(u, i) for i, u in enumerate(users)]
    assert table.queries == [["user_1", "user_2", "nobody", "user_3"]]


@pytest.mark.looptime
async def test_a_timed_out_lookup_leaves_its_shared_query_to_the_others() -> None:
    table = Table()
    table.holds["user_1"] = hold = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(7, hold.set)

    join = LookupJoin(table, on="userID")
    timed_out: list[Any] = []

    def on_timeout(value: Any) -> list[Any]:
        timed_out.append((loop.time(), value))
        return [{"timed_out": value["n"]}]

    join.timeout = on_timeout  # type: ignore[method-assign]

    async def events() -> AsyncIterator[dict[str, Any]]:
        yield event("user_1", 0)
        await asyncio.sleep(3)
        yield event("user_1", 1)  # joins the query in flight

    outs = [o async for o in asyncwait.ordered_wait(events(), join, timeout=5)]
    assert outs == [{"timed_out": 0}, enriched("user_1", 1)]
    assert timed_out == [(pytest.approx(5), event("user_1", 0))]
    assert loop.time() == pytest.approx(7)
    assert table.queries == [["user_1"]]
    assert table.cancelled == 0
    assert join.statistics().coalesced == 1


@pytest.mark.looptime
async def test_a_timeout_cancels_a_query_nobody_waits_for_and_frees_its_slot() -> None:
    table = Table()
    table.holds["user_1"] = asyncio.Event()  # never set: this query hangs
    join = LookupJoin(table, on="userID", max_queries=1)
    join.timeout = lambda value: [None]  # type: ignore[method-assign]

    async def events() -> AsyncIterator[dict[str, Any]]:
        yield event("user_1")
        await asyncio.sleep(1)
        yield event("user_2")  # waits for the query slot the hung query holds

    loop = asyncio.get_running_loop()
    seen: list[tuple[float, Any]] = []
    async for out in asyncwait.unordered_wait(events(), join, timeout=5):
        seen.append((loop.time(), out))
    assert [out for _, out in seen] == [None, enriched("user_2")]
    assert [at for at, _ in seen] == [pytest.approx(5), pytest.approx(5)]
    assert table.queries == [["user_1"], ["user_2"]]
    assert table.cancelled == 1
    assert join.statistics().in_flight == 0


async def test_closing_the_operator_with_lookups_pending_closes_the_table() -> None:
    table = Table()
    table.holds["user_2"] = asyncio.Event()  # never set
    join = LookupJoin(table, on="userID", max_batch_size=1)
    stream = asyncwait.unordered_wait([event("user_1"), event("user_2")], join)
    outs = []
    async for out in stream:
        outs.append(out)
        break  # leaves user_2's lookup pending
    await stream.aclose()  # type: ignore[attr-defined]
    assert outs == [enriched("user_1")]
    assert table.closed
    assert table.cancelled == 1
    assert join.statistics().in_flight == 0


async def test_a_row_that_cannot_be_merged_fails_its_element() -> None:
    join = LookupJoin(Table(), on=lambda e: e[0])
    with pytest.raises(AsyncFunctionError) as info:
        [o async for o in asyncwait.ordered_wait([("nobody",), ("user_1",)], join)]
    cause = info.value.__cause__
    assert isinstance(cause, BadInputError)
    assert "event ('user_1',) is not a dict" in str(cause)
    assert info.value.record is not None
    assert info.value.record.value == ("user_1",)


@pytest.mark.looptime
async def test_a_result_retry_asks_the_table_again() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", how="inner")
    attempts: list[Any] = []

    def again(outputs: Any) -> bool:
        attempts.append(outputs)
        return len(attempts) == 1

    strategy = asyncwait.retry.fixed_delay(2, 1.0, on_result=again)
    outs = [o async for o in asyncwait.ordered_wait([event("user_1")], join, retry=strategy)]
    assert outs == [enriched("user_1")]
    assert len(attempts) == 2
    assert table.queries == [["user_1"], ["user_1"]]


# -------------------------------------------------------------- both paths agree (hypothesis)

MODES: dict[str, Callable[..., AsyncIterator[Any]]] = {
    "ordered": asyncwait.ordered_wait,
    "unordered": asyncwait.unordered_wait,
    "key_ordered": lambda events, fn, **kw: asyncwait.key_ordered_wait(
        events, fn, key=lambda e: e["userID"], **kw
    ),
}


async def collect(
    mode: str, events: Iterable[Any], function: Any, capacity: int
) -> list[dict[str, Any]]:
    return [o async for o in MODES[mode](list(events), function, capacity=capacity)]


@settings(max_examples=60, deadline=None)
@given(
    users=st.lists(st.sampled_from([*ROWS, "nobody", "ghost"]), max_size=60),
    delays=st.dictionaries(st.sampled_from([*ROWS, "nobody", "ghost"]), st.integers(0, 4)),
    mode=st.sampled_from(sorted(MODES)),
    capacity=st.integers(1, 12),
    max_batch_size=st.integers(1, 5),
    cached=st.booleans(),
    how=st.sampled_from(["left", "inner"]),
)
def test_the_callback_and_coroutine_paths_give_the_same_outputs(
    users: list[str],
    delays: dict[Hashable, int],
    mode: str,
    capacity: int,
    max_batch_size: int,
    cached: bool,
    how: str,
) -> None:
    events = [event(u, i) for i, u in enumerate(users)]

    def join() -> LookupJoin:
        spec = cache.lru(3) if cached else None
        return LookupJoin(
            Table(delays), on="userID", how=how, cache=spec, max_batch_size=max_batch_size
        )

    async def both() -> tuple[list[Any], list[Any]]:
        fast = await collect(mode, events, join(), capacity)
        slow = await collect(mode, events, CoroutineOnly(join()), capacity)
        return fast, slow

    fast, slow = asyncio.run(both())
    every = [enriched(u, i) for i, u in enumerate(users)]
    expected = [e for e in every if how == "left" or "age" in e]
    if mode == "ordered":
        assert fast == slow == expected
    else:
        key = lambda e: e["n"]  # noqa: E731
        assert sorted(fast, key=key) == sorted(slow, key=key) == expected
        for user in set(users):
            # Per key, key-ordered keeps input order; unordered may not.
            if mode == "key_ordered":
                mine = [e for e in expected if e["userID"] == user]
                assert [e for e in fast if e["userID"] == user] == mine


async def test_a_long_chain_of_one_keys_cache_hits_does_not_deepen_the_stack() -> None:
    # KEY_ORDERED starts a key's next element when the one before completes; a cache hit
    # completes at once, so starting the whole chain inline would recurse once per element.
    table = Table()
    join = LookupJoin(table, on="userID", cache=cache.lru(10))
    n = 5_000
    events = [event("user_1", i) for i in range(n)]
    outs = [
        o
        async for o in asyncwait.key_ordered_wait(
            events, join, key=lambda e: e["userID"], capacity=n
        )
    ]
    assert outs == [enriched("user_1", i) for i in range(n)]
    assert table.queries == [["user_1"]]


# ----------------------------------------------- the runtime's pass-through of cache hits


async def feed_like_the_runtime(
    items: list[Record[Any] | Watermark],
    *,
    fast: bool,
    mode: OutputMode,
    capacity: int,
    delays: dict[Hashable, int],
) -> tuple[list[StreamElement], int]:
    """Run ``items`` through an operator the way a runtime stage does; return what it emits."""
    table = Table(delays)
    join = LookupJoin(table, on="userID", cache=cache.lru(4, miss_ttl=60))
    key = (lambda e: e["userID"]) if mode is OutputMode.KEY_ORDERED else None
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(join, mode=mode, capacity=capacity, key=key)
    out: list[StreamElement] = []
    # sync_emit: what the runtime sets; enables passing cache hits straight through
    await op.open(out.append, sync_emit=fast)
    for item in items:
        if isinstance(item, Watermark):
            await op.process_watermark(item)
        elif not op.offer(item):
            await op.process_element(item)
    await op.end_input()
    stats = join.statistics().cache
    passed = op.statistics().passed
    await op.close()
    assert stats is not None
    records = sum(1 for item in items if isinstance(item, Record))
    assert stats.hits + stats.misses == records  # each lookup counted once, hit or miss
    return out, passed


@settings(max_examples=80, deadline=None)
@given(
    script=st.lists(
        st.one_of(st.sampled_from([*list(ROWS)[:5], "nobody"]), st.just("WATERMARK")),
        max_size=50,
    ),
    delays=st.dictionaries(st.sampled_from([*ROWS, "nobody"]), st.integers(0, 3)),
    mode=st.sampled_from(list(OutputMode)),
    capacity=st.integers(1, 8),
)
def test_passing_cache_hits_through_changes_nothing_downstream_sees(
    script: list[str], delays: dict[Hashable, int], mode: OutputMode, capacity: int
) -> None:
    items: list[Record[Any] | Watermark] = []
    for i, step in enumerate(script):
        items.append(Watermark(i) if step == "WATERMARK" else Record(event(step, i), i))

    async def both() -> None:
        slow, none_passed = await feed_like_the_runtime(
            items, fast=False, mode=mode, capacity=capacity, delays=delays
        )
        fast, _ = await feed_like_the_runtime(
            items, fast=True, mode=mode, capacity=capacity, delays=delays
        )
        # The same elements, in the same order: records, their timestamps and watermarks.
        assert fast == slow
        assert none_passed == 0

    asyncio.run(both())


async def test_a_hit_with_nothing_ahead_passes_through_without_a_slot() -> None:
    join = LookupJoin(Table(), on="userID", cache=cache.lru(10))
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(join, mode=OutputMode.ORDERED, capacity=1)
    out: list[StreamElement] = []
    await op.open(out.append, sync_emit=True)
    assert op.offer(Record(event("user_1", 0), 0))  # a miss: holds the only slot
    assert op.statistics().queued == 1
    await settle()  # answered and emitted
    assert op.statistics().passed == 0
    for i in range(1, 4):  # hits: emitted at once, the slot stays free
        assert op.offer(Record(event("user_1", i), i))
        assert op.statistics().queued == 0
        assert op.statistics().passed == i
        assert out[-1] == Record(enriched("user_1", i), i)
    await op.end_input()
    await op.close()
    assert out == [Record(enriched("user_1", i), i) for i in range(4)]
    assert op.statistics().emitted == 4


@pytest.mark.looptime
async def test_expired_rows_are_counted_once_when_hits_pass_through() -> None:
    table = Table()
    join = LookupJoin(table, on="userID", cache=cache.lru(10, ttl=5))
    env = StreamEnvironment()

    async def events() -> AsyncIterator[dict[str, Any]]:
        for i in range(6):
            yield event("user_1", i)
            await asyncio.sleep(2)  # the cached row expires between the 3rd and 4th event

    out = sinks.collect()
    env.from_source(sources.collection(events())).unordered_wait(join).sink_to(out)
    result = await env.execute_async()
    assert out.values == [enriched("user_1", i) for i in range(6)]
    counters = result.operators[0].counters
    assert (counters["cache_hits"], counters["cache_misses"]) == (4, 2)
    assert table.queries == [["user_1"], ["user_1"]]
