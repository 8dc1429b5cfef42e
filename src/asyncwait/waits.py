"""Async-iterator helpers: run an async function over any (async) iterable of values.

``ordered_wait``, ``unordered_wait`` and ``key_ordered_wait`` wrap an
:class:`~asyncwait.AsyncWaitOperator` for code that just wants results, without records,
watermarks or a dataflow: ``async for out in ordered_wait(values, fetch, capacity=50)``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
)
from typing import Any, TypeVar, final

from ._tasks import TaskOwner
from .function import AsyncFunction
from .operator import AsyncWaitOperator, OutputMode
from .retry import NO_RETRY, RetryStrategy

__all__ = ("key_ordered_wait", "ordered_wait", "unordered_wait")

IN = TypeVar("IN")
OUT = TypeVar("OUT")


@final
class _Channel:
    """Outputs on their way from the operator to the iterator's consumer (bounded)."""

    __slots__ = ("buffer", "limit", "loop", "reader", "writer")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.buffer: deque[Any] = deque()
        self.limit = limit
        self.reader: asyncio.Future[None] | None = None  # the consumer waits for outputs
        self.writer: asyncio.Future[None] | None = None  # the operator waits for room

    def emit(self, value: Any) -> asyncio.Future[None] | None:
        self.buffer.append(value)
        reader = self.reader
        if reader is not None and not reader.done():
            reader.set_result(None)
        if len(self.buffer) < self.limit:
            return None
        writer = self.writer = self.loop.create_future()
        return writer

    def wake(self) -> None:
        reader = self.reader
        if reader is not None and not reader.done():
            reader.set_result(None)


async def _feed(operator: AsyncWaitOperator[Any, Any], source: Any, channel: _Channel) -> None:
    try:
        offer, process = operator.offer_value, operator.process_value
        if isinstance(source, AsyncIterable):
            async for value in source:
                if not offer(value):
                    await process(value)
        else:
            for value in source:
                if not offer(value):
                    await process(value)
        await operator.end_input()
    finally:
        channel.wake()


async def _run(
    source: Iterable[Any] | AsyncIterable[Any],
    function: Any,
    mode: OutputMode,
    capacity: int,
    timeout: float | None,
    retry: RetryStrategy,
    key: Callable[[Any], Hashable] | None,
    name: str,
) -> AsyncIterator[Any]:
    if not isinstance(source, Iterable | AsyncIterable):
        msg = f"{name}: source must be an iterable or async iterable, got {source!r}"
        raise TypeError(msg)
    operator: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(
        function, mode=mode, capacity=capacity, timeout=timeout, retry=retry, key=key, name=name
    )
    loop = asyncio.get_running_loop()
    # Room for a few batches of outputs so the operator rarely has to wait for the consumer.
    channel = _Channel(loop, limit=max(2 * capacity, 64))
    # Owns the feeder: closing the iterator early cancels it and waits for it.
    owner = TaskOwner(name)
    try:
        await operator.open(channel.emit, values=True)
        feeder = owner.spawn(_feed(operator, source, channel), "feed")
        buffer = channel.buffer
        while True:
            while buffer:
                yield buffer.popleft()
            writer = channel.writer
            if writer is not None and not writer.done():
                writer.set_result(None)
            if feeder.done():
                if buffer:
                    continue
                feeder.result()  # raises the failure, if any
                return
            channel.reader = loop.create_future()
            await channel.reader
    finally:
        await owner.aclose()
        await operator.close()


def ordered_wait(
    source: Iterable[IN] | AsyncIterable[IN],
    function: AsyncFunction[IN, OUT] | Callable[[IN], Awaitable[OUT]],
    *,
    capacity: int = 100,
    timeout: float | None = None,
    retry: RetryStrategy = NO_RETRY,
) -> AsyncIterator[OUT]:
    """Yield ``function``'s outputs for every value of ``source``, in input order.

    At most ``capacity`` calls (and completed, not yet yielded results) are held at once;
    ``timeout`` is a per-value deadline in seconds covering all retries. A failure raises
    :class:`~asyncwait.AsyncFunctionError` from the iterator; closing it early cancels the
    calls in flight.

    >>> async def lookup(user: str) -> int:
    ...     await asyncio.sleep(0.01)
    ...     return len(user)
    >>> async def main() -> list[int]:
    ...     return [age async for age in ordered_wait(["ann", "bo"], lookup)]
    >>> asyncio.run(main())
    [3, 2]
    """
    return _run(
        source, function, OutputMode.ORDERED, capacity, timeout, retry, None, "ordered_wait"
    )


def unordered_wait(
    source: Iterable[IN] | AsyncIterable[IN],
    function: AsyncFunction[IN, OUT] | Callable[[IN], Awaitable[OUT]],
    *,
    capacity: int = 100,
    timeout: float | None = None,
    retry: RetryStrategy = NO_RETRY,
) -> AsyncIterator[OUT]:
    """Yield ``function``'s outputs for every value of ``source``, as they complete.

    Concurrency, timeout and failure behave as in :func:`ordered_wait`.

    >>> async def lookup(user: str) -> int:
    ...     await asyncio.sleep(len(user) / 100)
    ...     return len(user)
    >>> async def main() -> list[int]:
    ...     return [n async for n in unordered_wait(["carol", "bo"], lookup)]
    >>> asyncio.run(main())
    [2, 5]
    """
    return _run(
        source, function, OutputMode.UNORDERED, capacity, timeout, retry, None, "unordered_wait"
    )


def key_ordered_wait(
    source: Iterable[IN] | AsyncIterable[IN],
    function: AsyncFunction[IN, OUT] | Callable[[IN], Awaitable[OUT]],
    *,
    key: Callable[[IN], Hashable],
    capacity: int = 100,
    timeout: float | None = None,
    retry: RetryStrategy = NO_RETRY,
) -> AsyncIterator[OUT]:
    """Yield outputs in input order per key; values of one key are processed one at a time.

    Different keys run concurrently and their outputs interleave in completion order.
    Concurrency, timeout and failure behave as in :func:`ordered_wait`.

    >>> async def upsert(event: tuple[str, int]) -> tuple[str, int]:
    ...     return event
    >>> async def main() -> list[tuple[str, int]]:
    ...     events = [("a", 1), ("b", 1), ("a", 2)]
    ...     return [e async for e in key_ordered_wait(events, upsert, key=lambda e: e[0])]
    >>> [e for e in asyncio.run(main()) if e[0] == "a"]
    [('a', 1), ('a', 2)]
    """
    return _run(
        source,
        function,
        OutputMode.KEY_ORDERED,
        capacity,
        timeout,
        retry,
        key,
        "key_ordered_wait",
    )
