"""The dataflow runtime: pipelines end to end with collect sinks, ordering, progress, options."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections.abc import AsyncIterator, Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest

from asyncwait import (
    AsyncFunction,
    AsyncWaitError,
    ConfigError,
    OutputMode,
    Record,
    RuntimeContext,
    StreamElement,
    Watermark,
    sinks,
    sources,
)
from asyncwait import cache as aw_cache
from asyncwait import lookups as aw_lookups
from asyncwait.runtime import JobProgress, StreamEnvironment
from asyncwait.watermarks import MAX_TIMESTAMP, WatermarkStrategy
from tests.helpers import Gate, settle

FINAL = Watermark(MAX_TIMESTAMP)


def records(elements: Sequence[StreamElement]) -> list[Any]:
    return [e.value for e in elements if isinstance(e, Record)]


async def sleepy(value: int) -> int:
    """Completes after ``value`` tenths of a second of loop time."""
    await asyncio.sleep(value / 10)
    return value


async def test_map_filter_flat_map_are_chained_in_order() -> None:
    env = StreamEnvironment()
    out = (
        env.from_collection(range(6))
        .map(lambda v: v + 1)
        .filter(lambda v: v % 2 == 0)
        .flat_map(lambda v: [v, v * 10])
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert out.values == [2, 20, 4, 40, 6, 60]
    assert out.elements[-1] == FINAL  # the end of input, as Flink's bounded sources
    assert (result.events_in, result.events_out, result.errors) == (6, 6, 0)
    assert result.sink_result == out.values


@pytest.mark.looptime
async def test_ordered_wait_emits_in_input_order() -> None:
    env = StreamEnvironment()
    out = env.from_collection([3, 1, 2]).ordered_wait(sleepy).sink_to(sinks.collect())
    await env.execute_async()
    assert out.values == [3, 1, 2]
    assert asyncio.get_running_loop().time() == pytest.approx(0.3)  # all three ran at once


@pytest.mark.looptime
async def test_unordered_wait_emits_in_completion_order() -> None:
    env = StreamEnvironment()
    out = env.from_collection([3, 1, 2]).unordered_wait(sleepy).sink_to(sinks.collect())
    await env.execute_async()
    assert out.values == [1, 2, 3]


@pytest.mark.looptime
async def test_unordered_wait_never_crosses_a_watermark() -> None:
    env = StreamEnvironment()
    elements = [
        Record(5, 1),
        Record(1, 2),
        Watermark(10),
        Record(4, 11),
        Record(2, 12),
        Watermark(20),
        Record(3, 21),
    ]
    out = env.from_collection(elements).unordered_wait(sleepy).sink_to(sinks.collect())
    await env.execute_async()
    assert out.elements == [
        Record(1, 2),
        Record(5, 1),  # slow, yet before the watermark that followed it
        Watermark(10),
        Record(2, 12),
        Record(4, 11),
        Watermark(20),
        Record(3, 21),
        FINAL,
    ]


@pytest.mark.looptime
async def test_key_ordered_wait_keeps_input_order_per_key() -> None:
    env = StreamEnvironment()
    events = [("a", 3), ("b", 1), ("a", 1), ("b", 2), ("c", 1)]

    async def call(event: tuple[str, int]) -> tuple[str, int]:
        await asyncio.sleep(event[1] / 10)
        return event

    out = (
        env.from_collection(events)
        .key_ordered_wait(call, key=lambda e: e[0])
        .sink_to(sinks.collect())
    )
    await env.execute_async()
    assert [e for e in out.values if e[0] == "a"] == [("a", 3), ("a", 1)]
    assert [e for e in out.values if e[0] == "b"] == [("b", 1), ("b", 2)]
    assert out.values.index(("c", 1)) < out.values.index(("a", 3))  # keys run concurrently


async def test_an_async_function_may_emit_several_outputs_or_none() -> None:
    class Split(AsyncFunction[str, str]):
        async def async_invoke(self, value: str) -> list[str]:
            return list(value)

    env = StreamEnvironment()
    out = env.from_collection(["ab", "", "c"]).ordered_wait(Split()).sink_to(sinks.collect())
    result = await env.execute_async()
    assert out.values == ["a", "b", "c"]
    assert result.operators[0].emitted == 4  # three records and the final watermark


async def test_timestamps_come_from_a_field_and_survive_async_operators() -> None:
    env = StreamEnvironment()
    events = [{"id": 1, "ts": 1_000}, {"id": 2, "ts": 3_000}, {"id": 3, "ts": 2_000}]

    async def enrich(event: dict[str, int]) -> dict[str, int]:
        return {**event, "seen": 1}

    out = (
        env.from_collection(events)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.for_bounded_out_of_orderness(500, timestamp=lambda e: e["ts"])
        )
        .ordered_wait(enrich)
        .map(lambda e: e["id"])
        .sink_to(sinks.collect())
    )
    await env.execute_async()
    assert out.elements == [Record(1, 1_000), Record(2, 3_000), Record(3, 2_000), FINAL]


def test_execute_runs_the_job_from_sync_code() -> None:
    env = StreamEnvironment(name="sync")
    out = env.from_collection("abc").map(str.upper).sink_to(sinks.collect())
    result = env.execute()
    assert out.values == ["A", "B", "C"]
    assert result.name == "sync"
    assert result.duration >= 0


async def test_execute_inside_a_running_loop_says_to_use_execute_async() -> None:
    env = StreamEnvironment()
    env.from_collection([1]).sink_to(sinks.collect())
    with pytest.raises(RuntimeError, match=r"execute_async"):
        env.execute()


async def test_an_environment_runs_again_with_fresh_operators() -> None:
    env = StreamEnvironment()

    async def double(v: int) -> int:
        return v * 2

    out = env.from_collection([1, 2]).unordered_wait(double).sink_to(sinks.collect())
    first = await env.execute_async()
    second = await env.execute_async()
    assert out.values == [2, 4]  # reset by the second run
    assert first.events_out == second.events_out == 2


async def test_several_streams_run_side_by_side() -> None:
    env = StreamEnvironment()
    a = env.from_collection([1, 2]).map(lambda v: -v).sink_to(sinks.collect("a"))
    b = env.from_collection("xyz", name="letters").sink_to(sinks.collect("b"))
    result = await env.execute_async()
    assert (a.values, b.values) == ([-1, -2], ["x", "y", "z"])
    assert result.sink_results == ([-1, -2], ["x", "y", "z"])
    assert result.events_in == 5
    with pytest.raises(AsyncWaitError, match="2 sinks"):
        result.sink_result  # noqa: B018 - the property raises


async def test_default_operator_names_are_made_unique() -> None:
    env = StreamEnvironment()

    async def same(v: int) -> int:
        return v

    (
        env.from_collection([1])
        .unordered_wait(same)
        .unordered_wait(same)
        .ordered_wait(same, name="mine")
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert [op.name for op in result.operators] == ["unordered_wait", "unordered_wait-2", "mine"]


async def test_progress_shows_a_running_job(gate: Gate) -> None:
    env = StreamEnvironment(name="live")
    out = (
        env.from_collection(["a", "b", "c"])
        .unordered_wait(gate, capacity=2)
        .sink_to(sinks.collect())
    )
    assert env.progress() == JobProgress("live", False, 0.0, 0, 0, 0)
    job = asyncio.ensure_future(env.execute_async())
    await settle()
    progress = env.progress()
    assert progress.running
    assert progress.events_in == 3
    assert progress.events_out == 0
    (op,) = progress.operators
    assert (op.name, op.in_flight, op.queued, op.capacity) == ("unordered_wait", 2, 2, 2)
    for value in ("b", "a"):
        gate.release(value)
    await settle()
    gate.release("c")
    result = await job
    assert out.values == ["b", "a", "c"]
    assert not env.progress().running
    assert env.progress().events_out == result.events_out == 3
    assert result.operators[0].in_flight == 0
    assert result.operators[0].emitted == 4


# --------------------------------------------------------------------------- lookup_join


class DictTable:
    """An in-memory lookup table (the LookupTable contract) counting its queries."""

    def __init__(self, rows: dict[Hashable, dict[str, Any]]) -> None:
        self.name = "memory:users"
        self.rows = rows
        self.queries = 0
        self.state = "new"

    async def open(self) -> None:
        self.state = "open"

    async def close(self) -> None:
        self.state = "closed"

    async def get(self, key: Hashable) -> dict[str, Any] | None:
        self.queries += 1
        await asyncio.sleep(0)
        row = self.rows.get(key)
        return None if row is None else dict(row)

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, dict[str, Any] | None]:
        return {key: await self.get(key) for key in keys}

    async def scan(self) -> AsyncIterator[tuple[Hashable, dict[str, Any]]]:
        for key, row in self.rows.items():
            yield key, dict(row)


EVENTS = [
    {"userID": "u1", "page": 1},
    {"userID": "u2", "page": 2},
    {"page": 3},  # no key: bad input
    {"userID": "u1", "page": 4},
]


@pytest.mark.parametrize("mode", ["ordered", "unordered", "key_ordered", OutputMode.ORDERED])
async def test_lookup_join_enriches_events_and_routes_missing_keys_aside(
    mode: OutputMode | str, tmp_path: Path
) -> None:
    table = DictTable({"u1": {"age": 30}})
    env = StreamEnvironment(errors_path=tmp_path / "errors.jsonl")
    out = (
        env.from_collection(EVENTS)
        .lookup_join(table, on="userID", mode=mode, cache=aw_cache.lru(10), name="users")
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert sorted(out.values, key=lambda e: e["page"]) == [
        {"userID": "u1", "page": 1, "age": 30},
        {"userID": "u2", "page": 2},  # left join: unchanged
        {"userID": "u1", "page": 4, "age": 30},
    ]
    assert result.errors == 1
    (entry,) = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert entry["source"] == "collection"
    assert entry["line"] == 3
    assert entry["operator"] == "users"
    assert json.loads(entry["raw"]) == {"page": 3}
    assert "userID" in entry["reason"]
    assert table.state == "closed"
    counters = result.operators[0].counters
    assert counters.get("cache_hits", 0) + counters["cache_misses"] == 3


async def test_lookup_join_inner_drops_unmatched_events() -> None:
    env = StreamEnvironment()
    out = (
        env.from_collection(EVENTS[:2])
        .lookup_join(DictTable({"u1": {"age": 30}}), on=lambda e: e["userID"], how="inner")
        .sink_to(sinks.collect())
    )
    await env.execute_async()
    assert out.values == [{"userID": "u1", "page": 1, "age": 30}]


async def test_lookup_join_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "dim.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
        con.executemany("INSERT INTO dim_user VALUES (?, ?)", [("u1", 30), ("u2", 41)])
    con.close()
    env = StreamEnvironment()
    out = (
        env.from_collection(EVENTS[:2])
        .lookup_join(
            aw_lookups.sqlite(db, table="dim_user", key="user_id", columns=["age"]),
            on="userID",
            mode="ordered",
        )
        .sink_to(sinks.collect())
    )
    await env.execute_async()
    assert out.values == [
        {"userID": "u1", "page": 1, "age": 30},
        {"userID": "u2", "page": 2, "age": 41},
    ]


def test_lookup_join_rejects_a_bad_mode() -> None:
    env = StreamEnvironment()
    with pytest.raises(ConfigError, match="mode must be"):
        env.from_collection([]).lookup_join(DictTable({}), on="k", mode="sideways")


# --------------------------------------------------------------------------- options


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="checkpoint_interval"):
        StreamEnvironment(0)
    with pytest.raises(ConfigError, match="checkpoint_interval"):
        StreamEnvironment(math.inf)
    with pytest.raises(ConfigError, match="buffer_size"):
        StreamEnvironment(buffer_size=0)
    with pytest.raises(ConfigError, match="max_errors"):
        StreamEnvironment(max_errors=-1)
    with pytest.raises(ConfigError, match="name"):
        StreamEnvironment(name="")
    with pytest.raises(ConfigError, match="errors_path"):
        StreamEnvironment(errors_path=3)  # type: ignore[arg-type]


async def test_checkpoint_options_turn_checkpointing_on(tmp_path: Path) -> None:
    env = StreamEnvironment(5.0, tmp_path, name="one")
    assert (env.checkpoint_interval, env.checkpoint_dir) == (5.0, tmp_path)
    env.from_collection([1]).sink_to(sinks.collect())
    result = await env.execute_async()
    assert (result.checkpoints, result.last_checkpoint) == (1, 1)  # the final one
    assert (tmp_path / "one" / "chk-000001.ckpt").is_file()
    assert StreamEnvironment(5.0).checkpoint_dir == Path(".asyncwait/checkpoints")
    with pytest.raises(ConfigError, match="checkpoints_kept"):
        StreamEnvironment(checkpoints_kept=0)
    with pytest.raises(ConfigError, match="fresh"):
        StreamEnvironment(fresh="yes")  # type: ignore[arg-type]


async def test_a_job_needs_a_stream_and_every_stream_a_sink() -> None:
    env = StreamEnvironment()
    with pytest.raises(ConfigError, match="nothing to run"):
        await env.execute_async()
    env.from_collection([1]).map(str)
    with pytest.raises(ConfigError, match=r"has no sink.*sink_to"):
        await env.execute_async()


def test_a_stream_feeds_one_next_step() -> None:
    env = StreamEnvironment()
    stream = env.from_collection([1])
    stream.map(str)
    with pytest.raises(ConfigError, match="fan-out"):
        stream.map(repr)
    ended = env.from_collection([2])
    ended.sink_to(sinks.collect())
    with pytest.raises(ConfigError, match="one sink"):
        ended.sink_to(sinks.collect())
    with pytest.raises(ConfigError, match="fan-out"):
        ended.filter(bool)


def test_builders_check_their_arguments_at_once() -> None:
    env = StreamEnvironment()
    stream = env.from_collection([1])
    with pytest.raises(TypeError, match="callable"):
        stream.map(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="capacity"):
        stream.unordered_wait(sleepy, capacity=0)
    with pytest.raises(TypeError, match="not async"):
        stream.ordered_wait(lambda v: v)
    with pytest.raises(TypeError, match="WatermarkStrategy"):
        stream.assign_timestamps_and_watermarks(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Sink"):
        stream.sink_to([])  # type: ignore[type-var]
    with pytest.raises(TypeError, match="Source"):
        env.from_source("events.jsonl")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name"):
        stream.map(str, name="")
    assert "collection" in repr(stream)
    assert "idle" in repr(env)


async def test_an_async_function_gets_the_operator_context() -> None:
    seen: list[RuntimeContext] = []

    class Probe(AsyncFunction[int, int]):
        async def open(self, context: RuntimeContext) -> None:
            seen.append(context)
            context.metrics.inc("opened")

        async def async_invoke(self, value: int) -> list[int]:
            return [value]

    env = StreamEnvironment()
    env.from_collection([1]).unordered_wait(Probe(), capacity=7, name="probe").sink_to(
        sinks.collect()
    )
    result = await env.execute_async()
    assert [(c.name, c.capacity) for c in seen] == [("probe", 7)]
    assert result.operators[0].counters == {"opened": 1}


async def test_a_user_source_and_sink_plug_in() -> None:
    class Countdown(sources.Source):
        async def open(self, reject: Any, *, start_offset: int = 0, start_line: int = 1) -> None:
            self.left = 3

        async def read(self, max_elements: int) -> list[StreamElement] | None:
            if not self.left:
                return None
            self.left -= 1
            return [Record(self.left, self.left * 1000)]

    class Remember(sinks.Sink):
        def __init__(self) -> None:
            super().__init__("remember")
            self.batches: list[list[StreamElement]] = []

        async def write_slowly(self, batch: list[StreamElement]) -> None:
            await asyncio.sleep(0)
            self.batches.append(batch)

        def write(self, elements: list[StreamElement]) -> Any:
            return self.write_slowly(elements)

    env = StreamEnvironment()
    sink = env.from_source(Countdown("countdown")).sink_to(Remember())
    result = await env.execute_async()
    elements = [e for batch in sink.batches for e in batch]
    assert elements == [Record(2, 2000), Record(1, 1000), Record(0, 0), FINAL]
    assert result.events_out == 3
    assert result.sink_results == (None,)
