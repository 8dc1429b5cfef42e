"""Emission and slots: hands what the queue lets go to ``emit`` and frees its slot (private).

A slot is held from admission until the entry's last output has been emitted::

    admit ─► held += 1 ─► ... entry final ─► queue.pop_completed ─► emit(out) for each output
                                                                     │
                          room() resolves ◄── held -= 1 ◄────────────┘ (idle() at held == 0)

Emission is strictly sequential. While ``emit`` returns nothing, everything completed is
emitted synchronously in one pass; when it returns an awaitable, the rest of that entry and
the entries after it are emitted by one task that awaits each awaitable first, so a slow
consumer back-pressures the operator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, final

from .._tasks import TaskOwner
from ..elements import Record, Watermark
from ..errors import AsyncWaitError
from ..queues import ElementQueue, QueueEntry

__all__ = ("Emit", "Emitter")

Emit = Callable[[Any], Awaitable[None] | None]


def _unset_emit(element: Any) -> None:
    msg = "the operator is not open"
    raise AsyncWaitError(msg)


@final
class Emitter:
    """Emits completed entries in the order the queue allows and accounts for slots.

    Args:
        queue: the operator's queue.
        owner: owns the task of an awaitable emission.
        on_failure: called with the exception ``emit`` raised (the downstream is broken).
    """

    __slots__ = (
        "_emit",
        "_idle",
        "_owner",
        "_queue",
        "_space",
        "bare",
        "broken",
        "emitted",
        "emitting",
        "held",
        "on_failure",
        "open",
        "partly",
        "passed",
        "task",
    )

    def __init__(
        self, queue: ElementQueue, owner: TaskOwner, on_failure: Callable[[Exception], None]
    ) -> None:
        self._queue = queue
        self._owner = owner
        self.on_failure = on_failure
        self._emit: Emit = _unset_emit
        self.bare = False  # emit bare output values (no Records, no watermarks)
        self.open = False  # set by the operator: nothing is emitted before open or after close
        # Invariant: held = admitted entries not yet fully emitted (an entry whose awaitable
        # emission is pending still holds its slot).
        self.held = 0
        self.emitted = 0
        self.passed = 0  # of those, passed straight through at admission (no slot held)
        # True while an emission runs; an awaitable `emit` keeps it True until the emitter
        # task has caught up, so emission stays strictly sequential.
        self.emitting = False
        self.broken = False  # `emit` raised: nothing more is emitted
        self.task: asyncio.Task[None] | None = None
        self.partly: QueueEntry | None = None  # popped but not fully emitted
        self._space: asyncio.Future[None] | None = None  # resolved when a slot frees
        self._idle: asyncio.Future[None] | None = None  # resolved when nothing is held

    def start(self, emit: Emit, *, bare: bool) -> None:
        """Emit through ``emit`` from now on (``bare``: output values only)."""
        self._emit = emit
        self.bare = bare
        self.open = True

    # ------------------------------------------------------------------ waiting

    def room(self) -> asyncio.Future[None]:
        """A future resolved when a slot frees (or on :meth:`wake`)."""
        fut = self._space
        if fut is None or fut.done():
            fut = self._space = asyncio.get_running_loop().create_future()
        return fut

    def idle(self) -> asyncio.Future[None]:
        """A future resolved when no slot is held (or on :meth:`wake`)."""
        fut = self._idle
        if fut is None or fut.done():
            fut = self._idle = asyncio.get_running_loop().create_future()
        return fut

    def wake(self) -> None:
        """Wake every waiter so it can look at a failure or the close."""
        for fut in (self._space, self._idle):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _wake_idle(self) -> None:
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)

    # ------------------------------------------------------------------ emission

    def pass_through(self, record: Record[Any] | None, outputs: list[Any]) -> None:
        """Emit the outputs of an element complete at admission (it never held a slot).

        Only when it would have been the next to leave, so the order is the mode's, and
        only when ``emit`` never returns an awaitable.
        """
        self.emitted += 1
        self.passed += 1
        emit = self._emit
        try:
            if self.bare:
                for out in outputs:
                    emit(out)
            else:
                timestamp = None if record is None else record.timestamp
                for out in outputs:
                    emit(Record(out, timestamp))  # never awaitable: see the caller
        except Exception as exc:
            self._break(exc)

    def _emissions(self, entry: QueueEntry) -> tuple[Any, ...] | list[Any]:
        """What `emit` receives for ``entry``, in order."""
        element = entry.input
        if self.bare:
            return entry.outputs
        if element is None:
            return [Record(out) for out in entry.outputs]
        if type(element) is Watermark:
            return (element,)
        timestamp = element.timestamp
        return [Record(out, timestamp) for out in entry.outputs]

    def drain(self) -> None:
        """Emit every entry the queue lets go, synchronously while `emit` does not await."""
        if self.emitting or self.broken or not self.open:
            return
        self.emitting = True
        queue = self._queue
        emit = self._emit
        bare = self.bare
        try:
            while (entry := queue.pop_completed()) is not None:
                outputs = entry.outputs
                element = entry.input
                if bare:
                    emissions = outputs
                elif len(outputs) == 1 and element is not None and type(element) is not Watermark:
                    emissions = (Record(outputs[0], element.timestamp),)  # the common case
                else:
                    emissions = self._emissions(entry)
                i = 0  # not enumerate(): one object less per entry on the hot path
                for out in emissions:
                    i += 1  # noqa: SIM113
                    pending = emit(out)
                    if pending is not None:
                        # Hand the rest over to a task that awaits; `emitting` stays True.
                        self.partly = entry
                        self.task = self._owner.spawn(
                            self._emit_awaiting(pending, emissions, i, entry), "emit"
                        )
                        return
                # The entry is out: its slot frees (as release(), inline on this hot path).
                self.emitted += 1
                self.held -= 1
                space = self._space
                if space is not None and not space.done():
                    space.set_result(None)
        except Exception as exc:
            self.emitting = False
            self._break(exc)
            return
        self.emitting = False
        if not self.held:
            self._wake_idle()

    async def _emit_awaiting(
        self,
        pending: Awaitable[None],
        emissions: tuple[Any, ...] | list[Any],
        start: int,
        entry: QueueEntry,
    ) -> None:
        emit = self._emit
        queue = self._queue
        try:
            await pending
            for element in emissions[start:]:
                pending2 = emit(element)
                if pending2 is not None:
                    await pending2
            self.partly = None
            self.release()
            while self.open and (nxt := queue.pop_completed()) is not None:
                self.partly = nxt
                for element in self._emissions(nxt):
                    pending2 = emit(element)
                    if pending2 is not None:
                        await pending2
                self.partly = None
                self.release()
        except Exception as exc:
            self._break(exc)
        finally:
            self.emitting = False
            self.task = None
        if not self.held:
            self._wake_idle()

    def release(self) -> None:
        """An entry is out: its slot frees."""
        self.emitted += 1
        self.held -= 1
        space = self._space
        if space is not None and not space.done():
            space.set_result(None)

    def _break(self, exc: Exception) -> None:
        # The downstream is broken: stop emitting and report its error as it is.
        self.broken = True
        self.on_failure(exc)

    def __repr__(self) -> str:
        state = "emitting" if self.emitting else "broken" if self.broken else "idle"
        return f"<Emitter {state} held {self.held} emitted {self.emitted}>"
