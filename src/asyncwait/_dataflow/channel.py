"""Bounded channels between the stages of a running job, and checkpoint barriers (private).

A job runs as one task per stage; a :class:`Channel` carries elements from one stage to the
next. The producer appends elements one at a time (an operator's ``emit``) or a batch at a
time (a source); the consumer takes *everything buffered* in one call, so elements cross the
task boundary in batches and no await happens per element::

    producer ── push / push_batch ──► [ buffer (< limit) ] ── get() ──► consumer
         ▲                                                        │
         └──── the future push returned resolves when the consumer takes the buffer

Bounded: once ``limit`` elements are buffered, ``push`` returns a future that resolves when
the consumer takes them; a producer that awaits it (the operator does, for an awaitable
``emit``) is back-pressured. A channel holds at most ``limit`` elements plus one batch, and a
consumer holds at most one taken buffer, so a chain of stages holds a bounded number.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, final

from ..elements import StreamElement
from ..errors import InternalError

T = TypeVar("T")


@final
@dataclass(frozen=True, slots=True)
class Barrier:
    """A checkpoint barrier: everything before it in a channel belongs to checkpoint ``id``.

    Barriers flow between batches, never inside one: :meth:`Channel.get` returns a barrier on
    its own, so the steps and operators of a stage never see it.
    """

    id: int


@final
class Channel:
    """A bounded buffer of elements from one producer stage to one consumer stage."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_limit",
        "_loop",
        "_reader",
        "_sealed",
        "_woken",
        "_writer",
        "name",
        "on_barrier",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, name: str) -> None:
        self.name = name
        self._loop = loop
        self._limit = limit
        # Invariant: the consumer owns every list `get` returned; this one is the producer's.
        self._buffer: list[StreamElement] = []
        self._reader: asyncio.Future[None] | None = None  # the consumer waits in get()
        self._writer: asyncio.Future[None] | None = None  # a producer waits for room
        self._woken = False  # wake() was called: the next get() returns even when empty
        self._closed = False  # the producer is done; get() returns None once drained
        # Batches and barriers ahead of _buffer, oldest first: a barrier seals the buffer
        # before it, so get() never hands out elements from both sides of a barrier.
        self._sealed: deque[list[StreamElement] | Barrier] = deque()
        # Called after a barrier is pushed: lets a consumer stuck elsewhere take it at once.
        self.on_barrier: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._buffer)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Channel {self.name!r} {state} buffered {len(self._buffer)}/{self._limit}>"

    def push(self, element: StreamElement) -> asyncio.Future[None] | None:
        """Append ``element``; return a future to await when the channel is full, else None."""
        buffer = self._buffer
        buffer.append(element)
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)
        if len(buffer) >= self._limit:
            return self._room()
        return None

    def push_batch(self, elements: list[StreamElement]) -> asyncio.Future[None] | None:
        """Append every element of ``elements``; like :meth:`push` for the room."""
        if self._closed:
            msg = f"channel {self.name!r}: push after close (a bug in asyncwait)"
            raise InternalError(msg)
        buffer = self._buffer
        buffer.extend(elements)
        if not buffer:
            return None
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)
        if len(buffer) >= self._limit:
            return self._room()
        return None

    def push_barrier(self, barrier: Barrier) -> None:
        """Append ``barrier`` after everything pushed so far; never waits for room.

        Allowed after :meth:`close`: a checkpoint taken once the producer has ended still
        has to pass the consumer, which gets it before ``None``.
        """
        if self._buffer:
            self._sealed.append(self._buffer)
            self._buffer = []
        self._sealed.append(barrier)
        self._wake_reader()
        if self.on_barrier is not None:
            self.on_barrier()

    def room(self) -> asyncio.Future[None] | None:
        """A future to await while the channel is full (the consumer is behind), else None."""
        if len(self._buffer) >= self._limit:
            return self._room()
        return None

    def _room(self) -> asyncio.Future[None]:
        writer = self._writer
        if writer is None or writer.done():
            writer = self._writer = self._loop.create_future()
        return writer

    async def get(self) -> list[StreamElement] | Barrier | None:
        """Take everything buffered (waiting while empty); ``None`` once closed and drained.

        Returns an empty list when :meth:`wake` was called and nothing is buffered, and a
        :class:`Barrier` alone, after the elements before it were taken.
        """
        while True:
            if self._sealed:
                item = self._sealed.popleft()
                if len(self._buffer) < self._limit:
                    self._release_writer()  # the producer waits for room it now has
                return item
            buffer = self._buffer
            if buffer or self._woken:
                self._woken = False
                self._buffer = []
                self._release_writer()
                return buffer
            if self._closed:
                return None
            reader = self._reader = self._loop.create_future()
            await reader

    def take_barrier(self) -> tuple[list[StreamElement], Barrier] | None:
        """Remove the first barrier; return it with copies of the elements ahead of it.

        The elements stay in the channel, for the consumer to take as usual.
        """
        ahead: list[StreamElement] = []
        for i, item in enumerate(self._sealed):
            if type(item) is Barrier:
                del self._sealed[i]
                return ahead, item
            ahead.extend(item)
        return None

    def _release_writer(self) -> None:
        writer = self._writer
        if writer is not None:
            self._writer = None
            if not writer.done():
                writer.set_result(None)

    def wake(self) -> None:
        """Make the consumer's current or next :meth:`get` return, even with nothing to take."""
        self._woken = True
        self._wake_reader()

    def close(self) -> None:
        """The producer is done: the consumer drains the buffer, then gets ``None``."""
        self._closed = True
        self._wake_reader()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)
