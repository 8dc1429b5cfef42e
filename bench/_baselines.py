"""Baselines asyncwait is measured against.

``naive_ordered``/``naive_unordered`` are what a typical engineer writes without a library:
an ``asyncio.Semaphore(capacity)`` and one task per element. The semaphore is acquired
before the task is created and released when the call finishes, so it bounds the calls in
flight, but (unlike asyncwait's ``capacity``) not the finished results waiting behind a slow
head in ordered mode. With ``timeout`` each call runs under ``asyncio.timeout(timeout)``: the
fair baseline for an operator given a per-element timeout, which the naive loop would
otherwise get for free.

``aiostream_map`` is aiostream's ``map`` with ``task_limit``.

``bare_workers`` is not a usable alternative but a ceiling: ``capacity`` tasks pull values
from one shared iterator and discard the results, with no ordering and no output channel.
No implementation on the same loop can do the same calls with less overhead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

__all__ = ("aiostream_map", "bare_workers", "naive_ordered", "naive_unordered")

Fn = Callable[[Any], Awaitable[Any]]


def _bounded(fn: Fn, timeout: float | None) -> Fn:
    """``fn`` itself, or ``fn`` under a per-call ``asyncio.timeout``."""
    if timeout is None:
        return fn

    async def call(x: Any) -> Any:
        async with asyncio.timeout(timeout):
            return await fn(x)

    return call


async def naive_ordered(
    xs: Iterable[Any], fn: Fn, capacity: int, timeout: float | None = None
) -> AsyncIterator[Any]:
    """Yield ``fn(x)`` for every ``x`` in input order, at most ``capacity`` calls at once."""
    semaphore = asyncio.Semaphore(capacity)
    fn = _bounded(fn, timeout)

    async def call(x: Any) -> Any:
        try:
            return await fn(x)
        finally:
            semaphore.release()

    pending: deque[asyncio.Task[Any]] = deque()
    for x in xs:
        await semaphore.acquire()
        pending.append(asyncio.create_task(call(x)))
        while pending[0].done():  # hand out what is ready at the head
            yield pending.popleft().result()
            if not pending:
                break
    while pending:
        yield await pending.popleft()


async def naive_unordered(
    xs: Iterable[Any], fn: Fn, capacity: int, timeout: float | None = None
) -> AsyncIterator[Any]:
    """Yield ``fn(x)`` for every ``x`` as calls finish, at most ``capacity`` calls at once."""
    semaphore = asyncio.Semaphore(capacity)
    fn = _bounded(fn, timeout)
    done: asyncio.Queue[Any] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()  # keep references so tasks are not collected

    async def call(x: Any) -> None:
        try:
            done.put_nowait(await fn(x))
        finally:
            semaphore.release()

    outstanding = 0
    for x in xs:
        await semaphore.acquire()
        task = asyncio.create_task(call(x))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        outstanding += 1
        while not done.empty():
            yield done.get_nowait()
            outstanding -= 1
    while outstanding:
        yield await done.get()
        outstanding -= 1


def aiostream_map(xs: Iterable[Any], fn: Fn, capacity: int, *, ordered: bool) -> AsyncIterator[Any]:
    """aiostream: ``stream.iterate(xs) | pipe.map(fn, ordered=..., task_limit=capacity)``."""
    from aiostream import pipe, stream

    async def run() -> AsyncIterator[Any]:
        mapped = stream.iterate(xs) | pipe.map(fn, ordered=ordered, task_limit=capacity)
        async with mapped.stream() as streamer:
            async for value in streamer:
                yield value

    return run()


async def bare_workers(xs: Iterable[Any], fn: Fn, capacity: int) -> int:
    """Call ``fn`` on every ``x`` from ``capacity`` worker tasks; return how many calls ran."""
    values = iter(xs)
    count = 0

    async def worker() -> None:
        nonlocal count
        for x in values:
            await fn(x)
            count += 1

    await asyncio.gather(*(worker() for _ in range(capacity)))
    return count
