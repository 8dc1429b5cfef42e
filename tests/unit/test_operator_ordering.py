"""Output order per mode: completion order is chosen by the test via a Gate."""

import asyncio
from typing import Any

import pytest

from asyncwait import AsyncWaitOperator, OutputMode, Record, StreamElement, Watermark
from tests.helpers import Gate, GatedFunction, plain, settle


def _key(value: Any) -> Any:
    return value[0] if isinstance(value, str) else value


async def _open(
    gate: Gate, out: list[StreamElement], mode: OutputMode, **options: Any
) -> AsyncWaitOperator[Any, Any]:
    key = _key if mode is OutputMode.KEY_ORDERED else None
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(gate, mode=mode, key=key, **options)
    await op.open(out.append)
    return op


@pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)
async def test_a_watermark_with_nothing_ahead_is_emitted_during_process_watermark(
    gate: Gate, out: list[StreamElement], mode: OutputMode
) -> None:
    op = await _open(gate, out, mode)
    await op.process_watermark(Watermark(5))
    assert out == [Watermark(5)]  # no yield to the loop in between
    await op.process_element(Record("a1"))
    await op.process_watermark(Watermark(6))
    await settle()
    assert out == [Watermark(5)]  # a1 is ahead of it
    gate.release("a1")
    await op.end_input()
    assert out == [Watermark(5), Record("a1"), Watermark(6)]
    await op.close()


