"""A failed element: emits nothing, frees its slot, and the operator reports the first failure."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from asyncwait import (
    AsyncFunctionError,
    AsyncWaitOperator,
    OutputMode,
    Record,
    StreamElement,
    Watermark,
)
from tests.helpers import Gate, GatedFunction, plain, settle


async def _open(
    gate: Gate, out: list[StreamElement], **options: Any
) -> AsyncWaitOperator[Any, Any]:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(gate, **options)
    await op.open(out.append)
    return op


@pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)
async def test_a_failed_element_emits_nothing_and_the_next_call_raises(
    gate: Gate, out: list[StreamElement], mode: OutputMode
) -> None:
    op = await _open(gate, out, mode=mode, key=lambda value: value)
    await op.process_element(Record("a", 11))
    await op.process_element(Record("b", 12))
    await settle()
    error = ConnectionError("lookup failed")
    gate.fail("a", error)
    await settle()
    with pytest.raises(AsyncFunctionError) as info:
        await op.process_element(Record("c"))
    assert info.value.record == Record("a", 11)
    assert info.value.__cause__ is error
    assert "c" not in gate.calls
    assert out == []
    await op.close()


async def test_a_failed_element_frees_its_slot_and_later_elements_keep_flowing(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = await _open(gate, out, capacity=3)
    await op.process_element(Record("a"))
    await op.process_watermark(Watermark(1))
    await op.process_element(Record("b"))
    await settle()
    gate.fail("a", ValueError("a"))
    await settle()
    assert plain(out) == [("W", 1)]  # the failed head left without output
    assert op.statistics().queued == 1
    gate.release("b")
    await settle()
    assert plain(out) == [("W", 1), "b"]
    stats = op.statistics()
    assert (stats.queued, stats.in_flight, stats.failures) == (0, 0, 1)
    await op.close()


async def test_a_call_waiting_for_a_slot_raises_when_an_element_fails(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = await _open(gate, out, capacity=1)
    await op.process_element(Record("a"))
    blocked = asyncio.create_task(op.process_element(Record("b")))
    blocked_watermark = asyncio.create_task(op.process_watermark(Watermark(5)))
    await settle()
    assert not blocked.done()
    gate.fail("a", KeyError("a"))
    await settle()
    for task in (blocked, blocked_watermark):
        with pytest.raises(AsyncFunctionError) as info:
            await task
        assert info.value.record == Record("a")
        assert isinstance(info.value.__cause__, KeyError)
    assert gate.calls == ["a"]  # b was never admitted
    await op.close()


async def test_a_pending_end_input_raises_when_an_element_fails(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = await _open(gate, out)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    ending = asyncio.create_task(op.end_input())
    await settle()
    assert not ending.done()
    gate.fail("b", TimeoutError("b"))
    await settle()
    assert ending.done()
    with pytest.raises(AsyncFunctionError) as info:
        await ending
    assert info.value.record == Record("b")
    await op.close()


async def test_every_later_call_raises_the_same_failure(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = await _open(gate, out)
    await op.process_element(Record("a"))
    await settle()
    gate.fail("a", OSError("a"))
    await settle()
    raised = []
    calls: list[Callable[[], Awaitable[None]]] = [
        lambda: op.process_element(Record("x")),
        lambda: op.process_watermark(Watermark(1)),
        op.end_input,
    ]
    for call in calls:
        with pytest.raises(AsyncFunctionError) as info:
            await call()
        raised.append(info.value)
    assert raised[0] is raised[1] is raised[2]
    await op.close()


async def test_the_first_failure_is_the_one_reported(gate: Gate, out: list[StreamElement]) -> None:
    op = await _open(gate, out, mode=OutputMode.ORDERED)
    for value in ["a", "b", "c"]:
        await op.process_element(Record(value))
    await settle()
    first = LookupError("c failed first")
    gate.fail("c", first)
    await settle()
    gate.fail("a", LookupError("a failed later"))
    gate.release("b")
    await settle()
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert info.value.record == Record("c")
    assert info.value.__cause__ is first
    assert op.statistics().failures == 2
    assert plain(out) == ["b"]
    await op.close()


async def test_a_non_iterable_result_fails_the_element(out: list[StreamElement]) -> None:
    gate = Gate()
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(GatedFunction(gate))
    await op.open(out.append)
    await op.process_element(Record("a"))
    await settle()
    gate.release("a", None)
    await settle()
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert info.value.record == Record("a")
    assert isinstance(info.value.__cause__, TypeError)
    await op.close()


async def test_a_failing_key_function_raises_from_process_element(
    gate: Gate, out: list[StreamElement]
) -> None:
    def key(value: dict[str, Any]) -> Any:
        return value["user"]

    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(gate, mode=OutputMode.KEY_ORDERED, key=key)
    await op.open(out.append)
    with pytest.raises(AsyncFunctionError) as info:
        await op.process_element(Record({"item": 1}, 4))
    assert info.value.record == Record({"item": 1}, 4)
    assert isinstance(info.value.__cause__, KeyError)
    assert gate.calls == []
    await op.close()


async def test_a_failing_emit_is_reported_by_the_next_call(gate: Gate) -> None:
    error = BrokenPipeError("sink is gone")
    emitted: list[StreamElement] = []

    def emit(element: StreamElement) -> None:
        if emitted:
            raise error
        emitted.append(element)

    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(gate)
    await op.open(emit)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    await settle()
    gate.release("a")
    gate.release("b")
    await settle()
    with pytest.raises(Exception) as info:  # noqa: PT011 - checked below
        await op.end_input()
    assert info.value is error or info.value.__cause__ is error
    assert plain(emitted) == ["a"]
    await op.close()


@pytest.mark.parametrize("element", [Watermark(1), "a", None], ids=["watermark", "str", "none"])
async def test_process_element_takes_records_only(
    gate: Gate, out: list[StreamElement], element: Any
) -> None:
    op = await _open(gate, out)
    with pytest.raises(TypeError):
        await op.process_element(element)
    with pytest.raises(TypeError):
        await op.process_watermark(Record(1))  # type: ignore[arg-type]
    await op.close()


async def test_a_call_raising_cancelled_error_of_its_own_fails_the_element(
    gate: Gate, out: list[StreamElement]
) -> None:
    shared: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def lookup(value: str) -> str:
        if value == "a":
            return await shared  # someone else cancels this future
        return value

    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(lookup, capacity=2)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    await settle()
    shared.cancel()
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert info.value.record == Record("a")
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert plain(out) == ["b"]
    stats = op.statistics()
    assert (stats.in_flight, stats.queued, stats.failures) == (0, 0, 1)
    await op.close()


@pytest.mark.looptime
async def test_a_timeout_hook_raising_cancelled_error_of_its_own_fails_the_element(
    gate: Gate, out: list[StreamElement]
) -> None:
    shared: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

    async def fallback(value: str) -> list[str]:
        asyncio.get_running_loop().call_later(0.5, shared.cancel)
        return await shared

    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        GatedFunction(gate, on_timeout=fallback), timeout=1.0
    )
    await op.open(out.append)
    await op.process_element(Record("a"))
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert asyncio.get_running_loop().time() == 1.5
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    await op.close()
