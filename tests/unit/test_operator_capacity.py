"""Capacity and backpressure: what holds a slot, when it frees, and an awaitable emit."""

import asyncio
from typing import Any

import pytest

from asyncwait import AsyncWaitOperator, OutputMode, Record, StreamElement, Watermark
from tests.helpers import Gate, plain, settle


def _key(value: Any) -> Any:
    return value[0] if isinstance(value, str) else value


def _operator(gate: Gate, mode: OutputMode, capacity: int) -> AsyncWaitOperator[Any, Any]:
    key = _key if mode is OutputMode.KEY_ORDERED else None
    return AsyncWaitOperator(gate, mode=mode, key=key, capacity=capacity)


@pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)
async def test_a_full_operator_makes_process_element_wait_until_a_slot_frees(
    gate: Gate, out: list[StreamElement], mode: OutputMode
) -> None:
    op = _operator(gate, mode, capacity=2)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    blocked = asyncio.create_task(op.process_element(Record("c")))
    await settle()
    assert not blocked.done()
    assert gate.pending() == ["a", "b"]  # the function is invoked only after admission
    assert op.statistics().queued == 2
    gate.release("a")
    await settle()
    assert blocked.done()
    assert gate.pending() == ["b", "c"]
    gate.release("b")
    gate.release("c")
    await op.end_input()
    await op.close()
    assert plain(out) == ["a", "b", "c"]


async def test_completed_but_unemitted_records_hold_their_slot(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = _operator(gate, OutputMode.ORDERED, capacity=2)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    blocked = asyncio.create_task(op.process_element(Record("c")))
    await settle()
    gate.release("b")  # complete, but waits behind a
    await settle()
    stats = op.statistics()
    assert (stats.in_flight, stats.queued) == (1, 2)
    assert not blocked.done()
    assert "c" not in gate.calls
    gate.release("a")  # a and b go out: two slots free
    await settle()
    assert blocked.done()
    assert plain(out) == ["a", "b"]
    assert gate.pending() == ["c"]
    gate.release("c")
    await op.end_input()
    await op.close()


@pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)
async def test_watermarks_hold_a_slot(
    gate: Gate, out: list[StreamElement], mode: OutputMode
) -> None:
    op = _operator(gate, mode, capacity=2)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.process_watermark(Watermark(1))
    assert op.statistics().queued == 2
    blocked_record = asyncio.create_task(op.process_element(Record("b")))
    await settle()
    assert not blocked_record.done()
    assert gate.pending() == ["a"]
    gate.release("a")  # a and the watermark go out
    await settle()
    assert blocked_record.done()
    assert plain(out) == ["a", ("W", 1)]
    # A watermark waits for a slot too.
    await op.process_element(Record("c"))
    blocked_watermark = asyncio.create_task(op.process_watermark(Watermark(2)))
    await settle()
    assert not blocked_watermark.done()
    gate.release("b")
    await settle()
    assert blocked_watermark.done()
    gate.release("c")
    await op.end_input()
    await op.close()
    assert plain(out)[2:] in (["b", "c", ("W", 2)], ["c", "b", ("W", 2)])


async def test_records_waiting_for_their_key_hold_a_slot(out: list[StreamElement]) -> None:
    gate = Gate(key=_key)
    op = _operator(gate, OutputMode.KEY_ORDERED, capacity=2)
    await op.open(out.append)
    await op.process_element(Record("a1"))
    await op.process_element(Record("a2"))  # waits for a1
    blocked = asyncio.create_task(op.process_element(Record("b1")))
    await settle()
    assert not blocked.done()
    assert gate.pending() == ["a1"]
    assert op.statistics().in_flight == 2
    gate.release("a1")
    await settle()
    assert blocked.done()
    assert gate.pending() == ["a2", "b1"]
    gate.release("a2")
    gate.release("b1")
    await op.end_input()
    await op.close()


@pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize("capacity", [1, 3])
async def test_never_more_calls_than_capacity(
    gate: Gate, out: list[StreamElement], mode: OutputMode, capacity: int
) -> None:
    op = _operator(gate, mode, capacity=capacity)
    await op.open(out.append)

    async def feed() -> None:
        for value in range(12):
            await op.process_element(Record(value))
        await op.end_input()

    feeder = asyncio.create_task(feed())
    released = 0
    while not feeder.done():
        await settle()
        assert op.statistics().queued <= capacity
        pending = gate.pending()
        if pending:
            gate.release(pending[-1])  # newest first: out of input order
            released += 1
    await feeder
    await op.close()
    assert released == 12
    assert gate.max_running == capacity
    assert sorted(plain(out)) == list(range(12))


