"""A user function reduced to the calls the operator makes on its hot path (private)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, final

from ..errors import AsyncTimeoutError
from ..function import CallbackFunction, RuntimeContext

__all__ = ("Adapted", "adapt")


def _default_timeout(value: object) -> Iterable[Any]:
    msg = f"async call on {value!r} timed out"
    raise AsyncTimeoutError(msg)


async def _no_op(*_args: object) -> None:
    return None


@final
@dataclass(frozen=True, slots=True)
class Adapted:
    """What the operator calls.

    Attributes:
        invoke: ``invoke(value)`` returns an awaitable of the result.
        on_timeout: the ``timeout()`` hook.
        open: ``open(context)``.
        close: ``close()``.
        end_input: ``end_input()``, once the input has ended and everything was emitted.
        single: True: the result is one output, not an iterable of outputs.
        label: the function's name in messages.
        callback: the function's callback form, when it has one.
    """

    invoke: Callable[[Any], Awaitable[Any]]
    on_timeout: Callable[[Any], Any]
    open: Callable[[RuntimeContext], Awaitable[None]]
    close: Callable[[], Awaitable[None]]
    single: bool
    label: str
    callback: CallbackFunction | None = None
    end_input: Callable[[], Awaitable[None]] = _no_op


def adapt(function: object) -> Adapted:
    """Turn an AsyncFunction, an object shaped like one, or a plain async callable into calls.

    Raises:
        TypeError: ``function`` is neither an async function nor shaped like an AsyncFunction.
    """
    invoke = getattr(function, "async_invoke", None)
    if invoke is not None and callable(invoke):
        return Adapted(
            invoke=invoke,
            on_timeout=getattr(function, "timeout", _default_timeout),
            open=getattr(function, "open", _no_op),
            close=getattr(function, "close", _no_op),
            single=False,
            label=type(function).__qualname__,
            callback=function if isinstance(function, CallbackFunction) else None,
            end_input=getattr(function, "end_input", _no_op),
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
    return Adapted(
        invoke=function,
        on_timeout=_default_timeout,
        open=_no_op,
        close=_no_op,
        single=True,
        label=label,
    )
