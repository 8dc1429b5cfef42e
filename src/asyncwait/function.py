"""User functions: the :class:`AsyncFunction` base, plain async callables and :func:`threaded`.

An operator accepts either an :class:`AsyncFunction` (0..n outputs per input, an optional
``timeout()`` hook, ``open``/``close`` around the job) or a plain ``async def f(value)``,
which yields exactly one output: its return value, whatever it is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeAlias, TypeVar, final, runtime_checkable

from .errors import AsyncTimeoutError, ClosedError
from .metrics import Metrics

__all__ = ("AsyncFunction", "CallbackFunction", "Deliver", "Pending", "RuntimeContext", "threaded")

IN = TypeVar("IN")
OUT = TypeVar("OUT")


@final
@dataclass(frozen=True, slots=True)
class RuntimeContext:
    """What a function learns about the operator running it, in ``open``.

    Attributes:
        name: the operator's name.
        metrics: the operator's metrics; functions may add counters of their own.
        capacity: the operator's capacity (at most this many calls run at once).
    """

    name: str
    metrics: Metrics = field(default_factory=lambda: Metrics("async-wait"))
    capacity: int = 100


class AsyncFunction(Generic[IN, OUT]):
    """A function called once per input record, asynchronously, producing 0..n outputs.

    Subclasses implement :meth:`async_invoke`; the other methods are optional hooks. The
    operator calls ``open`` once before the first call and ``close`` once at the end.

    >>> class Double(AsyncFunction[int, int]):
    ...     async def async_invoke(self, value: int) -> list[int]:
    ...         return [value * 2]
    >>> asyncio.run(Double().async_invoke(21))
    [42]
    """

    async def open(self, context: RuntimeContext) -> None:
        """Prepare resources (clients, pools); called once before the first invocation."""

    async def close(self) -> None:
        """Release resources; called once when the operator closes."""

    async def end_input(self) -> None:
        """Called once the input has ended and every output has been emitted.

        The place for checks over the whole input (a lookup join's ``min_match_ratio``):
        raise to fail the operator's ``end_input`` (and so the job). Not called when the
        operator failed or was closed before its input ended. The default does nothing.
        """

    async def async_invoke(self, value: IN) -> Iterable[OUT]:
        """Return the outputs for ``value``: an iterable, all emitted together, in order."""
        raise NotImplementedError

    def timeout(self, value: IN) -> Iterable[OUT] | Awaitable[Iterable[OUT]]:
        """Called once when ``value``'s deadline passes; the outcome is final.

        Return (or return an awaitable of) the outputs to emit instead, or raise to fail the
        element. The default raises :class:`AsyncTimeoutError`.
        """
        msg = f"async call on {value!r} timed out"
        raise AsyncTimeoutError(msg)


class Pending(Protocol):
    """A call of the callback form that has not completed yet (see :class:`CallbackFunction`).

    The caller sets :attr:`token` right after ``start_call`` returns the handle; the function's
    ``deliver`` call hands the handle back, so the caller finds its own record of the call
    through the token.
    """

    token: Any

    def cancel(self) -> None:
        """Withdraw the call: ``deliver`` is not called for it afterwards."""
        ...


Deliver: TypeAlias = Callable[[Pending, "list[Any] | None", "BaseException | None"], None]
"""``deliver(handle, outputs, error)``: the outcome of a pending call (one of the two set)."""


@runtime_checkable
class CallbackFunction(Protocol):
    """The callback form of an async function: no coroutine, future or task per call.

    A function that can answer many calls from one piece of I/O (the lookup join: one batched
    query answers a hundred lookups) implements it next to ``async_invoke``, and the operator
    uses it instead. Contract:

    * ``start_call(value, deliver)`` returns the outputs when they are known at once (a
      cache hit), or a :class:`Pending` handle; later it calls ``deliver(handle, outputs,
      None)`` or ``deliver(handle, None, error)`` exactly once, never before it has returned
      and never after ``handle.cancel()``. It raises what ``async_invoke`` would raise before
      its first await (e.g. :class:`~asyncwait.BadInputError` for a value without a key).
    * ``key_of(value)`` returns the call's key (for a lookup join: the join key), raising
      ``BadInputError`` for a value without one; ``start_keyed(key, value, deliver)`` is
      ``start_call`` with that key already taken. A ``KEY_ORDERED`` operator whose key is
      this ``key_of`` orders by it and takes it once per element.
    * All three run on the event loop that opened the function; they never block or await.
    """

    def key_of(self, value: Any) -> Hashable:
        """Return the key of ``value``; raise ``BadInputError`` when it has none."""
        ...

    def start_call(self, value: Any, deliver: Deliver) -> list[Any] | Pending:
        """Start the call for ``value``: its outputs now, or a handle."""
        ...

    def start_keyed(self, key: Hashable, value: Any, deliver: Deliver) -> list[Any] | Pending:
        """``start_call`` for a value whose key (``key_of(value)``) is ``key``."""
        ...


@final
class _Threaded(AsyncFunction[IN, OUT]):
    """A blocking callable run in a thread pool owned by this function."""

    def __init__(self, fn: Callable[[IN], OUT], max_workers: int | None) -> None:
        self._fn = fn
        self._max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def open(self, context: RuntimeContext) -> None:
        # Blocking calls hold a thread each: as many threads as calls may be in flight.
        workers = self._max_workers or min(context.capacity, 256)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"asyncwait-{context.name}"
        )

    async def async_invoke(self, value: IN) -> list[OUT]:
        pool = self._pool
        if pool is None:
            msg = f"threaded({self._fn!r}) was called before open() or after close()"
            raise ClosedError(msg)
        return [await asyncio.get_running_loop().run_in_executor(pool, self._fn, value)]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Threads cannot be interrupted: queued calls are dropped, running ones finish on
            # their own without blocking the event loop.
            pool.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"threaded({self._fn!r})"


def threaded(fn: Callable[[IN], OUT], *, max_workers: int | None = None) -> AsyncFunction[IN, OUT]:
    """Wrap a **blocking** callable so it runs in a thread pool: the no-async-client fallback.

    Each call yields exactly one output, ``fn(value)``. The pool is created in ``open`` with
    ``max_workers`` threads (default: the operator's capacity, at most 256) and shut down in
    ``close``. A timeout cannot stop a running thread: its late result is ignored.

    >>> import asyncwait
    >>> async def main() -> list[int]:
    ...     return [x async for x in asyncwait.ordered_wait(range(3), threaded(lambda v: v + 1))]
    >>> asyncio.run(main())
    [1, 2, 3]
    """
    if not callable(fn):
        msg = f"threaded() needs a callable, got {fn!r}"
        raise TypeError(msg)
    if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
        msg = f"max_workers must be an int >= 1, got {max_workers!r}"
        raise ValueError(msg)
    return _Threaded(fn, max_workers)