async def test_an_awaitable_emit_is_awaited_in_order_and_back_pressures(gate: Gate) -> None:
    loop = asyncio.get_running_loop()
    emitted: list[StreamElement] = []
    acks: list[asyncio.Future[None]] = []

    def emit(element: StreamElement) -> asyncio.Future[None]:
        emitted.append(element)
        ack: asyncio.Future[None] = loop.create_future()
        acks.append(ack)
        return ack

    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(gate, mode=OutputMode.UNORDERED, capacity=2)
    await op.open(emit)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    await settle()
    gate.release("a")
    gate.release("b")
    await settle()
    assert plain(emitted) == ["a"]  # b waits until the consumer took a
    blocked = asyncio.create_task(op.process_element(Record("c")))
    await settle()
    assert not blocked.done()  # a's slot frees only once its emit completed
    acks[0].set_result(None)
    await settle()
    assert plain(emitted) == ["a", "b"]
    assert blocked.done()
    assert gate.pending() == ["c"]
    ending = asyncio.create_task(op.end_input())
    gate.release("c")
    await settle()
    assert plain(emitted) == ["a", "b"]
    assert not ending.done()
    acks[1].set_result(None)
    await settle()
    assert plain(emitted) == ["a", "b", "c"]
    assert not ending.done()  # end_input waits for the last emit too
    acks[2].set_result(None)
    await ending
    await op.close()


async def test_an_awaitable_emit_of_a_multi_output_record_keeps_its_order() -> None:
    loop = asyncio.get_running_loop()
    emitted: list[Any] = []
    acks: list[asyncio.Future[None]] = []

    def emit(element: StreamElement) -> asyncio.Future[None] | None:
        emitted.append(plain([element])[0])
        if len(acks) < 2:
            ack: asyncio.Future[None] = loop.create_future()
            acks.append(ack)
            return ack
        return None

    class Fanout:
        async def async_invoke(self, value: str) -> list[str]:
            return [value + "1", value + "2", value + "3"]

    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(Fanout())
    await op.open(emit)
    await op.process_element(Record("a"))
    await op.process_watermark(Watermark(1))
    await op.process_element(Record("b"))
    await settle()
    assert emitted == ["a1"]
    acks[0].set_result(None)
    await settle()
    assert emitted == ["a1", "a2"]
    acks[1].set_result(None)
    await op.end_input()
    await op.close()
    assert emitted == ["a1", "a2", "a3", ("W", 1), "b1", "b2", "b3"]


async def test_capacity_one_processes_one_element_at_a_time(out: list[StreamElement]) -> None:
    running = 0
    most = 0

    async def fn(value: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)
        running -= 1
        return value

    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(fn, mode=OutputMode.UNORDERED, capacity=1)
    await op.open(out.append)
    for value in range(5):
        await op.process_element(Record(value))
    await op.end_input()
    await op.close()
    assert plain(out) == [0, 1, 2, 3, 4]
    assert most == 1


@pytest.mark.looptime
async def test_an_async_def_emit_is_awaited_one_element_at_a_time() -> None:
    loop = asyncio.get_running_loop()
    log: list[tuple[float, Any]] = []

    async def slow_sink(element: StreamElement) -> None:
        log.append((loop.time(), plain([element])[0]))
        await asyncio.sleep(1.0)

    async def fn(value: int) -> int:
        return value

    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(fn, capacity=2)
    await op.open(slow_sink)
    admitted: list[float] = []
    for value in range(4):
        await op.process_element(Record(value))
        admitted.append(loop.time())
    await op.process_watermark(Watermark(9))
    admitted.append(loop.time())
    await op.end_input()
    assert log == [(0.0, 0), (1.0, 1), (2.0, 2), (3.0, 3), (4.0, ("W", 9))]
    # The slow sink back-pressures the input: a slot frees only once its emit is done.
    assert admitted == [0.0, 0.0, 1.0, 2.0, 3.0]
    assert loop.time() == 5.0
    await op.close()
