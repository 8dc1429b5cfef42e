"""StreamEnvironment refuses outputs that alias inputs or other outputs, and locks its outputs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncwait import AsyncFunction, AsyncFunctionError, ConfigError, lookups, sinks, sources
from asyncwait._locks import FOLDER_LOCK, lock_outputs
from asyncwait._paths import Access, PathUse, resolve
from asyncwait.cli import demo
from asyncwait.runtime import StreamEnvironment


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "events.jsonl").write_text('{"k": 1}\n{"k": 2}\n')
    with contextlib.closing(sqlite3.connect(tmp_path / "dim.db")) as db:
        db.execute("CREATE TABLE dim (k INTEGER PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO dim VALUES (1, 'one')")
        db.commit()
    return tmp_path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes (links as their target's)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


@contextlib.contextmanager
def unchanged(folder: Path) -> Iterator[None]:
    before = snapshot(folder)
    yield
    assert snapshot(folder) == before


def lock_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.lock"))


def refused(env: StreamEnvironment) -> str:
    with pytest.raises(ConfigError) as info:
        env.execute()
    return str(info.value)


def test_a_sink_onto_the_source_is_refused_and_the_source_kept(data: Path) -> None:
    env = StreamEnvironment(name="same")
    env.from_source(sources.jsonl(data / "events.jsonl")).sink_to(
        sinks.jsonl(data / "sub" / ".." / "events.jsonl")
    )
    (data / "sub").mkdir()
    with unchanged(data):
        message = refused(env)
    events = str(data / "events.jsonl")
    assert message.startswith(f"job 'same': sink '{data / 'sub' / '..' / 'events.jsonl'}' and ")
    assert f"jsonl source {events!r} are the same file ({events})" in message


@pytest.mark.parametrize("name", ["dim.db", "dim.db-wal", "dim.db-journal"])
def test_a_sink_onto_a_lookup_database_is_refused(data: Path, name: str) -> None:
    env = StreamEnvironment(name="db")
    table = lookups.sqlite(data / "dim.db", table="dim", key="k")
    env.from_source(sources.jsonl(data / "events.jsonl")).lookup_join(table, on="k").sink_to(
        sinks.csv(data / name)
    )
    with unchanged(data):
        message = refused(env)
    assert f"and lookup {table.name}" in message
    assert ("(its " in message) == (name != "dim.db")


def test_a_wrapped_table_still_declares_its_files(data: Path) -> None:
    env = StreamEnvironment(name="db")
    table = demo.slowed(0.001)(lookups.sqlite(data / "dim.db", table="dim", key="k"))
    env.from_source(sources.jsonl(data / "events.jsonl")).lookup_join(table, on="k").sink_to(
        sinks.jsonl(data / "dim.db")
    )
    with unchanged(data):
        assert "are the same file" in refused(env)


def test_the_errors_file_may_not_be_an_input_or_an_output(data: Path) -> None:
    for errors in ("events.jsonl", "out.jsonl"):
        env = StreamEnvironment(name="errs", errors_path=data / errors)
        env.from_source(sources.jsonl(data / "events.jsonl")).sink_to(
            sinks.jsonl(data / "out.jsonl")
        )
        with unchanged(data):
            assert "errors_path and " in refused(env)


def test_two_sinks_may_not_write_one_file(data: Path) -> None:
    env = StreamEnvironment(name="two")
    env.from_collection([1]).sink_to(sinks.jsonl(data / "out.jsonl"))
    env.from_collection([2]).sink_to(sinks.jsonl(data / "link.jsonl"))
    (data / "link.jsonl").symlink_to("out.jsonl")
    with unchanged(data):
        assert "two outputs would overwrite each other" in refused(env)


def test_the_checkpoint_folder_may_not_hold_an_input(data: Path) -> None:
    # The job's checkpoints go to <checkpoint_dir>/<name>/: here, the data folder itself.
    env = StreamEnvironment(1.0, data.parent, name=data.name)
    env.from_source(sources.jsonl(data / "events.jsonl")).sink_to(sinks.collect())
    with unchanged(data):
        message = refused(env)
    assert f"is inside checkpoint_dir ({data})" in message


def test_an_async_function_may_declare_its_files(data: Path) -> None:
    class Writes(AsyncFunction[Any, Any]):
        def paths(self) -> tuple[PathUse, ...]:
            return (PathUse("my function's log", data / "events.jsonl", Access.WRITE),)

        async def async_invoke(self, value: Any) -> list[Any]:
            return [value]

    env = StreamEnvironment(name="fn")
    env.from_source(sources.jsonl(data / "events.jsonl")).ordered_wait(Writes()).sink_to(
        sinks.collect()
    )
    with unchanged(data):
        assert "my function's log and jsonl source" in refused(env)


def test_an_output_folder_that_is_missing_is_refused_before_anything_is_written(
    data: Path,
) -> None:
    (data / "errors.jsonl").write_text("earlier errors\n")
    env = StreamEnvironment(name="missing", errors_path=data / "errors.jsonl")
    env.from_source(sources.jsonl(data / "events.jsonl")).sink_to(
        sinks.jsonl(data / "nope" / "out.jsonl")
    )
    with unchanged(data):
        message = refused(env)
    assert message == f"job 'missing': sink {str(data / 'nope' / 'out.jsonl')!r}: " + (
        f"folder does not exist: {data / 'nope'}"
    )


# ------------------------------------------------------------------ locks


def test_an_output_locked_by_another_run_is_refused_untouched(data: Path) -> None:
    (data / "out.jsonl").write_text("the other run's output\n")
    other = resolve(PathUse("sink.path", data / "out.jsonl", Access.WRITE))
    env = StreamEnvironment(name="second")
    env.from_source(sources.jsonl(data / "events.jsonl")).sink_to(sinks.jsonl(data / "out.jsonl"))
    with lock_outputs([other], owner="first"), unchanged(data):
        message = refused(env)
    assert f"is being written by another run: process {os.getpid()} on host" in message
    assert str(data / ".out.jsonl.lock") in message


def test_every_output_is_locked_while_the_job_runs(data: Path) -> None:
    seen: list[set[str]] = []

    def look(value: Any) -> Any:
        seen.append(
            {p.name for p in data.rglob(".*.lock")} | {p.name for p in data.rglob(FOLDER_LOCK)}
        )
        return value

    env = StreamEnvironment(1.0, data / "cp", name="locked", errors_path=data / "errors.jsonl")
    env.from_source(sources.jsonl(data / "events.jsonl")).map(look).sink_to(
        sinks.jsonl(data / "out.jsonl")
    )
    env.execute()
    assert seen[0] == {".out.jsonl.lock", ".errors.jsonl.lock", FOLDER_LOCK}
    # Released and removed at the end: no lock file left, and the outputs can be locked.
    assert list(data.rglob("*.lock")) == []


async def test_locks_are_released_when_the_job_fails_or_is_cancelled(data: Path) -> None:
    def boom(value: Any) -> Any:
        raise RuntimeError("boom")

    env = StreamEnvironment(name="fails")
    env.from_source(sources.jsonl(data / "events.jsonl")).map(boom).sink_to(
        sinks.jsonl(data / "out.jsonl")
    )
    with pytest.raises(AsyncFunctionError, match="boom"):
        await env.execute_async()
    assert lock_files(data) == []

    started = asyncio.Event()
    forever = asyncio.Event()

    async def hang(value: Any) -> Any:
        started.set()
        await forever.wait()
        return value

    env = StreamEnvironment(name="cancelled")
    env.from_source(sources.jsonl(data / "events.jsonl")).ordered_wait(hang).sink_to(
        sinks.jsonl(data / "out.jsonl")
    )
    run = asyncio.ensure_future(env.execute_async())
    await started.wait()
    assert lock_files(data) == [".out.jsonl.lock"]
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert lock_files(data) == []
    out = resolve(PathUse("sink.path", data / "out.jsonl", Access.WRITE))
    lock_outputs([out], owner="next").release()  # free again
