"""Snapshot at a random moment, restore into a fresh operator: exactly the uninterrupted outputs."""

import asyncio
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncwait import OutputMode, Record, StreamElement
from tests.helpers import Gate, settle
from tests.property.checks import check_order
from tests.property.strategies import Feeder, drive, element_key, key_of, operator, step, streams

MODES = pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)


async def _uninterrupted(
    mode: OutputMode, elements: list[StreamElement], capacity: int, data: st.DataObject
) -> list[StreamElement]:
    gate = Gate(key=key_of)
    op = operator(gate, mode, capacity)
    out: list[StreamElement] = []
    await op.open(out.append)
    try:
        await drive(op, gate, Feeder(op, elements), data)
    finally:
        await op.close()
    return out


@MODES
@settings(max_examples=80, deadline=None)
@given(elements=streams(), capacity=st.integers(1, 4), data=st.data())
async def test_snapshot_and_restore_give_exactly_the_uninterrupted_outputs(
    mode: OutputMode, elements: list[StreamElement], capacity: int, data: st.DataObject
) -> None:
    records = sum(1 for e in elements if isinstance(e, Record))
    cut = data.draw(st.integers(0, records), label="completions before the snapshot")

    # First run: complete `cut` calls in an order hypothesis picks, snapshot, then abort.
    gate = Gate(key=key_of)
    first = operator(gate, mode, capacity)
    before: list[StreamElement] = []
    await first.open(before.append)
    feeder = Feeder(first, elements)
    try:
        for _ in range(cut):
            if feeder.task.done() or not await step(first, gate, data):
                break
        await settle()
        snapshot = first.snapshot_state()
        emitted = list(before)
        if feeder.blocked():
            # The element waiting for admission comes last in the snapshot.
            assert snapshot[-1] == elements[feeder.admitted]
            rest = elements[feeder.admitted + 1 :]
        else:
            rest = elements[feeder.admitted :]
    finally:
        await first.close()
    await feeder.task
    assert before == emitted  # nothing is emitted after the snapshot
    # The snapshot holds every admitted (or blocked) input not yet emitted, in input order.
    handed_over = elements[: len(elements) - len(rest)]
    assert snapshot == [e for e in handed_over if e not in set(emitted)]

    # Second run: restore, then feed what the source had not handed over yet.
    gate = Gate(key=key_of)
    second = operator(gate, mode, capacity)
    after: list[StreamElement] = []
    opening = asyncio.get_running_loop().create_task(second.open(after.append, restored=snapshot))
    try:
        await drive(second, gate, Feeder(second, rest, before=opening), data)
    finally:
        await second.close()

    combined = emitted + after
    check_order(mode, elements, combined, element_key, complete=True)
    uninterrupted = await _uninterrupted(mode, elements, capacity, data)
    if mode is OutputMode.ORDERED:
        assert combined == uninterrupted
    else:
        assert Counter(combined) == Counter(uninterrupted)
