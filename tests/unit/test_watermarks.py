"""Watermark strategies: timestamps, periodic watermarks on the loop clock (looptime), idleness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from asyncwait import BadInputError, ConfigError, Record, StreamElement, Watermark, sinks
from asyncwait._dataflow.watermark_step import WatermarkStep
from asyncwait.runtime import StreamEnvironment
from asyncwait.watermarks import MAX_TIMESTAMP, WatermarkStrategy
from tests.helpers import settle

FINAL = Watermark(MAX_TIMESTAMP)


def now() -> float:
    return asyncio.get_running_loop().time()


async def timed(items: Iterable[tuple[float, Any]]) -> AsyncIterator[Any]:
    """Yield each value after waiting its delay (seconds of loop time)."""
    for delay, value in items:
        await asyncio.sleep(delay)
        yield value


class TimedSink(sinks.Sink):
    """Remembers every element with the loop time it arrived at."""

    def __init__(self) -> None:
        super().__init__("timed")
        self.arrivals: list[tuple[float, StreamElement]] = []

    def write(self, elements: list[StreamElement]) -> None:
        t = round(now(), 6)
        self.arrivals.extend((t, element) for element in elements)


def by_ts(event: dict[str, int]) -> int:
    return event["ts"]


async def run(
    items: Iterable[tuple[float, Any]], strategy: WatermarkStrategy[Any]
) -> list[tuple[float, StreamElement]]:
    env = StreamEnvironment()
    sink = (
        env.from_collection(timed(items))
        .assign_timestamps_and_watermarks(strategy)
        .sink_to(TimedSink())
    )
    await env.execute_async()
    return sink.arrivals


@pytest.mark.looptime
async def test_bounded_out_of_orderness_emits_max_minus_bound_minus_one_periodically() -> None:
    items = [(0.0, {"ts": 1000}), (0.05, {"ts": 3000}), (0.05, {"ts": 2000}), (0.4, {"ts": 5000})]
    arrivals = await run(
        items,
        WatermarkStrategy.for_bounded_out_of_orderness(500, timestamp=by_ts),
    )
    assert arrivals == [
        (0.0, Record({"ts": 1000}, 1000)),
        (0.05, Record({"ts": 3000}, 3000)),
        (0.1, Record({"ts": 2000}, 2000)),
        (0.2, Watermark(2499)),  # the first tick: 3000 - 500 - 1
        (0.5, Record({"ts": 5000}, 5000)),
        (0.5, FINAL),  # the end of input
    ]


@pytest.mark.looptime
async def test_a_watermark_waits_for_the_next_tick_and_only_grows() -> None:
    items = [
        (0.0, {"ts": 10_000}),
        (0.3, {"ts": 4_000}),  # late: the watermark does not go back
        (0.2, {"ts": 12_000}),
        (0.5, {"ts": 12_000}),
    ]
    arrivals = await run(items, WatermarkStrategy.for_monotonous_timestamps(timestamp=by_ts))
    watermarks = [(t, e) for t, e in arrivals if isinstance(e, Watermark)]
    assert watermarks == [
        (0.2, Watermark(9_999)),  # monotonous: max - 1
        (0.6, Watermark(11_999)),  # ticks at 0.4 saw nothing new
        (1.0, FINAL),
    ]


@pytest.mark.looptime
async def test_the_interval_is_configurable() -> None:
    items = [(0.0, {"ts": 1}), (0.5, {"ts": 2}), (0.7, {"ts": 3})]
    strategy = WatermarkStrategy.for_monotonous_timestamps(timestamp=by_ts)
    arrivals = await run(items, strategy.with_watermark_interval(1.0))
    assert [(t, e) for t, e in arrivals if isinstance(e, Watermark)] == [
        (1.0, Watermark(1)),
        (1.2, FINAL),
    ]


async def test_a_fast_source_gets_its_final_watermark_and_no_stale_one() -> None:
    env = StreamEnvironment()
    out = (
        env.from_collection([{"ts": 5}, {"ts": 1}])
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.for_bounded_out_of_orderness(0, timestamp=by_ts)
        )
        .sink_to(sinks.collect())
    )
    await env.execute_async()
    assert out.elements == [Record({"ts": 5}, 5), Record({"ts": 1}, 1), FINAL]


async def test_upstream_watermarks_give_way_to_the_strategy() -> None:
    env = StreamEnvironment()
    out = (
        env.from_collection([Record("a", 7), Watermark(100), Record("b", 3)])
        .assign_timestamps_and_watermarks(WatermarkStrategy.for_bounded_out_of_orderness(10))
        .sink_to(sinks.collect())
    )
    await env.execute_async()
    assert out.elements == [Record("a", 7), Record("b", 3), FINAL]  # records keep their own


async def test_bad_timestamps_are_bad_input() -> None:
    def ts(event: dict[str, Any]) -> int:
        if "ts" not in event:
            raise BadInputError("no ts field")
        return event["ts"]  # type: ignore[no-any-return]

    env = StreamEnvironment()
    out = (
        env.from_collection([{"ts": 5}, {}, {"ts": "noon"}, {"ts": 7.9}, {"ts": True}])
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.for_monotonous_timestamps(timestamp=ts), name="stamp"
        )
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert [e for e in out.elements if isinstance(e, Record)] == [
        Record({"ts": 5}, 5),
        Record({"ts": 7.9}, 7),  # a float is truncated to int milliseconds
    ]
    assert [(s["line"], s["operator"]) for s in result.error_samples] == [
        (2, "stamp"),
        (3, "stamp"),
        (5, "stamp"),
    ]
    assert result.error_samples[0]["reason"] == "no ts field"
    assert result.error_samples[1]["reason"] == (
        "stamp: the timestamp of {'ts': 'noon'} is 'noon'; event time must be int milliseconds"
    )


async def test_records_without_a_timestamp_need_an_assigner() -> None:
    env = StreamEnvironment()
    env.from_collection([Record(1, 1), 2]).assign_timestamps_and_watermarks(
        WatermarkStrategy.for_monotonous_timestamps()
    ).sink_to(sinks.collect())
    result = await env.execute_async()
    assert result.errors == 1
    assert "has no timestamp" in result.error_samples[0]["reason"]


async def test_a_failing_assigner_fails_the_job() -> None:
    env = StreamEnvironment()
    env.from_collection([{}]).assign_timestamps_and_watermarks(
        WatermarkStrategy.for_monotonous_timestamps(timestamp=by_ts)
    ).sink_to(sinks.collect())
    with pytest.raises(Exception, match=r"watermarks: could not process .*KeyError") as info:
        await env.execute_async()
    assert info.value.__notes__ == ["the element came from collection:1"]


@pytest.mark.looptime
async def test_idleness_follows_flinks_idleness_timer() -> None:
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_idleness(0.5)
    step = WatermarkStep(strategy, "wm", lambda error, record=None: None, sourced=False)
    wakes: list[float] = []
    step.start(lambda: wakes.append(now()))
    try:
        assert step.process([Record("a", 100)]) == [Record("a", 100)]
        await asyncio.sleep(0.2)  # tick: active
        assert wakes == [0.2]
        assert step.process([]) == [Watermark(99)]
        await asyncio.sleep(0.2)  # tick: inactivity starts at 0.4
        await asyncio.sleep(0.6)  # ticks at 0.6, 0.8 (0.4 s inactive), 1.0 (0.6 s): idle
        assert step.idle
        await asyncio.sleep(1.0)
        assert wakes == [0.2]  # nothing new, and an idle stream emits nothing
        assert step.process([Record("b", 200)]) == [Record("b", 200)]
        assert not step.idle
        await asyncio.sleep(0.2)
        assert step.process([]) == [Watermark(199)]
        assert step.current_watermark == 199
    finally:
        step.stop()
    await settle()


def test_strategies_are_validated_immutable_values() -> None:
    base = WatermarkStrategy.for_bounded_out_of_orderness(5_000)
    assert (base.max_out_of_orderness_ms, base.timestamp, base.interval) == (5_000, None, 0.2)
    assert base.idle_timeout is None
    stamped = base.with_timestamp_assigner(by_ts)
    assert stamped.timestamp is by_ts
    assert base.timestamp is None
    assert base.with_watermark_interval(1).interval == 1.0
    with pytest.raises(ConfigError, match="max_out_of_orderness_ms"):
        WatermarkStrategy.for_bounded_out_of_orderness(-1)
    with pytest.raises(ConfigError, match="max_out_of_orderness_ms"):
        WatermarkStrategy.for_bounded_out_of_orderness(1.5)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="timestamp must be callable"):
        WatermarkStrategy.for_monotonous_timestamps(timestamp="ts")  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="interval"):
        base.with_watermark_interval(0)
    with pytest.raises(ConfigError, match="idleness"):
        base.with_idleness(-1)
    with pytest.raises(ConfigError, match="idleness"):
        base.with_idleness(float("nan"))
