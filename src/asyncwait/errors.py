"""Every exception asyncwait raises.

The hierarchy::

    AsyncWaitError                  base of everything below
    ├── AsyncTimeoutError           an element's deadline passed (also a TimeoutError)
    │   └── AttemptTimeoutError     one attempt ran past attempt_timeout (retried by default)
    ├── AsyncFunctionError          an element failed; .record is its input, __cause__ the reason
    ├── ConfigError                 a bad option or job file (also a ValueError)
    ├── BadInputError               one malformed input (bad line, missing key, wrong type);
    │                               the runtime routes it to the errors file (also a ValueError)
    ├── ClosedError                 our code closed the operator, then it was used again
    ├── CircuitOpenError            a circuit breaker refused the call (never retried)
    ├── LookupFailedError           a lookup table answered what is neither a row nor a miss
    │   │                           (a body or value it cannot decode); .table. Not bad input:
    │   │                           retried as the operator's policy says, then the job fails
    │   └── HttpStatusError         an HTTP lookup answered neither 200 (row) nor 404 (miss);
    │                               .status, .retryable (429, 5xx), .retry_after
    └── InternalError               a broken invariant: a bug in asyncwait

    UserWarning
    └── CheckpointWarning           a damaged checkpoint was skipped, or a resume cannot be
                                    fully checked

*Closed* (:class:`ClosedError`, we closed it) is kept apart from *broken*
(:class:`AsyncFunctionError`, the outside world failed). *Bad input* (:class:`BadInputError`,
one malformed event: its own fault, routed aside) is kept apart from a *failed lookup*
(:class:`LookupFailedError`, the store or its configuration is wrong: every event would
suffer, so the job must not go on as if it succeeded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .elements import Record

__all__ = (
    "AsyncFunctionError",
    "AsyncTimeoutError",
    "AsyncWaitError",
    "AttemptTimeoutError",
    "BadInputError",
    "CheckpointWarning",
    "CircuitOpenError",
    "ClosedError",
    "ConfigError",
    "HttpStatusError",
    "InternalError",
    "LookupFailedError",
)


class AsyncWaitError(Exception):
    """Base class of every exception raised by asyncwait."""


class AsyncTimeoutError(AsyncWaitError, TimeoutError):
    """An element did not complete before its deadline and ``timeout()`` did not recover it."""


class AttemptTimeoutError(AsyncTimeoutError):
    """One attempt of an element's call ran longer than its ``attempt_timeout``.

    The attempt is abandoned; like any exception it is retried when the retry strategy says
    so, while the element's own deadline (``timeout``) allows.
    """


class CircuitOpenError(AsyncWaitError):
    """A circuit breaker is open: the call was refused without reaching the store.

    Never retried: the element goes straight to its ``on_error`` policy, so a job keeps
    flowing while the store is down.
    """


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


class LookupFailedError(AsyncWaitError):
    """A lookup table answered something that is neither a row nor a miss.

    The store was reached, but its answer cannot be read: an HTTP 200 whose body is HTML or
    not JSON, a JSON body of the wrong shape, a Redis value that is not the declared JSON
    (or a key of the wrong type), a row the driver cannot decode. The event is not at fault
    (that would be :class:`BadInputError`), so the operator's retry strategy applies, and
    when retries run out the element fails the job. The table fetches each key once per
    attempt: a batch failing this way is not asked again key by key.

    Attributes:
        table: the name of the lookup table (never holding a secret), when known.
    """

    def __init__(self, message: str, *, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class HttpStatusError(LookupFailedError):
    """The service answered a lookup with a status other than 200 (row) or 404 (miss).

    Attributes:
        status: the HTTP status code.
        url: the request's URL, without credentials or query secrets.
        retry_after: seconds the server asked to wait (its ``Retry-After`` header), or
            ``None``.
        retryable: ``True`` for 429 and 5xx, which a retry may cure.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str,
        retry_after: float | None = None,
        table: str | None = None,
    ) -> None:
        super().__init__(message, table=table)
        self.status = status
        self.url = url
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether the status says a later attempt may succeed (429 or 5xx)."""
        return self.status == 429 or self.status >= 500

    @staticmethod
    def is_retryable(exc: BaseException) -> bool:
        """Retry predicate for HTTP lookups: transient failures only.

        True for an :class:`HttpStatusError` that is ``retryable`` (429, 5xx) and for the
        :class:`ConnectionError`/:class:`TimeoutError` an unreachable or silent service
        raises; false for everything else (a 401, a malformed body, ...).

        >>> from asyncwait import retry
        >>> policy = retry.exponential_backoff(
        ...     3, 0.1, 2.0, on_exception=HttpStatusError.is_retryable)
        >>> HttpStatusError.is_retryable(HttpStatusError("busy", status=503, url="u"))
        True
        >>> HttpStatusError.is_retryable(HttpStatusError("no", status=401, url="u"))
        False
        """
        if isinstance(exc, HttpStatusError):
            return exc.retryable
        return isinstance(exc, ConnectionError | TimeoutError)


class InternalError(AsyncWaitError):
    """A broken invariant: a bug in asyncwait; please report it."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (corrupt, partial, unreadable), or a resume cannot be checked.

    A checkpoint the job did not write (no valid HMAC) is not skipped with a warning but
    refused with a :class:`ConfigError`.
    """
