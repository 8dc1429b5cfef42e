"""The errors file and checkpoints: committed with them (exactly once, with source lines);
without checkpoints, at least once and flushed on a stop."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from asyncwait import BadInputError, ConfigError, StreamEnvironment, sinks, sources
from asyncwait._dataflow.errorlog import ErrorLog

from .test_checkpointing import FAST, Held, N, expected, square, until, write_input

BAD = (1, 40, 77)  # lines of input.jsonl that are not JSON (all among the first FAST events)


def write_with_bad_lines(path: Path, n: int = N) -> None:
    """``{"i": i}`` for i < n, with a line that is not JSON before lines BAD."""
    lines = [json.dumps({"i": i}) for i in range(n)]
    for line in BAD:
        lines.insert(line - 1, f"not json at {line}")
    path.write_text("\n".join(lines) + "\n")


def errors(path: Path) -> list[tuple[int | None, str]]:
    if not path.exists():
        return []
    return [(e["line"], e["raw"]) for e in map(json.loads, path.read_text().splitlines())]


BAD_ENTRIES = [(line, f"not json at {line}") for line in BAD]


def job(tmp_path: Path, fn: Any, *, capacity: int, **options: Any) -> StreamEnvironment:
    env = StreamEnvironment(
        None, tmp_path / "cp", name="squares", errors_path=tmp_path / "errors.jsonl", **options
    )
    (
        env.from_source(sources.jsonl(tmp_path / "in.jsonl"))
        .ordered_wait(fn, capacity=capacity)
        .sink_to(sinks.jsonl(tmp_path / "out.jsonl"))
    )
    return env


async def run_until_held(env: StreamEnvironment, in_flight: int) -> asyncio.Future[Any]:
    run = asyncio.ensure_future(env.execute_async())
    await until(
        lambda: (
            bool(env.progress().operators) and env.progress().operators[0].in_flight == in_flight
        ),
        f"{in_flight} elements are in flight",
    )
    return run


async def test_bad_lines_land_in_the_errors_file_when_their_checkpoint_commits(
    tmp_path: Path,
) -> None:
    write_with_bad_lines(tmp_path / "in.jsonl")
    env = job(tmp_path, Held(), capacity=N - FAST)
    run = await run_until_held(env, N - FAST)
    assert env.progress().errors == len(BAD)
    # Reported, but no checkpoint committed them yet: the errors file holds nothing.
    assert errors(tmp_path / "errors.jsonl") == []
    env.stop()  # takes a checkpoint, which commits them
    stopped = await asyncio.wait_for(run, 30)
    assert stopped.stopped
    assert errors(tmp_path / "errors.jsonl") == BAD_ENTRIES

    # The resumed run reads on after the bad lines: none is written twice.
    resumed = await job(tmp_path, square, capacity=10).execute_async()
    assert resumed.restored_from == stopped.last_checkpoint
    assert resumed.errors == 0
    assert errors(tmp_path / "errors.jsonl") == BAD_ENTRIES
    assert (tmp_path / "out.jsonl").read_text() == expected()
    assert sorted(os.listdir(tmp_path)) == ["cp", "errors.jsonl", "in.jsonl", "out.jsonl"]


class Rejecting:
    """Rejects events whose ``i`` is a multiple of 50 as bad input, after Held's wait."""

    def __init__(self, held: Held | None = None) -> None:
        self.held = held

    async def __call__(self, value: dict[str, int]) -> dict[str, int]:
        if self.held is not None:
            await self.held(value)
        if value["i"] % 50 == 0:
            msg = f"event {value['i']} is bad"
            raise BadInputError(msg)
        return await square(value)


