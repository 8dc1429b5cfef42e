"""Every exception asyncwait raises.

The hierarchy::

    AsyncWaitError                  base of everything below
    ├── AsyncTimeoutError           an element's deadline passed (also a TimeoutError)
    ├── AsyncFunctionError          an element failed; .record is its input, __cause__ the reason
    ├── ConfigError                 a bad option or job file (also a ValueError)
    ├── BadInputError               one malformed input (bad line, missing key, wrong type);
    │                               the runtime routes it to the errors file (also a ValueError)
    ├── ClosedError                 our code closed the operator, then it was used again
    └── InternalError               a broken invariant: a bug in asyncwait

*Closed* (:class:`ClosedError`, we closed it) is kept apart from *broken*
(:class:`AsyncFunctionError`, the outside world failed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._reprs import short_repr

if TYPE_CHECKING:
    from .elements import Record

__all__ = (
    "AsyncFunctionError",
    "AsyncTimeoutError",
    "AsyncWaitError",
    "BadInputError",
    "ClosedError",
    "ConfigError",
    "InternalError",
)

# The old private name, still used by modules not yet moved to short_repr.
_short_repr = short_repr


class AsyncWaitError(Exception):
    """Base class of every exception raised by asyncwait."""


class AsyncTimeoutError(AsyncWaitError, TimeoutError):
    """An element did not complete before its deadline and ``timeout()`` did not recover it."""


class AsyncFunctionError(AsyncWaitError):
    """An element failed; the operator is now in the failed state.

    Attributes:
        record: the input record whose processing failed (``None`` when the failure came from
            outside any element, e.g. the downstream ``emit`` raised).
    """

    def __init__(self, message: str, record: Record[Any] | None = None) -> None:
        super().__init__(message)
        self.record = record


class ConfigError(AsyncWaitError, ValueError):
    """A bad option or job file; the message names the field, its source and what is allowed."""


class BadInputError(AsyncWaitError, ValueError):
    """One input element is malformed: a bad line, a missing key, a wrong type.

    The dataflow runtime routes such elements to the errors file (source, line, raw text,
    reason) and goes on, up to ``max_errors``; anywhere else it is an ordinary failure.

    Attributes:
        source: where the element came from (a file path, ``"stdin"``, an operator name).
        line: its 1-based line number in ``source``, when known.
        raw: the raw text of the element, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        raw: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.line = line
        self.raw = raw


class ClosedError(AsyncWaitError):
    """The object was closed by asyncwait (or by the user) and cannot be used any more."""


class InternalError(AsyncWaitError):
    """A broken invariant: a bug in asyncwait; please report it."""
