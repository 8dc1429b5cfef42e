"""Snapshot and restore: the inputs of every un-emitted element, replayed on restore."""

import asyncio
from typing import Any

import pytest

from asyncwait import AsyncWaitOperator, OutputMode, Record, StreamElement, Watermark
from asyncwait.retry import fixed_delay
from tests.helpers import Gate, GatedFunction, plain, settle


def _key(value: Any) -> Any:
    return value[0] if isinstance(value, str) else value


def _operator(fn: Any, mode: OutputMode, **options: Any) -> AsyncWaitOperator[Any, Any]:
    key = _key if mode is OutputMode.KEY_ORDERED else None
    return AsyncWaitOperator(fn, mode=mode, key=key, **options)


async def test_ordered_snapshot_holds_every_unemitted_input_in_input_order(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = _operator(gate, OutputMode.ORDERED)
    await op.open(out.append)
    await op.process_element(Record("a", 1))
    await op.process_element(Record("b", 2))
    await op.process_watermark(Watermark(2))
    await op.process_element(Record("c"))
    await settle()
    gate.release("b", "B")  # complete, not emitted: its input is still in the snapshot
    await settle()
    assert op.snapshot_state() == [Record("a", 1), Record("b", 2), Watermark(2), Record("c")]
    gate.release("a")
    await settle()
    assert plain(out) == ["a", "B", ("W", 2)]
    assert op.snapshot_state() == [Record("c")]
    gate.release("c")
    await op.end_input()
    assert op.snapshot_state() == []
    await op.close()


@pytest.mark.parametrize("mode", [OutputMode.UNORDERED, OutputMode.KEY_ORDERED], ids=str)
async def test_unordered_snapshot_is_in_input_order_not_completion_order(
    out: list[StreamElement], mode: OutputMode
) -> None:
    gate = Gate(key=_key)
    op = _operator(gate, mode)
    await op.open(out.append)
    elements: list[StreamElement] = [
        Record("a1"),
        Record("b1"),
        Watermark(1),
        Record("a2"),
        Record("c1"),
    ]
    for element in elements:
        if isinstance(element, Watermark):
            await op.process_watermark(element)
        else:
            await op.process_element(element)
    await settle()
    gate.release("b1")  # emitted: gone from the snapshot
    gate.release("c1")  # complete but behind the watermark: still there
    await settle()
    assert plain(out) == ["b1"]
    assert op.snapshot_state() == [Record("a1"), Watermark(1), Record("a2"), Record("c1")]
    await op.close()


async def test_snapshot_includes_an_input_waiting_for_admission_last(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = _operator(gate, OutputMode.UNORDERED, capacity=2)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    blocked = asyncio.create_task(op.process_watermark(Watermark(9)))
    await settle()
    assert op.snapshot_state() == [Record("a"), Record("b"), Watermark(9)]
    gate.release("b")
    await settle()
    assert blocked.done()
    assert op.snapshot_state() == [Record("a"), Watermark(9)]
    await op.close()


@pytest.mark.looptime
async def test_snapshot_includes_elements_waiting_for_a_retry_or_timing_out(
    out: list[StreamElement],
) -> None:
    async def fallback(value: str) -> list[str]:
        await asyncio.sleep(1.0)
        return ["fb"]

    class Fn(GatedFunction):
        async def async_invoke(self, value: str) -> list[str]:
            if value == "retrying":
                raise ConnectionError("down")
            await asyncio.sleep(10)
            return [value]

    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        Fn(Gate(), on_timeout=fallback),
        mode=OutputMode.UNORDERED,
        timeout=2.0,
        retry=fixed_delay(5, 5.0),
    )
    await op.open(out.append)
    await op.process_element(Record("retrying"))
    await op.process_element(Record("slow"))
    await asyncio.sleep(2.5)  # both timed out at 2.0; the async hook runs until 3.0
    assert op.snapshot_state() == [Record("retrying"), Record("slow")]
    await op.end_input()
    assert op.snapshot_state() == []
    assert plain(out) == ["fb", "fb"]
    await op.close()


async def test_snapshot_includes_a_partly_emitted_record(gate: Gate) -> None:
    loop = asyncio.get_running_loop()
    ack: asyncio.Future[None] = loop.create_future()
    emitted: list[StreamElement] = []

    def emit(element: StreamElement) -> asyncio.Future[None] | None:
        emitted.append(element)
        return ack if len(emitted) == 1 else None

    op: AsyncWaitOperator[str, list[str]] = AsyncWaitOperator(GatedFunction(gate))
    await op.open(emit)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    await settle()
    gate.release("a", ["a1", "a2"])
    await settle()
    assert plain(emitted) == ["a1"]
    assert op.snapshot_state() == [Record("a"), Record("b")]
    ack.set_result(None)
    await settle()
    assert plain(emitted) == ["a1", "a2"]
    assert op.snapshot_state() == [Record("b")]
    await op.close()


async def test_snapshot_is_a_fresh_list(gate: Gate, out: list[StreamElement]) -> None:
    op = _operator(gate, OutputMode.ORDERED)
    await op.open(out.append)
    await op.process_element(Record("a"))
    snapshot = op.snapshot_state()
    snapshot.clear()
    assert op.snapshot_state() == [Record("a")]
    await op.close()


@pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)
async def test_restore_replays_the_snapshot_before_open_returns(mode: OutputMode) -> None:
    gate = Gate()
    first_out: list[StreamElement] = []
    first = _operator(gate, mode)
    await first.open(first_out.append)
    await first.process_element(Record("a1", 1))
    await first.process_watermark(Watermark(1))
    await first.process_element(Record("b1", 2))
    await first.process_element(Record("a2", 3))
    snapshot = first.snapshot_state()
    await first.close()
    assert first_out == []

    calls: list[str] = []

    async def upper(value: str) -> str:
        calls.append(value)
        return value.upper()

    out: list[StreamElement] = []
    second = _operator(upper, mode)
    await second.open(out.append, restored=snapshot)
    assert second.snapshot_state() == snapshot  # all admitted again before open returned
    await second.process_element(Record("c1", 4))
    await second.end_input()
    await second.close()
    assert sorted(calls) == ["a1", "a2", "b1", "c1"]
    assert out[:2] == [Record("A1", 1), Watermark(1)]
    after = [Record("B1", 2), Record("A2", 3), Record("C1", 4)]
    if mode is OutputMode.ORDERED:
        assert out[2:] == after
    else:
        assert sorted(plain(out[2:])) == ["A2", "B1", "C1"]


@pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)
async def test_restoring_more_elements_than_capacity_does_not_deadlock(
    out: list[StreamElement], mode: OutputMode
) -> None:
    restored: list[StreamElement] = [Record(f"k{i % 3}-{i}", i) for i in range(10)]
    restored.insert(4, Watermark(3))

    async def fn(value: str) -> str:
        await asyncio.sleep(0)
        return value

    op = _operator(fn, mode, capacity=2)
    await op.open(out.append, restored=restored)
    await op.end_input()
    await op.close()
    assert sorted(plain(out), key=str) == sorted(plain(restored), key=str)
    if mode is OutputMode.ORDERED:
        assert out == restored


async def test_restoring_more_than_capacity_waits_for_slots_like_normal_input(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = _operator(gate, OutputMode.ORDERED, capacity=2)
    opening = asyncio.create_task(op.open(out.append, restored=[Record(i) for i in range(5)]))
    for value in range(5):
        await settle()
        assert opening.done() == (value >= 3)  # returns once the last one is admitted
        assert gate.pending() == [v for v in (value, value + 1) if v < 5]
        gate.release(value)
    await opening
    await op.end_input()
    await op.close()
    assert plain(out) == [0, 1, 2, 3, 4]


@pytest.mark.looptime
async def test_restored_elements_get_fresh_attempts_and_deadlines(
    out: list[StreamElement],
) -> None:
    loop = asyncio.get_running_loop()
    calls: list[float] = []

    async def failing(value: str) -> str:
        calls.append(loop.time())
        raise ConnectionError("down")

    retry = fixed_delay(1, 0.5)
    first: AsyncWaitOperator[str, str] = AsyncWaitOperator(failing, timeout=2.0, retry=retry)
    await first.open(lambda element: None)
    await first.process_element(Record("a"))
    await asyncio.sleep(0.75)  # both attempts made; the failure is pending in the queue
    snapshot = [Record("a")]
    await first.close()
    assert calls == [0.0, 0.5]

    class Fallback(GatedFunction):
        async def async_invoke(self, value: str) -> list[str]:
            calls.append(loop.time())
            await asyncio.sleep(10)
            return [value]

    second: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        Fallback(Gate(), on_timeout=lambda value: [f"{value}@{loop.time()}"]),
        timeout=2.0,
        retry=retry,
    )
    await second.open(out.append, restored=snapshot)
    await second.end_input()
    assert calls == [0.0, 0.5, 0.75]
    assert plain(out) == ["a@2.75"]  # the deadline counts from the restore
    await second.close()