async def test_ordered_emits_in_input_order_whatever_the_completion_order(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = await _open(gate, out, OutputMode.ORDERED)
    for value in ["a", "b", "c", "d"]:
        await op.process_element(Record(value))
    await settle()
    assert gate.pending() == ["a", "b", "c", "d"]  # all four run concurrently
    for value, emitted in [("c", []), ("d", []), ("b", []), ("a", ["a", "b", "c", "d"])]:
        gate.release(value)
        await settle()
        assert plain(out) == emitted
    await op.end_input()
    await op.close()


async def test_ordered_emits_each_record_as_soon_as_everything_before_it_is_out(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = await _open(gate, out, OutputMode.ORDERED)
    for value in ["a", "b", "c"]:
        await op.process_element(Record(value))
    await settle()
    gate.release("a")
    await settle()
    assert plain(out) == ["a"]
    gate.release("c")
    await settle()
    assert plain(out) == ["a"]
    gate.release("b")
    await settle()
    assert plain(out) == ["a", "b", "c"]
    await op.close()


async def test_ordered_keeps_watermarks_in_place(gate: Gate, out: list[StreamElement]) -> None:
    op = await _open(gate, out, OutputMode.ORDERED)
    await op.process_element(Record("a", 1))
    await op.process_watermark(Watermark(1))
    await op.process_element(Record("b", 2))
    await op.process_watermark(Watermark(2))
    await settle()
    gate.release("b")
    await settle()
    assert out == []
    gate.release("a")
    await op.end_input()
    assert out == [Record("a", 1), Watermark(1), Record("b", 2), Watermark(2)]
    await op.close()


async def test_unordered_emits_in_completion_order(gate: Gate, out: list[StreamElement]) -> None:
    op = await _open(gate, out, OutputMode.UNORDERED)
    for value in ["a", "b", "c"]:
        await op.process_element(Record(value))
    await settle()
    for value in ["b", "c", "a"]:
        gate.release(value)
        await settle()
    assert plain(out) == ["b", "c", "a"]
    await op.close()


@pytest.mark.parametrize("mode", [OutputMode.UNORDERED, OutputMode.KEY_ORDERED], ids=str)
async def test_unordered_modes_never_cross_a_watermark(
    gate: Gate, out: list[StreamElement], mode: OutputMode
) -> None:
    op = await _open(gate, out, mode)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    await op.process_watermark(Watermark(10))
    await op.process_element(Record("c"))
    await op.process_element(Record("d"))
    await settle()
    gate.release("d")  # completes first, but the watermark ahead holds it
    gate.release("b")
    await settle()
    assert plain(out) == ["b"]
    gate.release("c")
    await settle()
    assert plain(out) == ["b"]
    gate.release("a")  # the watermark may now go, then c and d in completion order
    await settle()
    assert plain(out) == ["b", "a", ("W", 10), "d", "c"]
    await op.end_input()
    await op.close()


async def test_key_ordered_runs_one_call_per_key_in_input_order(out: list[StreamElement]) -> None:
    gate = Gate(key=_key)
    op = await _open(gate, out, OutputMode.KEY_ORDERED)
    for value in ["a1", "b1", "a2", "c1", "a3", "b2"]:
        await op.process_element(Record(value))
    await settle()
    assert gate.pending() == ["a1", "b1", "c1"]  # different keys run concurrently
    gate.release("c1")
    await settle()
    assert plain(out) == ["c1"]
    gate.release("a1")
    await settle()
    assert gate.pending() == ["b1", "a2"]  # a2 starts only after a1 completed
    gate.release("b1")
    await settle()
    assert gate.pending() == ["a2", "b2"]
    gate.release("b2")
    gate.release("a2")
    await settle()
    gate.release("a3")
    await op.end_input()
    await op.close()
    assert plain(out) == ["c1", "a1", "b1", "b2", "a2", "a3"]
    assert gate.calls == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert gate.max_per_key == 1
    assert gate.max_running == 3


async def test_key_ordered_keeps_per_key_order_across_watermarks(out: list[StreamElement]) -> None:
    gate = Gate(key=_key)
    op = await _open(gate, out, OutputMode.KEY_ORDERED)
    await op.process_element(Record("a1"))
    await op.process_watermark(Watermark(1))
    await op.process_element(Record("a2"))
    await op.process_element(Record("b1"))
    await settle()
    assert gate.pending() == ["a1", "b1"]  # a2 waits for a1 even behind a watermark
    gate.release("b1")
    gate.release("a1")
    await settle()
    gate.release("a2")
    await op.end_input()
    await op.close()
    assert plain(out) == ["a1", ("W", 1), "b1", "a2"]


async def test_key_ordered_with_one_key_is_sequential(out: list[StreamElement]) -> None:
    gate = Gate(key=lambda value: "same")
    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        gate, mode=OutputMode.KEY_ORDERED, key=lambda value: "same", capacity=10
    )
    await op.open(out.append)
    for value in range(5):
        await op.process_element(Record(value))
    for value in range(5):
        await settle()
        assert gate.pending() == [value]
        gate.release(value)
    await op.end_input()
    await op.close()
    assert plain(out) == [0, 1, 2, 3, 4]
    assert gate.max_running == 1


@pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)
async def test_all_outputs_of_one_input_are_emitted_together_with_its_timestamp(
    out: list[StreamElement], mode: OutputMode
) -> None:
    gate = Gate()
    key = _key if mode is OutputMode.KEY_ORDERED else None
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(GatedFunction(gate), mode=mode, key=key)
    await op.open(out.append)
    await op.process_element(Record("a", 100))
    await op.process_element(Record("b"))
    await settle()
    gate.release("b", ["b1", "b2"])
    gate.release("a", ["a1", "a2", "a3"])
    await op.end_input()
    await op.close()
    a_out = [Record("a1", 100), Record("a2", 100), Record("a3", 100)]
    b_out = [Record("b1"), Record("b2")]
    if mode is OutputMode.ORDERED:
        assert out == a_out + b_out
    else:
        assert out in (a_out + b_out, b_out + a_out)


async def test_unordered_completions_in_one_loop_step_keep_their_completion_order(
    gate: Gate, out: list[StreamElement]
) -> None:
    op = await _open(gate, out, OutputMode.UNORDERED, capacity=10)
    for value in range(6):
        await op.process_element(Record(value))
    await settle()
    for value in [4, 1, 5, 0, 3, 2]:
        gate.release(value)
    await op.end_input()
    await op.close()
    assert plain(out) == [4, 1, 5, 0, 3, 2]


async def test_the_function_is_called_with_the_record_value(out: list[StreamElement]) -> None:
    seen: list[Any] = []

    async def fn(value: Any) -> Any:
        seen.append(value)
        await asyncio.sleep(0)
        return value

    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(fn)
    await op.open(out.append)
    await op.process_element(Record({"user": 1}, 9))
    await op.end_input()
    await op.close()
    assert seen == [{"user": 1}]
    assert out == [Record({"user": 1}, 9)]
