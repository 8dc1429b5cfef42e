"""Structured concurrency: every task asyncwait starts has an owner, and none outlives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from asyncwait import (
    AsyncFunctionError,
    AsyncWaitOperator,
    ClosedError,
    OutputMode,
    Record,
    StreamElement,
    StreamEnvironment,
    sinks,
    sources,
)
from asyncwait._tasks import TaskOwner
from tests.helpers import Gate, settle


def others() -> set[asyncio.Task[Any]]:
    """Every task of the loop but the test's own."""
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_an_owner_cancels_and_awaits_every_task_it_started() -> None:
    owner = TaskOwner("test")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks = [owner.spawn(forever(), f"t{i}") for i in range(3)]
    await started.wait()
    assert len(owner) == 3
    await owner.aclose()
    assert all(t.cancelled() for t in tasks)
    assert len(owner) == 0
    assert others() == set()
    with pytest.raises(ClosedError, match="test: cannot start 'late', it is closed"):
        owner.spawn(forever(), "late")


async def test_an_owner_closed_from_its_own_task_waits_for_the_others() -> None:
    owner = TaskOwner("test")
    other_ended = asyncio.Event()

    async def other() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            other_ended.set()

    async def closer() -> str:
        await owner.aclose()
        return "closed"

    owner.spawn(other(), "other")
    await settle()
    closing = owner.spawn(closer(), "closer")
    assert await closing == "closed"
    assert other_ended.is_set()


async def test_no_task_is_left_after_closing_an_operator_with_calls_in_flight(
    gate: Gate,
) -> None:
    out: list[StreamElement] = []
    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        gate, mode=OutputMode.UNORDERED, capacity=10, timeout=60
    )
    await op.open(out.append)
    for i in range(5):
        await op.process_element(Record(i))
    await settle()
    assert len(gate.calls) == 5
    assert others()  # the calls' workers
    await op.close()
    assert others() == set()
    assert sorted(gate.cancelled) == [0, 1, 2, 3, 4]


async def test_no_task_is_left_after_a_failing_job() -> None:
    async def boom(value: int) -> int:
        if value == 50:
            raise RuntimeError("boom")
        await asyncio.sleep(0)
        return value

    env = StreamEnvironment(name="failing")
    env.from_collection(range(1000)).unordered_wait(boom, capacity=20).sink_to(sinks.collect())
    with pytest.raises(AsyncFunctionError, match="boom"):
        await env.execute_async()
    assert others() == set()


async def test_no_task_is_left_after_a_cancelled_job(gate: Gate) -> None:
    async def values() -> AsyncIterator[int]:
        for i in range(100):
            yield i

    env = StreamEnvironment(name="cancelled")
    (
        env.from_source(sources.collection(values()))
        .ordered_wait(gate, capacity=10)
        .sink_to(sinks.collect())
    )
    job = asyncio.ensure_future(env.execute_async())
    await settle()
    assert len(gate.calls) == 10  # full: the job waits for the calls
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert others() == set()
    assert len(gate.cancelled) == 10


async def test_no_task_is_left_after_closing_an_iterator_helper_early(gate: Gate) -> None:
    import asyncwait

    it = asyncwait.unordered_wait(range(100), gate, capacity=5)
    first = asyncio.ensure_future(anext(it))
    await settle()
    gate.release(3)
    assert await first == 3
    await it.aclose()  # type: ignore[attr-defined]
    assert others() == set()
