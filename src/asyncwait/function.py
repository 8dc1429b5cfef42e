"""User functions: the :class:`AsyncFunction` base, plain async callables and :func:`threaded`.

An operator accepts either an :class:`AsyncFunction` (0..n outputs per input, an optional
``timeout()`` hook, ``open``/``close`` around the job) or a plain ``async def f(value)``,
which yields exactly one output: its return value, whatever it is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, final

from .errors import AsyncTimeoutError, ClosedError
from .metrics import Metrics

__all__ = ("AsyncFunction", "RuntimeContext", "threaded")

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


def _default_timeout(value: object) -> Iterable[Any]:
    msg = f"async call on {value!r} timed out"
    raise AsyncTimeoutError(msg)


async def _no_op(*_args: object) -> None:
    return None


@final
@dataclass(frozen=True, slots=True)
class _Adapted:
    """A user function reduced to what the operator calls on the hot path."""

    invoke: Callable[[Any], Awaitable[Any]]
    on_timeout: Callable[[Any], Any]
    open: Callable[[RuntimeContext], Awaitable[None]]
    close: Callable[[], Awaitable[None]]
    single: bool  # True: the result is one output, not an iterable of outputs
    label: str
    # A function's callback form of `invoke`, when it has one (see LookupJoin._invoke_nowait):
    # submit(value, token, deliver) returns the outputs now, or a handle with cancel() and
    # later calls deliver(token, handle, outputs, error).
    submit: Callable[[Any, Any, Callable[..., None]], Any] | None = None
    # Its outputs for a value when they are known without waiting (a cache hit), else None;
    # never raises (a value it cannot handle gets None, and `submit` raises for it).
    try_now: Callable[[Any], list[Any] | None] | None = None


def _adapt(function: object) -> _Adapted:
    """Turn an AsyncFunction, an object shaped like one, or a plain async callable into calls."""
    invoke = getattr(function, "async_invoke", None)
    if invoke is not None and callable(invoke):
        label = type(function).__qualname__
        return _Adapted(
            invoke=invoke,
            on_timeout=getattr(function, "timeout", _default_timeout),
            open=getattr(function, "open", _no_op),
            close=getattr(function, "close", _no_op),
            single=False,
            label=label,
            submit=getattr(function, "_invoke_nowait", None),
            try_now=getattr(function, "_try_now", None),
        )
    if not callable(function):
        msg = (
            "function must be an AsyncFunction or an async callable "
            f"(async def f(value)), got {function!r}"
        )
        raise TypeError(msg)
    target = function.func if isinstance(function, functools.partial) else function
    call = getattr(target, "__call__", None)  # noqa: B004 - an instance with an async __call__
    if not (inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(call)):
        msg = (
            f"function {function!r} is not async: pass an `async def` function, an "
            "AsyncFunction, or wrap a blocking function with asyncwait.threaded(fn)"
        )
        raise TypeError(msg)
    label = getattr(function, "__qualname__", None) or type(function).__qualname__
    return _Adapted(
        invoke=function,
        on_timeout=_default_timeout,
        open=_no_op,
        close=_no_op,
        single=True,
        label=label,
    )


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
