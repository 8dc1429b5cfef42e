"""Retry strategies: immutable values deciding whether and when an element is invoked again.

A strategy never holds per-element state: the backoff before retry *k* is a pure function of
*k* (plus a random factor drawn from the RNG the operator passes in, when jitter is on).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, final

__all__ = (
    "ANY_EXCEPTION",
    "EMPTY_RESULT",
    "MISSING_ROW",
    "NO_RETRY",
    "ExceptionPredicate",
    "ExponentialBackoff",
    "FixedDelay",
    "MissedRow",
    "NoRetry",
    "ResultPredicate",
    "RetryStrategy",
    "exception_type",
    "exponential_backoff",
    "fixed_delay",
)

ResultPredicate: TypeAlias = Callable[[Sequence[Any]], bool]
ExceptionPredicate: TypeAlias = Callable[[BaseException], bool]


def _empty_result(result: Sequence[Any]) -> bool:
    return len(result) == 0


def _any_exception(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


EMPTY_RESULT: Final[ResultPredicate] = _empty_result
"""Result predicate: retry when the result list is empty."""


class MissedRow(list[Any]):
    """The outputs of a lookup that found no row: a list like any other, marked.

    A lookup join returns it for a key without a row (its left-join output, or nothing
    for an inner join), so that :data:`MISSING_ROW` can ask again: Flink's ``lookup_miss``
    retry, for dimension rows that arrive shortly after their events.
    """

    __slots__ = ()


def _missing_row(result: Sequence[Any]) -> bool:
    return isinstance(result, MissedRow)


MISSING_ROW: Final[ResultPredicate] = _missing_row
"""Result predicate: retry a lookup that found no row (``retry = { ..., on_miss = true }``).

