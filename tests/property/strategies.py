"""Strategies and drivers shared by the operator property tests."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from asyncwait import AsyncWaitOperator, ClosedError, OutputMode, Record, StreamElement, Watermark
from tests.helpers import Gate, settle

KEYS = 3


def key_of(value: Any) -> Any:
    """Values are ``(n, key)`` pairs."""
    return value[1]


def element_key(element: StreamElement) -> Any:
    return key_of(element.value) if isinstance(element, Record) else None


@st.composite
def streams(draw: st.DrawFn, max_size: int = 24) -> list[StreamElement]:
    """Records ``Record((n, key), n)`` and watermarks ``Watermark(n)``; ``n`` is unique."""
    kinds = draw(st.lists(st.sampled_from("rrrw"), max_size=max_size))
    elements: list[StreamElement] = []
    for n, kind in enumerate(kinds):
        if kind == "w":
            elements.append(Watermark(n))
        else:
            elements.append(Record((n, draw(st.integers(0, KEYS - 1))), n))
    return elements


def operator(gate: Gate, mode: OutputMode, capacity: int) -> AsyncWaitOperator[Any, Any]:
    key = key_of if mode is OutputMode.KEY_ORDERED else None
    return AsyncWaitOperator(gate, mode=mode, key=key, capacity=capacity)


@dataclass
class Feeder:
    """Feeds elements into an operator from a task and tracks how far it got."""

    op: AsyncWaitOperator[Any, Any]
    elements: Sequence[StreamElement]
    before: asyncio.Future[None] | None = None  # awaited first (e.g. a restoring open)
    admitted: int = 0  # elements[:admitted] were admitted
    ending: bool = False  # in end_input
    closed: bool = False  # stopped by ClosedError
    task: asyncio.Task[None] = field(init=False)

    def __post_init__(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            if self.before is not None:
                await self.before
            for element in self.elements:
                if isinstance(element, Watermark):
                    await self.op.process_watermark(element)
                else:
                    await self.op.process_element(element)
                self.admitted += 1
            self.ending = True
            await self.op.end_input()
        except ClosedError:
            self.closed = True

    def blocked(self) -> bool:
        """True while an element waits for admission."""
        return not self.task.done() and not self.ending and self.before_done()

    def before_done(self) -> bool:
        return self.before is None or self.before.done()


async def step(op: AsyncWaitOperator[Any, Any], gate: Gate, data: st.DataObject) -> bool:
    """Let the loop settle, check the bounds, and complete one call; False when none runs."""
    await settle()
    stats = op.statistics()
    assert stats.queued <= stats.capacity
    assert gate.running <= stats.capacity
    pending = gate.pending()
    if not pending:
        return False
    gate.release(pending[data.draw(st.integers(0, len(pending) - 1), label="release")])
    return True


async def drive(
    op: AsyncWaitOperator[Any, Any], gate: Gate, feeder: Feeder, data: st.DataObject
) -> None:
    """Complete calls in an order hypothesis chooses until the feeder is done."""
    while True:
        progressed = await step(op, gate, data)
        if feeder.task.done():
            await feeder.task
            return
        assert progressed, "the feeder waits but no call is running"
