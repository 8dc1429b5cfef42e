"""Properties of the operator under random completion orders, watermarks, keys and capacity."""

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncwait import AsyncWaitOperator, OutputMode, Record, StreamElement, Watermark
from tests.helpers import Gate, GatedFunction
from tests.property.checks import check_order
from tests.property.strategies import Feeder, drive, element_key, key_of, operator, streams

MODES = pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)


@MODES
@settings(max_examples=80, deadline=None)
@given(elements=streams(), capacity=st.integers(1, 5), data=st.data())
async def test_completion_order_never_breaks_the_mode(
    mode: OutputMode, elements: list[StreamElement], capacity: int, data: st.DataObject
) -> None:
    gate = Gate(key=key_of)
    op = operator(gate, mode, capacity)
    out: list[StreamElement] = []
    await op.open(out.append)
    try:
        await drive(op, gate, Feeder(op, elements), data)
    finally:
        await op.close()

    check_order(mode, elements, out, element_key, complete=True)
    records = [e.value for e in elements if isinstance(e, Record)]
    assert sorted(gate.calls) == sorted(records)  # each record invoked exactly once
    assert gate.max_running <= capacity
    if mode is OutputMode.KEY_ORDERED:
        assert gate.max_per_key <= 1
    stats = op.statistics()
    assert (stats.in_flight, stats.queued, stats.emitted) == (0, 0, len(elements))


@MODES
@settings(max_examples=60, deadline=None)
@given(
    elements=streams(),
    latencies=st.lists(st.integers(0, 5), min_size=24, max_size=24),
    gaps=st.lists(st.integers(0, 3), min_size=24, max_size=24),
    capacity=st.integers(1, 5),
)
@pytest.mark.looptime
async def test_virtual_latencies_and_timeouts_never_break_the_mode(
    mode: OutputMode,
    elements: list[StreamElement],
    latencies: list[int],
    gaps: list[int],
    capacity: int,
) -> None:
    # Latencies and gaps are multiples of 0.1 s, the timeout 0.25 s: no ties on the clock.
    calls: set[Any] = set()  # calls running, including timed-out ones still unwinding
    live: set[Any] = set()  # calls running whose element has not timed out
    most = 0

    class Sleepy(GatedFunction):
        async def async_invoke(self, value: Any) -> list[Any]:
            nonlocal most
            if mode is OutputMode.KEY_ORDERED:
                assert all(key_of(v) != key_of(value) for v in live), "two calls of a key"
            calls.add(value)
            live.add(value)
            most = max(most, len(calls))
            try:
                await asyncio.sleep(latencies[value[0]] / 10)
            finally:
                calls.discard(value)
                live.discard(value)
            return [value]

    def on_timeout(value: Any) -> list[Any]:
        # The timed-out call is cancelled; it may still be unwinding when the key's next
        # call starts, in the same loop step.
        live.discard(value)
        return [("T", value)]

    fn = Sleepy(Gate(), on_timeout=on_timeout)
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(
        fn,
        mode=mode,
        key=key_of if mode is OutputMode.KEY_ORDERED else None,
        capacity=capacity,
        timeout=0.25,
    )
    out: list[StreamElement] = []
    await op.open(out.append)
    try:
        for n, element in enumerate(elements):
            await asyncio.sleep(gaps[n] / 10)
            if isinstance(element, Watermark):
                await op.process_watermark(element)
            else:
                await op.process_element(element)
            assert op.statistics().queued <= capacity
        await op.end_input()
    finally:
        await op.close()
    assert most <= capacity

    # Each record's one output is its value, or the fallback when its call ran too long.
    results = {}
    for element in out:
        if isinstance(element, Record):
            value = element.value
            original = value[1] if value[0] == "T" else value
            results[original] = value
    for element in elements:
        if isinstance(element, Record) and mode is not OutputMode.KEY_ORDERED:
            slow = latencies[element.value[0]] >= 3
            assert results[element.value] == (("T", element.value) if slow else element.value)
    assert len(fn.timeouts) == sum(1 for value in results.values() if value[0] == "T")

    normalized = [
        Record(e.value[1], e.timestamp) if isinstance(e, Record) and e.value[0] == "T" else e
        for e in out
    ]
    check_order(mode, elements, normalized, element_key, complete=True)