After the last retry a miss is a normal miss (the left join's event, unchanged).

>>> MISSING_ROW(MissedRow([{"userID": "user_9"}])), MISSING_ROW([{"age": 22}])
(True, False)
"""

ANY_EXCEPTION: Final[ExceptionPredicate] = _any_exception
"""Exception predicate: retry on any :class:`Exception` (never on cancellation)."""


def exception_type(*types: type[BaseException]) -> ExceptionPredicate:
    """Return a predicate that retries when the exception is an instance of one of ``types``.

    >>> retry_io = exception_type(ConnectionError, TimeoutError)
    >>> retry_io(ConnectionResetError()), retry_io(KeyError())
    (True, False)
    """
    if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        msg = f"exception_type() needs one or more exception classes, got {types!r}"
        raise TypeError(msg)

    def predicate(exc: BaseException) -> bool:
        return isinstance(exc, types)

    predicate.__qualname__ = predicate.__name__ = (
        f"exception_type({', '.join(t.__name__ for t in types)})"
    )
    return predicate


class RetryStrategy:
    """Base of every retry strategy; see :func:`fixed_delay` and :func:`exponential_backoff`.

    Attributes:
        max_retries: retries allowed per element; a function runs at most ``max_retries + 1``
            times for one element.
        on_result: retry when this returns true for the result list; ``None`` never retries.
        on_exception: retry when this returns true for the exception; ``None`` never retries.
    """

    __slots__ = ()
    max_retries: int
    on_result: ResultPredicate | None
    on_exception: ExceptionPredicate | None

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Return the delay in seconds before retry number ``retry`` (1 for the first retry)."""
        raise NotImplementedError


@final
@dataclass(frozen=True, slots=True)
class NoRetry(RetryStrategy):
    """Never retry: the first outcome is final."""

    max_retries: int = 0
    on_result: ResultPredicate | None = None
    on_exception: ExceptionPredicate | None = None

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        return 0.0


NO_RETRY: Final = NoRetry()
"""The strategy used when none is given: the first outcome is final."""


def _check_common(max_retries: int) -> None:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        msg = f"max_retries must be an int >= 0, got {max_retries!r}"
        raise ValueError(msg)


def _check_delay(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        msg = f"{name} must be a number of seconds >= 0, got {value!r}"
        raise ValueError(msg)


@final
@dataclass(frozen=True, slots=True)
class FixedDelay(RetryStrategy):
    """Retry after the same delay every time; build it with :func:`fixed_delay`."""

    max_retries: int
    delay: float
    on_result: ResultPredicate | None = None
    on_exception: ExceptionPredicate | None = ANY_EXCEPTION

    def __post_init__(self) -> None:
        _check_common(self.max_retries)
        _check_delay("delay", self.delay)

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        return float(self.delay)


@final
@dataclass(frozen=True, slots=True)
class ExponentialBackoff(RetryStrategy):
    """Retry after ``min(initial_delay * multiplier**(k-1), max_delay) * U[1-jitter, 1+jitter]``.

    Build it with :func:`exponential_backoff`.
    """

    max_retries: int
    initial_delay: float
    max_delay: float
    multiplier: float = 2.0
    jitter: float = 0.0
    on_result: ResultPredicate | None = None
    on_exception: ExceptionPredicate | None = ANY_EXCEPTION

    def __post_init__(self) -> None:
        _check_common(self.max_retries)
        _check_delay("initial_delay", self.initial_delay)
        _check_delay("max_delay", self.max_delay)
        if self.max_delay < self.initial_delay:
            msg = (
                f"max_delay ({self.max_delay!r}) must not be smaller than "
                f"initial_delay ({self.initial_delay!r})"
            )
            raise ValueError(msg)
        if isinstance(self.multiplier, bool) or not self.multiplier >= 1:
            msg = f"multiplier must be >= 1, got {self.multiplier!r}"
            raise ValueError(msg)
        if isinstance(self.jitter, bool) or not 0 <= self.jitter <= 1:
            msg = f"jitter must be within [0, 1], got {self.jitter!r}"
            raise ValueError(msg)

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        if retry < 1:
            msg = f"retry numbers start at 1, got {retry!r}"
            raise ValueError(msg)
        try:
            base = self.initial_delay * self.multiplier ** (retry - 1)
        except OverflowError:
            base = self.max_delay
        delay = min(base, self.max_delay)
        if self.jitter:
            draw = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
            delay *= draw
        return float(delay)


def fixed_delay(
    max_retries: int,
    delay: float,
    *,
    on_result: ResultPredicate | None = None,
    on_exception: ExceptionPredicate | None = ANY_EXCEPTION,
) -> FixedDelay:
    """Retry up to ``max_retries`` times, waiting ``delay`` seconds before each retry.

    Args:
        max_retries: retries per element (the function runs at most ``max_retries + 1`` times).
        delay: seconds to wait before every retry.
        on_result: retry when ``on_result(result_list)`` is true (``None``: never on results).
        on_exception: retry when ``on_exception(exc)`` is true (``None``: never on exceptions).

    Raises:
        ValueError: ``max_retries < 0`` or a negative delay.

    >>> fixed_delay(3, 0.5).backoff(2)
    0.5
    """
    return FixedDelay(max_retries, delay, on_result=on_result, on_exception=on_exception)


def exponential_backoff(
    max_retries: int,
    initial_delay: float,
    max_delay: float,
    multiplier: float = 2.0,
    *,
    jitter: float = 0.0,
    on_result: ResultPredicate | None = None,
    on_exception: ExceptionPredicate | None = ANY_EXCEPTION,
) -> ExponentialBackoff:
    """Retry up to ``max_retries`` times with exponentially growing, capped, jittered delays.

    The delay before retry *k* is ``min(initial_delay * multiplier**(k-1), max_delay)``,
    multiplied by a random factor in ``[1 - jitter, 1 + jitter]``.

    Raises:
        ValueError: ``max_retries < 0``, negative delays, ``multiplier < 1`` or ``jitter``
            outside ``[0, 1]``.

    >>> s = exponential_backoff(5, 0.1, 1.0)
    >>> [s.backoff(k) for k in (1, 2, 3, 4, 5)]
    [0.1, 0.2, 0.4, 0.8, 1.0]
    """
    return ExponentialBackoff(
        max_retries,
        initial_delay,
        max_delay,
        multiplier,
        jitter,
        on_result=on_result,
        on_exception=on_exception,
    )
