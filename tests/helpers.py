"""Test helpers: async functions whose calls the test completes by hand, and a loop barrier.

No helper sleeps. A :class:`Gate` call waits on a future that the test resolves in the order
it chooses; :func:`settle` runs the loop until nothing is ready, without moving its clock.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from asyncwait import AsyncFunction, Record, StreamElement, Watermark

_SAME: Any = object()  # release(value): the call returns its own input


async def settle() -> None:
    """Let every ready task and callback run until the loop would block; the clock stays.

    Relies on CPython's ``BaseEventLoop`` ready queue: once our own wake-up is the only
    thing that ran, nothing else is runnable (only timers in the future or I/O remain).
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    scheduled = getattr(loop, "_scheduled", None)
    if ready is None or scheduled is None:  # pragma: no cover - not a CPython loop
        for _ in range(100):
            await asyncio.sleep(0)
        return
    for _ in range(10_000):
        await asyncio.sleep(0)
        due = scheduled and scheduled[0].when() <= loop.time()
        if not ready and not due:
            return
    raise AssertionError("the event loop never went idle")


class Gate:
    """A plain async function: each call waits until the test releases or fails it.

    Attributes:
        calls: every value the function was called with, in call order (retries repeat).
        cancelled: values whose call was cancelled, in order.
        max_running: the most calls that ran at the same time.
        max_per_key: the most calls of one key that ran at the same time (needs ``key``).
    """

    def __init__(self, key: Callable[[Any], Hashable] | None = None) -> None:
        self.calls: list[Any] = []
        self.cancelled: list[Any] = []
        self.max_running = 0
        self.max_per_key = 0
        self._key = key
        self._per_key: Counter[Hashable] = Counter()
        self._pending: dict[Any, asyncio.Future[Any]] = {}

    async def __call__(self, value: Any) -> Any:
        if value in self._pending:
            raise AssertionError(f"{value!r} is called while a call for it is pending")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[value] = future
        self.calls.append(value)
        self.max_running = max(self.max_running, len(self._pending))
        key = None if self._key is None else self._key(value)
        self._per_key[key] += 1
        self.max_per_key = max(self.max_per_key, self._per_key[key])
        try:
            return await future
        except asyncio.CancelledError:
            self.cancelled.append(value)
            raise
        finally:
            self._per_key[key] -= 1
            del self._pending[value]

    @property
    def running(self) -> int:
        """Calls that have started and not yet returned."""
        return len(self._pending)

    def pending(self) -> list[Any]:
        """The values whose call waits for the test, in call order."""
        return [value for value, future in self._pending.items() if not future.done()]

    def release(self, value: Any, result: Any = _SAME) -> None:
        """Let the call for ``value`` return ``result`` (default: ``value`` itself)."""
        self._future(value).set_result(value if result is _SAME else result)

    def fail(self, value: Any, exc: BaseException) -> None:
        """Let the call for ``value`` raise ``exc``."""
        self._future(value).set_exception(exc)

    def _future(self, value: Any) -> asyncio.Future[Any]:
        future = self._pending.get(value)
        if future is None or future.done():
            raise AssertionError(f"no pending call for {value!r}; pending: {self.pending()}")
        return future


class GatedFunction(AsyncFunction[Any, Any]):
    """An :class:`AsyncFunction` over a :class:`Gate`: release calls with a list of outputs.

    ``on_timeout`` replaces the ``timeout()`` hook when given; hook calls are logged with
    the loop time in ``timeouts``.
    """

    def __init__(self, gate: Gate, on_timeout: Callable[[Any], Any] | None = None) -> None:
        self.gate = gate
        self.on_timeout = on_timeout
        self.timeouts: list[tuple[float, Any]] = []
        self.opened = 0
        self.closed = 0

    async def open(self, context: Any) -> None:
        self.opened += 1

    async def close(self) -> None:
        self.closed += 1

    async def async_invoke(self, value: Any) -> Iterable[Any]:
        result: Iterable[Any] = await self.gate(value)
        return result

    def timeout(self, value: Any) -> Any:
        self.timeouts.append((asyncio.get_running_loop().time(), value))
        if self.on_timeout is None:
            return super().timeout(value)
        return self.on_timeout(value)


def records(*values: Any) -> list[Record[Any]]:
    """``Record(v)`` for each value."""
    return [Record(value) for value in values]


def plain(elements: Iterable[StreamElement]) -> list[Any]:
    """Values of records and ``("W", ts)`` for watermarks: short to compare and to read."""
    return [
        ("W", element.timestamp) if isinstance(element, Watermark) else element.value
        for element in elements
    ]
