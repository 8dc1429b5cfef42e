"""Checkpointing in the runtime: barriers, stop with a checkpoint, restore, transactional sinks.

Completion order is driven by events the tests set; waiting for a checkpoint polls the job's
progress (checkpoint files are written on worker threads, so the loop cannot be settled).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asyncwait import AsyncFunction, AsyncWaitError, ConfigError, StreamEnvironment, sinks, sources
from asyncwait._dataflow.steps import Step
from asyncwait._dataflow.watermark_step import WatermarkStep
from asyncwait.runtime import JobResult, JobTotals
from asyncwait.watermarks import WatermarkStrategy

N = 500
FAST = 100  # the first FAST elements complete at once; the others wait for `release`


def write_input(path: Path, n: int = N) -> Path:
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(n)))
    return path


def expected(n: int = N) -> str:
    return "".join(
        json.dumps({"i": i, "sq": i * i}, separators=(",", ":")) + "\n" for i in range(n)
    )


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting until {what}")


class Held:
    """An async function: elements >= FAST wait until ``release`` is set (or forever)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, value: dict[str, int]) -> dict[str, int]:
        if value["i"] >= FAST:
            await self.release.wait()
        return {"i": value["i"], "sq": value["i"] ** 2}


async def square(value: dict[str, int]) -> dict[str, int]:
    return {"i": value["i"], "sq": value["i"] ** 2}


def job(
    tmp_path: Path,
    fn: Callable[[Any], Any],
    *,
    capacity: int,
    interval: float | None = None,
    fresh: bool = False,
    sink: str = "jsonl",
) -> StreamEnvironment:
    env = StreamEnvironment(interval, tmp_path / "cp", name="squares", fresh=fresh)
    stream = env.from_source(sources.jsonl(tmp_path / "in.jsonl")).ordered_wait(
        fn, capacity=capacity
    )
    if sink == "csv":
        stream.sink_to(sinks.csv(tmp_path / "out.csv"))
    else:
        stream.sink_to(sinks.jsonl(tmp_path / "out.jsonl"))
    return env


async def stop_with_everything_in_flight(env: StreamEnvironment, in_flight: int) -> JobResult:
    run = asyncio.ensure_future(env.execute_async())
    await until(
        lambda: (
            bool(env.progress().operators) and env.progress().operators[0].in_flight == in_flight
        ),
        f"{in_flight} elements are in flight",
    )
    env.stop()
    return await asyncio.wait_for(run, 30)