async def test_elements_rejected_after_a_restore_keep_their_lines(tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl")
    # 400 events are in flight at the stop, 8 of them to be rejected: the checkpoint saves
    # them, and the resumed run rejects them with the lines they were read from.
    env = job(tmp_path, Rejecting(Held()), capacity=N - FAST)
    run = await run_until_held(env, N - FAST)
    env.stop()
    await asyncio.wait_for(run, 30)
    first = errors(tmp_path / "errors.jsonl")
    assert first == [(i + 1, json.dumps({"i": i})) for i in range(0, FAST, 50)]

    await job(tmp_path, Rejecting(), capacity=7).execute_async()
    assert errors(tmp_path / "errors.jsonl") == [
        (i + 1, json.dumps({"i": i})) for i in range(0, N, 50)
    ]


async def test_elements_waiting_in_a_channel_keep_their_lines_after_a_restore(
    tmp_path: Path,
) -> None:
    # Backpressure: the stop saves elements still waiting before the map, which rejects
    # some of them when the next run replays them.
    n = 3000
    write_input(tmp_path / "in.jsonl", n)

    def mark(value: dict[str, int]) -> dict[str, int]:
        if value["i"] % 200 == 150:
            msg = f"event {value['i']} cannot be mapped"
            raise BadInputError(msg)
        return value

    def build(fn: Any) -> StreamEnvironment:
        env = StreamEnvironment(
            None, tmp_path / "cp", name="mapped", errors_path=tmp_path / "errors.jsonl"
        )
        (
            env.from_source(sources.jsonl(tmp_path / "in.jsonl"))
            .map(mark)
            .ordered_wait(fn, capacity=100)
            .sink_to(sinks.jsonl(tmp_path / "out.jsonl"))
        )
        return env

    env = build(Held())
    run = await run_until_held(env, 100)
    env.stop()
    stopped = await asyncio.wait_for(run, 30)
    assert stopped.events_in < n
    await build(square).execute_async()
    lines = [line for line, _ in errors(tmp_path / "errors.jsonl")]
    assert lines == [i + 1 for i in range(n) if i % 200 == 150]
    out = [json.loads(line)["i"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == [i for i in range(n) if i % 200 != 150]


async def test_max_errors_counts_what_earlier_runs_committed(tmp_path: Path) -> None:
    write_with_bad_lines(tmp_path / "in.jsonl")
    env = job(tmp_path, Held(), capacity=N - FAST, max_errors=4)
    run = await run_until_held(env, N - FAST)
    env.stop()
    await asyncio.wait_for(run, 30)
    with (tmp_path / "in.jsonl").open("a") as file:
        file.write("bad 1\nbad 2\n")  # appended: the input only grew
    with pytest.raises(BadInputError, match="more than 4 bad input elements"):
        await job(tmp_path, square, capacity=10, max_errors=4).execute_async()
    assert errors(tmp_path / "errors.jsonl") == BAD_ENTRIES  # the failed run committed nothing
    result = await job(tmp_path, square, capacity=10, max_errors=5).execute_async()
    assert result.errors == 2  # this run's
    assert errors(tmp_path / "errors.jsonl") == [*BAD_ENTRIES, (N + 4, "bad 1"), (N + 5, "bad 2")]


async def test_another_errors_file_cannot_resume_a_checkpoint(tmp_path: Path) -> None:
    write_with_bad_lines(tmp_path / "in.jsonl")
    env = job(tmp_path, Held(), capacity=N - FAST)
    run = await run_until_held(env, N - FAST)
    env.stop()
    await asyncio.wait_for(run, 30)
    other = tmp_path / "other.jsonl"
    other.write_text("someone else's\n")
    moved = job(tmp_path, square, capacity=10)
    moved.errors_path = other
    with pytest.raises(ConfigError, match=r"taken with errors file '.*errors\.jsonl'.*--fresh"):
        await moved.execute_async()
    assert other.read_text() == "someone else's\n"
    assert errors(tmp_path / "errors.jsonl") == BAD_ENTRIES


async def test_without_checkpoints_a_stop_flushes_the_errors_file(tmp_path: Path) -> None:
    write_with_bad_lines(tmp_path / "in.jsonl")
    env = StreamEnvironment(name="plain", errors_path=tmp_path / "errors.jsonl")
    held = Held()
    env.from_source(sources.jsonl(tmp_path / "in.jsonl")).ordered_wait(
        held, capacity=N - FAST
    ).sink_to(sinks.collect())
    run = await run_until_held(env, N - FAST)
    env.stop()
    result = await asyncio.wait_for(run, 30)
    assert result.stopped
    assert errors(tmp_path / "errors.jsonl") == BAD_ENTRIES


# ------------------------------------------------------------------ the protocol, directly


async def test_entries_past_a_barrier_wait_for_the_next_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "errors.jsonl"
    log = ErrorLog("job", path, None, lambda error: None)
    log.add(source="in", line=1, raw="early", reason="r")  # before open: held, then written
    await log.open(transactional=True)
    log.add(source="in", line=2, raw="before barrier 1", reason="r", epoch=0)
    log.add(source="in", line=3, raw="after barrier 1", reason="r", epoch=1)
    state = await log.seal(1)
    assert state["entries"] == 2
    log.add(source="in", line=4, raw="after the seal", reason="r", epoch=1)
    assert errors(path) == []  # nothing committed yet
    await log.commit(1)
    assert errors(path) == [(1, "early"), (2, "before barrier 1")]
    state = await log.seal(2)
    assert state["entries"] == 4
    await log.commit(2)
    assert [line for line, _ in errors(path)] == [1, 2, 3, 4]
    await log.close()

    # A resumed log goes on from what the checkpoint committed, counting from there.
    assert state["path"] == str(path)
    again = ErrorLog("job", path, 4, lambda error: None)
    await again.open(transactional=True, restored=state)
    assert [line for line, _ in errors(path)] == [1, 2, 3, 4]
    with pytest.raises(BadInputError, match="more than 4 bad input elements"):
        again.add(source="in", line=5, raw="one too many", reason="r")
    await again.close()


async def test_dead_letters_are_written_once_across_a_stop_and_a_resume(tmp_path: Path) -> None:
    # Ordered: every element after the first fails at once (a dead letter) but waits for the
    # first, held until the stop. The checkpoint keeps them all as inputs, so the resumed
    # run calls them again: each dead letter must still be written once.
    write_input(tmp_path / "in.jsonl", 50)
    release = asyncio.Event()

    async def lookup(value: dict[str, int]) -> dict[str, int]:
        if value["i"] == 0:
            await release.wait()
            return value
        msg = f"the store failed for {value['i']}"
        raise ConnectionError(msg)

    def dead_letter_job() -> StreamEnvironment:
        env = StreamEnvironment(
            None, tmp_path / "cp", name="dead", errors_path=tmp_path / "errors.jsonl"
        )
        (
            env.from_source(sources.jsonl(tmp_path / "in.jsonl"))
            .ordered_wait(lookup, capacity=100, on_error="dead_letter")
            .sink_to(sinks.jsonl(tmp_path / "out.jsonl"))
        )
        return env

    env = dead_letter_job()
    run = asyncio.ensure_future(env.execute_async())
    await until(
        lambda: bool(env.progress().operators) and env.progress().operators[0].failures == 49,
        "49 elements failed",
    )
    env.stop()
    stopped = await asyncio.wait_for(run, 30)
    assert stopped.stopped
    # Not emitted yet (the first element holds them back): no dead letter was written.
    assert stopped.dead_letters == 0
    assert not (tmp_path / "errors.jsonl").read_text()

    release.set()
    resumed = await dead_letter_job().execute_async()
    assert resumed.restored_from == stopped.last_checkpoint
    entries = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["event"]["i"] for e in entries) == list(range(1, 50))
    assert {e["kind"] for e in entries} == {"lookup_failed"}
    assert [e["line"] for e in entries] == list(range(2, 51))
    assert resumed.totals is not None
    assert (resumed.totals.events_out, resumed.totals.dead_letters) == (1, 49)
