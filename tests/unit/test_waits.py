"""The async-iterator helpers: ordered_wait, unordered_wait, key_ordered_wait."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import pytest

from asyncwait import (
    AsyncFunction,
    AsyncFunctionError,
    AsyncTimeoutError,
    key_ordered_wait,
    ordered_wait,
    unordered_wait,
)
from asyncwait.retry import fixed_delay
from tests.helpers import Gate, settle


def now() -> float:
    return asyncio.get_running_loop().time()


async def _sleepy(value: int) -> int:
    await asyncio.sleep(value / 10)
    return value


async def _agen(values: list[int]) -> AsyncIterator[int]:
    for value in values:
        await asyncio.sleep(0)
        yield value


@pytest.mark.looptime
async def test_ordered_wait_yields_in_input_order() -> None:
    results = [v async for v in ordered_wait([3, 1, 2], _sleepy)]
    assert results == [3, 1, 2]
    assert now() == 0.3  # all three ran concurrently


@pytest.mark.looptime
async def test_unordered_wait_yields_in_completion_order() -> None:
    results = [v async for v in unordered_wait([3, 1, 2], _sleepy)]
    assert results == [1, 2, 3]
    assert now() == 0.3


@pytest.mark.looptime
async def test_key_ordered_wait_runs_one_call_per_key_in_input_order() -> None:
    log: list[tuple[float, str]] = []

    async def upsert(event: tuple[str, int]) -> str:
        log.append((now(), f"{event[0]}{event[1]}"))
        await asyncio.sleep(event[1] / 10)
        return f"{event[0]}{event[1]}"

    events = [("a", 3), ("b", 1), ("a", 1), ("b", 1)]
    results = [v async for v in key_ordered_wait(events, upsert, key=lambda e: e[0])]
    assert results == ["b1", "b1", "a3", "a1"]
    assert log == [(0.0, "a3"), (0.0, "b1"), (0.1, "b1"), (0.3, "a1")]


@pytest.mark.looptime
@pytest.mark.parametrize("helper", ["ordered", "unordered", "key_ordered"])
async def test_helpers_accept_async_iterables(helper: str) -> None:
    results = [v async for v in _helper(helper, _agen([2, 1, 3]), _sleepy)]
    assert sorted(results) == [1, 2, 3]
    if helper == "ordered":
        assert results == [2, 1, 3]


def _helper(name: str, source: Any, function: Any, **options: Any) -> AsyncIterator[Any]:
    if name == "ordered":
        return ordered_wait(source, function, **options)
    if name == "unordered":
        return unordered_wait(source, function, **options)
    return key_ordered_wait(source, function, key=lambda value: value, **options)


async def test_an_async_function_yields_each_of_its_outputs() -> None:
    class Split(AsyncFunction[str, str]):
        async def async_invoke(self, value: str) -> list[str]:
            return list(value)

    assert [v async for v in ordered_wait(["ab", "", "c"], Split())] == ["a", "b", "c"]


async def test_a_plain_function_yields_exactly_one_output_per_value() -> None:
    async def listed(value: int) -> list[int] | None:
        return None if value == 0 else [value] * value

    assert [v async for v in ordered_wait([0, 1, 2], listed)] == [None, [1], [2, 2]]


async def test_an_empty_source_yields_nothing() -> None:
    assert [v async for v in unordered_wait([], _sleepy)] == []


async def test_a_failure_raises_from_the_iterator() -> None:
    error = LookupError("missing")

    async def lookup(value: int) -> int:
        if value == 2:
            raise error
        return value

    results: list[int] = []

    async def consume() -> None:
        async for value in ordered_wait(range(5), lookup):
            results.append(value)

    with pytest.raises(AsyncFunctionError) as info:
        await consume()
    assert info.value.__cause__ is error
    assert info.value.record is not None
    assert info.value.record.value == 2
    assert results[:2] == [0, 1]
    assert 2 not in results


async def test_a_failing_source_raises_from_the_iterator() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        async for _ in ordered_wait(source(), _sleepy):
            pass


async def test_a_source_that_is_not_iterable_is_rejected() -> None:
    with pytest.raises(TypeError, match="iterable"):
        await anext(ordered_wait(42, _sleepy))  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_timeout_and_retry_are_passed_through() -> None:
    attempts: dict[int, int] = {}

    async def flaky(value: int) -> int:
        attempts[value] = attempts.get(value, 0) + 1
        if attempts[value] == 1:
            raise ConnectionError("first attempt fails")
        return value

    results = [v async for v in unordered_wait([1, 2], flaky, retry=fixed_delay(1, 0.5))]
    assert sorted(results) == [1, 2]
    assert now() == 0.5

    async def hang(value: int) -> int:
        await asyncio.Event().wait()
        return value

    with pytest.raises(AsyncFunctionError) as info:
        async for _ in ordered_wait([1], hang, timeout=2.0):
            pass
    assert isinstance(info.value.__cause__, AsyncTimeoutError)
    assert now() == 2.5


@pytest.mark.parametrize("helper", ["ordered", "unordered", "key_ordered"])
async def test_capacity_bounds_the_calls_in_flight(helper: str) -> None:
    gate = Gate()
    results: list[int] = []

    async def consume() -> None:
        async for value in _helper(helper, range(10), gate, capacity=3):
            results.append(value)

    consumer = asyncio.create_task(consume())
    while not consumer.done():
        await settle()
        assert gate.running <= 3
        if gate.pending():
            gate.release(gate.pending()[-1])
    await consumer
    assert gate.max_running == 3
    assert sorted(results) == list(range(10))


def _first_done_then(gate: Gate) -> Any:
    async def fn(value: int) -> int:
        if value == 0:
            return 0
        result: int = await gate(value)
        return result

    return fn


async def test_aclose_cancels_the_work_in_flight() -> None:
    gate = Gate()
    closed = 0

    class Fn(AsyncFunction[int, int]):
        async def async_invoke(self, value: int) -> list[int]:
            if value == 0:
                return [0]
            return [await gate(value)]

        async def close(self) -> None:
            nonlocal closed
            closed += 1

    iterator = ordered_wait([0, 1, 2, 3], Fn(), capacity=4)
    assert await anext(iterator) == 0
    await settle()
    assert gate.pending() == [1, 2, 3]
    await iterator.aclose()  # type: ignore[attr-defined]
    assert sorted(gate.cancelled) == [1, 2, 3]
    assert closed == 1


async def test_leaving_an_aclosing_block_early_cancels_the_work_in_flight() -> None:
    gate = Gate()
    fn = _first_done_then(gate)
    async with aclosing(unordered_wait([0, 1, 2], fn)) as results:  # type: ignore[type-var]
        async for value in results:
            assert value == 0
            await settle()
            assert gate.pending() == [1, 2]
            break
    assert sorted(gate.cancelled) == [1, 2]


async def test_breaking_out_of_the_loop_cancels_the_work_in_flight() -> None:
    gate = Gate()
    fn = _first_done_then(gate)
    async for value in ordered_wait([0, 1, 2], fn):
        assert value == 0
        await settle()
        assert gate.pending() == [1, 2]
        break
    # The abandoned generator is finalized by the loop's async-generator hooks.
    await settle()
    assert sorted(gate.cancelled) == [1, 2]


async def test_cancelling_the_consumer_cancels_the_work_in_flight() -> None:
    gate = Gate()

    async def consume() -> None:
        async for _ in ordered_wait([1, 2], gate):
            pass

    consumer = asyncio.create_task(consume())
    await settle()
    assert gate.pending() == [1, 2]
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert sorted(gate.cancelled) == [1, 2]
