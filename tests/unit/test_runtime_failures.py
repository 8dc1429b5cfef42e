"""Runtime failure paths: the first failure stops the job; bad input goes aside; backpressure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from asyncwait import (
    AsyncFunction,
    AsyncFunctionError,
    BadInputError,
    ConfigError,
    Record,
    RuntimeContext,
    StreamElement,
    sinks,
    sources,
)
from asyncwait.retry import fixed_delay
from asyncwait.runtime import StreamEnvironment
from tests.helpers import settle


def read_errors(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class Tracked(AsyncFunction[int, int]):
    """Fails on ``bad``, rejects ``reject`` as bad input; records open/close."""

    def __init__(self, bad: int = -1, reject: int = -1) -> None:
        self.bad = bad
        self.reject = reject
        self.events: list[str] = []

    async def open(self, context: RuntimeContext) -> None:
        self.events.append("open")

    async def close(self) -> None:
        self.events.append("close")

    async def async_invoke(self, value: int) -> list[int]:
        await asyncio.sleep(0)
        if value == self.bad:
            raise ZeroDivisionError("boom")
        if value == self.reject:
            raise BadInputError(f"{value} is not welcome")
        return [value]


class ClosingSink(sinks.Sink):
    """Collects values; counts close() calls."""

    def __init__(self) -> None:
        super().__init__("closing")
        self.values: list[Any] = []
        self.closed = 0

    def write(self, elements: list[StreamElement]) -> None:
        self.values.extend(e.value for e in elements if isinstance(e, Record))

    async def close(self) -> None:
        self.closed += 1


def other_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_a_failing_element_stops_the_job_and_closes_everything(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(50)))
    first, second = Tracked(bad=7), Tracked()
    sink = ClosingSink()
    env = StreamEnvironment(buffer_size=4)
    (
        env.from_source(sources.jsonl(events))
        .map(lambda e: e["n"])
        .unordered_wait(first, name="first")
        .ordered_wait(second, name="second")
        .sink_to(sink)
    )
    with pytest.raises(AsyncFunctionError) as info:
        await env.execute_async()
    error = info.value
    assert str(error).startswith("first: could not complete Record(value=7, timestamp=None)")
    assert "ZeroDivisionError: boom" in str(error)
    assert isinstance(error.__cause__, ZeroDivisionError)
    assert error.record == Record(7)
    assert type(error.record) is Record  # not the runtime's internal record type
    assert f"the element came from {events}:8" in getattr(error, "__notes__", [])
    assert first.events == second.events == ["open", "close"]
    assert sink.closed == 1
    assert other_tasks() == set()
    assert not env.progress().running
    assert len(sink.values) < 50


async def test_a_failing_map_names_the_step_the_element_and_its_line() -> None:
    env = StreamEnvironment()
    env.from_collection([4, 2, 0, 1]).map(lambda v: 8 // v, name="invert").sink_to(sinks.collect())
    with pytest.raises(AsyncFunctionError) as info:
        await env.execute_async()
    assert str(info.value) == (
        "invert: could not process Record(value=0, timestamp=None): "
        "ZeroDivisionError: integer division or modulo by zero"
    )
    assert info.value.__notes__ == ["the element came from collection:3"]
    assert other_tasks() == set()


async def test_a_failing_sink_stops_the_job() -> None:
    class Broken(sinks.Sink):
        def write(self, elements: list[StreamElement]) -> None:
            raise OSError("disk full")

    env = StreamEnvironment()
    env.from_collection([1]).sink_to(Broken("broken"))
    with pytest.raises(OSError, match="disk full") as info:
        await env.execute_async()
    assert info.value.__notes__ == ["while writing to broken"]


async def test_a_failing_source_names_its_position() -> None:
    class Flaky(sources.Source):
        async def open(self, reject: Any, *, start_offset: int = 0, start_line: int = 1) -> None:
            self.line = 0

        async def read(self, max_elements: int) -> list[StreamElement] | None:
            if self.line == 2:
                raise OSError("connection reset")
            self.line += 1
            return [Record(self.line)]

    env = StreamEnvironment()
    out = env.from_source(Flaky("flaky")).sink_to(sinks.collect())
    with pytest.raises(OSError, match="connection reset") as info:
        await env.execute_async()
    assert info.value.__notes__ == ["while reading flaky after line 2"]
    assert out.values in ([], [1], [1, 2])


async def test_a_user_source_must_return_records() -> None:
    class Wrong(sources.Source):
        async def open(self, reject: Any, *, start_offset: int = 0, start_line: int = 1) -> None:
            pass

        async def read(self, max_elements: int) -> list[StreamElement] | None:
            return [42]  # type: ignore[list-item]

    env = StreamEnvironment()
    env.from_source(Wrong("wrong")).sink_to(sinks.collect())
    with pytest.raises(TypeError, match="Records and Watermarks"):
        await env.execute_async()


async def test_a_missing_file_fails_before_any_output_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    errors = tmp_path / "errors.jsonl"
    fn = Tracked()
    env = StreamEnvironment(errors_path=errors)
    env.from_source(sources.jsonl(tmp_path / "nope.jsonl")).unordered_wait(fn).sink_to(
        sinks.jsonl(out)
    )
    with pytest.raises(ConfigError, match=r"no such file: '.*nope\.jsonl'"):
        await env.execute_async()
    assert not out.exists()
    assert not errors.exists()
    assert fn.events == []


async def test_cancelling_the_job_closes_everything() -> None:
    never = asyncio.Event()

    async def stuck(value: int) -> int:
        await never.wait()
        return value

    sink = ClosingSink()
    env = StreamEnvironment()
    env.from_collection(range(10)).unordered_wait(stuck).sink_to(sink)
    job = asyncio.ensure_future(env.execute_async())
    await settle()
    assert env.progress().operators[0].in_flight == 10
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert sink.closed == 1
    assert other_tasks() == set()


# --------------------------------------------------------------------------- bad input


async def test_bad_input_from_steps_and_operators_goes_to_the_errors_file(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"n": 1}\n{"n": "x"}\nnot json\n{"n": 3}\n[1]\n{"n": 4}\n')
    errors = tmp_path / "errors.jsonl"

    def number(event: dict[str, Any]) -> int:
        if not isinstance(event["n"], int):
            raise BadInputError(f"n is not a number: {event['n']!r}")
        return int(event["n"])

    env = StreamEnvironment(errors_path=errors)
    out = (
        env.from_source(sources.jsonl(events))
        .map(number, name="number")
        .unordered_wait(Tracked(reject=3), name="gate")
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert sorted(out.values) == [1, 4]
    assert (result.events_in, result.events_out, result.errors) == (6, 2, 4)
    # In the order found: the source rejects its lines before the steps see earlier ones.
    entries = sorted(read_errors(errors), key=lambda e: e["line"])
    assert [(e["line"], e.get("operator")) for e in entries] == [
        (2, "number"),
        (3, None),
        (4, "gate"),
        (5, None),
    ]
    assert entries[0] == {
        "kind": "bad_input",
        "source": str(events),
        "line": 2,
        "raw": '{"n": "x"}',
        "reason": "n is not a number: 'x'",
        "operator": "number",
    }
    assert entries[1]["raw"] == "not json"
    assert entries[1]["reason"].startswith("invalid JSON: Expecting value")
    assert entries[3]["reason"] == "expected a JSON object, got an array"
    assert entries[2]["raw"] == "3"
    assert entries[2]["reason"] == "3 is not welcome"
    assert sorted(result.error_samples, key=lambda e: e["line"]) == entries


async def test_without_an_errors_file_bad_input_is_counted_and_sampled() -> None:
    def check(v: int) -> int:
        if v % 2:
            raise BadInputError("odd")
        return v

    env = StreamEnvironment()
    out = env.from_collection(range(30)).map(check).sink_to(sinks.collect())
    result = await env.execute_async()
    assert out.values == list(range(0, 30, 2))
    assert result.errors == 15
    assert len(result.error_samples) == 10
    assert result.error_samples[0] == {
        "kind": "bad_input",
        "source": "collection",
        "line": 2,
        "raw": "1",
        "reason": "odd",
        "operator": "map",
    }


async def test_more_than_max_errors_fails_the_job(tmp_path: Path) -> None:
    errors = tmp_path / "errors.jsonl"

    def ok(value: str) -> bool:
        if value != "ok":
            raise BadInputError("bad value")
        return True

    env = StreamEnvironment(errors_path=errors, max_errors=2, name="strict")
    sink = ClosingSink()
    env.from_collection(["ok", "bad", "bad", "ok", "bad", "ok"]).filter(ok).sink_to(sink)
    with pytest.raises(BadInputError) as info:
        await env.execute_async()
    assert str(info.value) == (
        f"job 'strict': more than 2 bad input elements; see {errors} "
        "(the last one, from collection:5: bad value)"
    )
    assert [e["line"] for e in read_errors(errors)] == [2, 3, 5]
    assert sink.closed == 1
    assert env.progress().errors == 3


async def test_max_errors_counts_rejections_inside_async_operators() -> None:
    env = StreamEnvironment(max_errors=0)
    env.from_collection([1, 2]).unordered_wait(Tracked(reject=2)).sink_to(sinks.collect())
    with pytest.raises(BadInputError, match="more than 0 bad input elements; no errors file"):
        await env.execute_async()
    assert other_tasks() == set()


async def test_a_bad_key_is_bad_input_in_key_ordered_mode() -> None:
    def key(event: dict[str, str]) -> str:
        if "k" not in event:
            raise BadInputError("no key")
        return event["k"]

    async def same(event: dict[str, str]) -> dict[str, str]:
        return event

    env = StreamEnvironment()
    out = (
        env.from_collection([{"k": "a"}, {}, {"k": "b"}])
        .key_ordered_wait(same, key=key, name="keyed")
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert out.values == [{"k": "a"}, {"k": "b"}]
    assert result.error_samples == (
        {
            "kind": "bad_input",
            "source": "collection",
            "line": 2,
            "raw": "{}",
            "reason": "no key",
            "operator": "keyed",
        },
    )


# --------------------------------------------------------------------------- backpressure


async def test_a_slow_sink_stops_the_source_from_reading_ahead() -> None:
    read = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal read
        while True:
            read += 1
            yield read

    class Blocked(sinks.Sink):
        def __init__(self) -> None:
            super().__init__("blocked")
            self.release = asyncio.Event()
            self.written = 0

        async def _write(self, elements: list[StreamElement]) -> None:
            await self.release.wait()
            self.written += len(elements)

        def write(self, elements: list[StreamElement]) -> Any:
            return self._write(elements)

    async def same(v: int) -> int:
        return v

    sink = Blocked()
    env = StreamEnvironment(buffer_size=8)
    env.from_collection(endless()).map(lambda v: v).unordered_wait(same, capacity=4).sink_to(sink)
    job = asyncio.ensure_future(env.execute_async())
    await settle()
    # Held at most: a batch in the sink, two channels of buffer_size each, a batch being
    # fed to the operator, one being read, and the operator's capacity.
    assert 8 < read <= 5 * 8 + 4
    before = read
    for _ in range(20):
        await asyncio.sleep(0)
    assert read == before  # nothing moves while the sink is blocked
    sink.release.set()
    for _ in range(200):
        await asyncio.sleep(0)
    assert read > before + 100  # released: the source runs again
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job


@pytest.mark.looptime
async def test_rejected_inputs_are_never_retried_nor_shown_to_result_predicates() -> None:
    calls: list[int] = []

    async def lookup(value: int) -> dict[str, int | None]:
        calls.append(value)
        if value < 0:
            raise BadInputError("negative key")
        return {"key": value, "age": None if value == 2 else 30}

    retry = fixed_delay(2, 0.5, on_result=lambda out: out[0]["age"] is None)
    env = StreamEnvironment()
    out = (
        env.from_collection([1, -1, 2])
        .ordered_wait(lookup, retry=retry, name="lookup")
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert out.values == [{"key": 1, "age": 30}, {"key": 2, "age": None}]
    assert sorted(calls) == [-1, 1, 2, 2, 2]  # 2 retried twice, -1 never
    assert result.operators[0].retries == 2
    assert [(s["line"], s["reason"]) for s in result.error_samples] == [(2, "negative key")]


def test_rejected_lookups_leave_no_reference_cycles_holding_records(tmp_path: Path) -> None:
    # A rejection keeps its BadInputError; with its traceback, the frames (the stage's, with
    # the whole input batch) would hold the element's queue entry and so the rejection: a
    # cycle per bad element, pinning a batch of records until the collector runs.
    import gc
    import sqlite3

    from asyncwait import cache, lookups

    db = tmp_path / "dim.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
        conn.executemany("INSERT INTO dim_user VALUES (?, ?)", [(f"u{i}", i) for i in range(50)])
    conn.close()
    events = tmp_path / "events.jsonl"
    lines = [{"userID": f"u{i % 50}"} if i % 10 else {"user": i} for i in range(3_000)]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    env = StreamEnvironment(errors_path=tmp_path / "errors.jsonl")
    table = lookups.sqlite(db, table="dim_user", key="user_id", columns=["age"])
    out = (
        env.from_source(sources.jsonl(events))
        .lookup_join(table, on="userID", cache=cache.lru(100))
        .sink_to(sinks.collect())
    )
    gc.collect()
    gc.disable()
    try:
        result = env.execute()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        held = sum(isinstance(o, Record) for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert (result.events_out, result.errors) == (2_700, 300)
    assert len(out.values) == 2_700
    assert held == 0