async def test_output_is_the_same_with_frequent_checkpoints(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl", 5000)
    result = await job(tmp_path, square, capacity=50, interval=0.001).execute_async()
    assert (tmp_path / "out.jsonl").read_text() == expected(5000)
    assert result.checkpoints >= 1
    assert result.restored_from is None
    # Nothing uncommitted is left behind, and the last checkpoint says the job finished.
    assert sorted(os.listdir(tmp_path)) == ["cp", "in.jsonl", "out.jsonl"]
    again = await job(tmp_path, square, capacity=50).execute_async()
    assert again.restored_from is None  # a finished job starts over
    assert (tmp_path / "out.jsonl").read_text() == expected(5000)


async def test_stop_checkpoints_in_flight_and_a_smaller_job_resumes(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl")
    held = Held()
    stopped = await stop_with_everything_in_flight(job(tmp_path, held, capacity=N - FAST), N - FAST)
    assert stopped.stopped
    assert stopped.last_checkpoint is not None
    # Only what the checkpoint committed is in the output: the elements that completed.
    assert (tmp_path / "out.jsonl").read_text() == expected(FAST)

    # 400 inputs in flight in the checkpoint, and the new job holds only 10 at a time.
    resumed = await job(tmp_path, square, capacity=10).execute_async()
    assert resumed.restored_from == stopped.last_checkpoint
    assert not resumed.stopped
    assert (tmp_path / "out.jsonl").read_text() == expected()
    assert resumed.events_in == 0  # the source had been read to its end before the stop
    assert resumed.events_out == N - FAST
    # This run's numbers do not add up alone (it emitted what the first run read); the
    # job's totals over both runs do.
    assert stopped.totals == JobTotals(events_in=N, events_out=FAST, errors=0, runs=1)
    assert resumed.totals == JobTotals(events_in=N, events_out=N, errors=0, runs=2)


async def test_uncommitted_output_is_discarded_on_restore(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl")
    await stop_with_everything_in_flight(job(tmp_path, Held(), capacity=N - FAST), N - FAST)
    # What a crashed run may leave: output past the commit and part files.
    with (tmp_path / "out.jsonl").open("a") as out:
        out.write('{"i":100,"sq":"never committed"}\n{"half a li')
    (tmp_path / ".out.jsonl.part-000099").write_text("stale\n")
    await job(tmp_path, square, capacity=10).execute_async()
    assert (tmp_path / "out.jsonl").read_text() == expected()
    assert not (tmp_path / ".out.jsonl.part-000099").exists()


async def test_a_commit_cut_short_is_redone_from_its_part_file(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl")
    sink = sinks.jsonl(tmp_path / "out.jsonl")
    sink.initialize_state(None)
    await sink.open(lambda error, record=None: None)
    sink.write([])
    state = await sink.pre_commit(1)
    (tmp_path / "out.jsonl").write_text("")
    await sink.close()
    assert state["length"] == 0  # nothing was written: an empty commit
    # A part file of 6 bytes that the crash left half appended:
    part = tmp_path / state["part"]
    part.write_text("12345\n")
    (tmp_path / "out.jsonl").write_text("123")
    again = sinks.jsonl(tmp_path / "out.jsonl")
    again.initialize_state({**state, "length": 6})
    await again.open(lambda error, record=None: None)
    await again.close()
    assert (tmp_path / "out.jsonl").read_text() == "12345\n"
    # And when the part file is gone too, the sink says what is missing.
    (tmp_path / "out.jsonl").write_text("123")
    third = sinks.jsonl(tmp_path / "out.jsonl")
    third.initialize_state({**state, "length": 6})
    with pytest.raises(ConfigError, match=r"committed 6, and its part file .* is missing"):
        await third.open(lambda error, record=None: None)


async def test_csv_output_keeps_one_header_across_a_restore(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl")
    await stop_with_everything_in_flight(
        job(tmp_path, Held(), capacity=N - FAST, sink="csv"), N - FAST
    )
    await job(tmp_path, square, capacity=10, sink="csv").execute_async()
    rows = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert rows[0] == ["i", "sq"]
    assert rows[1:] == [[str(i), str(i * i)] for i in range(N)]


async def test_csv_declared_columns_keep_their_header_across_a_restore(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl")
    release = asyncio.Event()

    async def left_join(value: dict[str, int]) -> dict[str, int]:
        # The first FAST events find no row (no "sq"); the others wait, then find one.
        if value["i"] < FAST:
            return {"i": value["i"]}
        await release.wait()
        return {"i": value["i"], "sq": value["i"] ** 2}

    async def reordered(value: dict[str, int]) -> dict[str, int]:
        return {"sq": value["i"] ** 2, "i": value["i"]}  # its own order: the header wins

    def csv_job(fn: Callable[[Any], Any]) -> StreamEnvironment:
        env = StreamEnvironment(None, tmp_path / "cp", name="squares")
        env.from_source(sources.jsonl(tmp_path / "in.jsonl")).ordered_wait(
            fn, capacity=N - FAST
        ).sink_to(sinks.csv(tmp_path / "out.csv", columns=["sq"]))
        return env

    stopped = await stop_with_everything_in_flight(csv_job(left_join), N - FAST)
    assert stopped.stopped
    assert (tmp_path / "out.csv").read_text().splitlines()[:2] == ["i,sq", "0,"]
    resumed = await csv_job(reordered).execute_async()
    assert resumed.restored_from == stopped.last_checkpoint
    rows = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert rows[0] == ["i", "sq"]
    assert rows[1:] == [[str(i), "" if i < FAST else str(i * i)] for i in range(N)]


async def test_a_checkpoint_of_another_job_shape_is_refused(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl", 10)
    await job(tmp_path, square, capacity=10, interval=5.0).execute_async()
    env = StreamEnvironment(None, tmp_path / "cp", name="squares")
    (
        env.from_source(sources.jsonl(tmp_path / "in.jsonl"))
        .map(dict)
        .ordered_wait(square, capacity=10)
        .sink_to(sinks.jsonl(tmp_path / "out.jsonl"))
    )
    with pytest.raises(ConfigError, match=r"(?s)checkpoint 1 in .* job of another shape.*--fresh"):
        await env.execute_async()
    env.fresh = True
    result = await env.execute_async()
    assert result.events_out == 10


async def test_stdin_cannot_be_checkpointed(tmp_path: Path) -> None:
    env = StreamEnvironment(1.0, tmp_path / "cp")
    env.from_source(sources.stdin()).sink_to(sinks.collect())
    with pytest.raises(ConfigError, match=r"can be read again.*<stdin> cannot"):
        await env.execute_async()


async def test_an_unpicklable_value_in_flight_fails_the_checkpoint_clearly(
    tmp_path: Path,
) -> None:
    write_input(tmp_path / "in.jsonl")
    held = Held()
    env = StreamEnvironment(None, tmp_path / "cp", name="locks")
    (
        env.from_source(sources.jsonl(tmp_path / "in.jsonl"))
        .map(lambda v: {**v, "lock": threading.Lock()})
        .ordered_wait(held, capacity=N)
        .sink_to(sinks.collect())
    )
    with pytest.raises(AsyncWaitError, match=r"checkpoint 1 cannot be saved.*pickle"):
        await stop_with_everything_in_flight(env, N - FAST)


async def test_an_early_ending_stream_does_not_hold_checkpoints_back(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl")
    held = Held()
    env = StreamEnvironment(0.001, tmp_path / "cp", name="two")
    short = env.from_collection(range(3)).sink_to(sinks.collect())
    (
        env.from_source(sources.jsonl(tmp_path / "in.jsonl"))
        .ordered_wait(held, capacity=N)
        .sink_to(sinks.jsonl(tmp_path / "out.jsonl"))
    )
    run = asyncio.ensure_future(env.execute_async())
    await until(lambda: env.progress().checkpoints >= 3, "three checkpoints completed")
    assert short.values == [0, 1, 2]
    assert (tmp_path / "out.jsonl").read_text() == expected(FAST)  # committed meanwhile
    held.release.set()
    result = await asyncio.wait_for(run, 30)
    assert (tmp_path / "out.jsonl").read_text() == expected()
    assert result.checkpoints >= 4


async def test_errors_file_goes_on_after_a_restore(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl")
    with (tmp_path / "in.jsonl").open("r+") as f:
        text = f.read()
        f.seek(0)
        f.write("not json\n" + text)
    env = job(tmp_path, Held(), capacity=N - FAST)
    env.errors_path = tmp_path / "errors.jsonl"
    await stop_with_everything_in_flight(env, N - FAST)
    again = job(tmp_path, square, capacity=10)
    again.errors_path = tmp_path / "errors.jsonl"
    result = await again.execute_async()
    assert result.errors == 0  # this run's: the bad line was read and reported before
    assert result.totals == JobTotals(events_in=N + 1, events_out=N, errors=1, runs=2)
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["raw"]) for e in errors] == [(1, "not json")]
    assert (tmp_path / "out.jsonl").read_text() == expected()


def test_the_watermark_step_saves_its_progress() -> None:
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(10, timestamp=lambda v: v)
    step: Step = WatermarkStep(strategy, "wm", lambda error, record=None: None, False)
    step.restore({"max": 500, "emitted": 489})
    assert step.snapshot() == {"max": 500, "emitted": 489}
    assert isinstance(step, WatermarkStep)
    assert step.current_watermark == 489


def mapped_job(tmp_path: Path, fn: Callable[[Any], Any], *, capacity: int) -> StreamEnvironment:
    """Source -> map -> ordered_wait -> sink, in small batches: channels fill up quickly."""
    env = StreamEnvironment(None, tmp_path / "cp", name="mapped", buffer_size=64)
    (
        env.from_source(sources.jsonl(tmp_path / "in.jsonl"))
        .map(lambda v: {"i": v["i"], "mapped": True})
        .ordered_wait(fn, capacity=capacity)
        .sink_to(sinks.jsonl(tmp_path / "out.jsonl"))
    )
    return env


async def test_stop_under_backpressure_saves_what_waits_in_the_channels(tmp_path: Path) -> None:
    # 3,000 events, 100 in flight and blocked: the operator waits to admit one more, the
    # channel before it is full and the source waits for room. The stop must not wait for
    # the blocked calls; the checkpoint holds the operator's inputs, the rest of its batch
    # and what waits in the channel, and the next run replays them through the map.
    n = 3000
    write_input(tmp_path / "in.jsonl", n)
    held = Held()

    async def checked(value: dict[str, Any]) -> dict[str, int]:
        assert value["mapped"]
        return await held(value)

    env = mapped_job(tmp_path, checked, capacity=100)
    run = asyncio.ensure_future(env.execute_async())
    await until(
        lambda: bool(env.progress().operators) and env.progress().operators[0].in_flight == 100,
        "the operator is full",
    )
    env.stop()
    stopped = await asyncio.wait_for(run, 30)
    assert stopped.stopped
    assert stopped.events_in < n  # the source was held back: the stop came mid-stream
    assert (tmp_path / "out.jsonl").read_text() == expected(FAST)

    async def fast(value: dict[str, Any]) -> dict[str, int]:
        assert value["mapped"]
        return await square(value)

    resumed = await mapped_job(tmp_path, fast, capacity=7).execute_async()
    assert resumed.restored_from == stopped.last_checkpoint
    assert (tmp_path / "out.jsonl").read_text() == expected(n)
    assert resumed.events_out == n - FAST


def shaped_job(
    tmp_path: Path, mode: str, seed: int, *, capacity: int, source: str = "jsonl"
) -> StreamEnvironment:
    """source -> watermarks -> map -> async (mode) -> filter -> async (ordered) -> sink."""
    rng = random.Random(seed)

    async def jitter(value: dict[str, Any]) -> dict[str, Any]:
        for _ in range(rng.randrange(4)):  # completion order varies; no wall time passes
            await asyncio.sleep(0)
        return {**value, "a": int(value["i"]) * 3}

    async def second(value: dict[str, Any]) -> dict[str, Any]:
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
        return {"i": int(value["i"]), "k": value["k"], "a": value["a"], "b": value["a"] + 1}

    env = StreamEnvironment(0.002, tmp_path / "cp", name=f"shape-{mode}", buffer_size=32)
    src = (
        sources.csv(tmp_path / "in.csv")
        if source == "csv"
        else sources.jsonl(tmp_path / "in.jsonl")
    )
    stream = env.from_source(src).assign_timestamps_and_watermarks(
        WatermarkStrategy.for_bounded_out_of_orderness(5, timestamp=lambda v: int(v["i"]))
    )
    stream = stream.map(lambda v: {"i": int(v["i"]), "k": int(v["i"]) % 7})
    if mode == "ordered":
        stream = stream.ordered_wait(jitter, capacity=capacity)
    elif mode == "unordered":
        stream = stream.unordered_wait(jitter, capacity=capacity)
    else:
        stream = stream.key_ordered_wait(jitter, key=lambda v: v["k"], capacity=capacity)
    (
        stream.filter(lambda v: v["i"] % 5 != 0)
        .ordered_wait(second, capacity=max(1, capacity // 2))
        .sink_to(sinks.jsonl(tmp_path / "out.jsonl"))
    )
    return env


@pytest.mark.parametrize("mode", ["ordered", "unordered", "key_ordered"])
@pytest.mark.parametrize("source", ["jsonl", "csv"])
async def test_stops_at_random_moments_change_nothing(
    tmp_path: Path, mode: str, source: str
) -> None:
    n = 3000
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    if source == "csv":
        (tmp_path / "in.csv").write_text("i\n" + "".join(f"{i}\n" for i in range(n)))
    else:
        write_input(tmp_path / "in.jsonl", n)
    want = [{"i": i, "k": i % 7, "a": 3 * i, "b": 3 * i + 1} for i in range(n) if i % 5 != 0]
    stops = 0
    for attempt in range(4):
        env = shaped_job(
            tmp_path, mode, seed + attempt, capacity=rng.choice([1, 5, 40]), source=source
        )
        run = asyncio.ensure_future(env.execute_async())
        target = rng.randrange(1, n)

        def moved(run: asyncio.Future[JobResult] = run, env: StreamEnvironment = env) -> bool:
            return run.done() or env.progress().events_in >= target  # noqa: B023 - awaited here

        await until(moved, "progress")
        env.stop()
        result = await asyncio.wait_for(run, 30)
        stops += result.stopped
        if not result.stopped:
            break
    final = await shaped_job(tmp_path, mode, seed, capacity=3, source=source).execute_async()
    assert not final.stopped
    # However often it stopped, each event is counted once over the runs (a run after one
    # that completed starts over).
    runs = 1 if final.restored_from is None else stops + 1
    assert final.totals == JobTotals(events_in=n, events_out=len(want), errors=0, runs=runs)
    got = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    if mode == "ordered":
        assert got == want, f"seed {seed}"
    else:
        assert sorted(got, key=lambda v: v["i"]) == want, f"seed {seed}"
        if mode == "key_ordered":
            for k in range(7):
                mine = [v["i"] for v in got if v["k"] == k]
                assert mine == sorted(mine), f"seed {seed}: key {k} out of order"
    assert stops >= 1, f"seed {seed}: no run was stopped mid-way"


async def test_a_stop_while_the_job_opens_stops_it_before_anything_runs(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl", 10)
    opened = asyncio.Event()
    go_on = asyncio.Event()

    class SlowOpen(AsyncFunction[Any, Any]):
        async def open(self, context: Any) -> None:
            opened.set()
            await go_on.wait()  # e.g. a slow database connection

        async def async_invoke(self, value: Any) -> list[Any]:
            return [value]

    env = StreamEnvironment(None, tmp_path / "cp", name="slow-open")
    (
        env.from_source(sources.jsonl(tmp_path / "in.jsonl"))
        .ordered_wait(SlowOpen())
        .sink_to(sinks.jsonl(tmp_path / "out.jsonl"))
    )
    run = asyncio.ensure_future(env.execute_async())
    await opened.wait()
    env.stop()
    go_on.set()
    result = await asyncio.wait_for(run, 30)
    assert result.stopped
    assert result.events_out == 0
    assert (tmp_path / "out.jsonl").read_text() == ""
