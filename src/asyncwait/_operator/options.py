"""The operator's options, checked once and kept as one value (private)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, final

from .._checks import check_int, check_seconds
from ..errors import ConfigError
from ..retry import RetryStrategy
from .mode import OutputMode
from .policy import OnError

__all__ = ("Options", "check_options")


@final
@dataclass(frozen=True, slots=True)
class Options:
    """An :class:`~asyncwait.AsyncWaitOperator`'s options, all checked."""

    name: str
    mode: OutputMode
    capacity: int
    timeout: float | None
    retry: RetryStrategy
    key: Callable[[Any], Hashable] | None
    attempt_timeout: float | None
    on_error: OnError
    default: Callable[[Any, BaseException], Iterable[Any]] | None


def check_options(
    name: str,
    *,
    mode: object,
    capacity: object,
    timeout: object,
    retry: object,
    key: object,
    attempt_timeout: object,
    on_error: object,
    default: object,
) -> Options:
    """Check an operator's options; the message names the operator and the option.

    Raises:
        ValueError: a bad value (a :class:`~asyncwait.ConfigError` when options contradict
            each other).
    """
    try:
        chosen = OutputMode(mode)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in OutputMode)
        msg = f"{name}: mode must be an OutputMode or one of {allowed}, got {mode!r}"
        raise ValueError(msg) from None
    size = check_int(name, "capacity", capacity, error=ValueError)
    seconds = check_seconds(name, "timeout", timeout, optional=True, error=ValueError)
    if not isinstance(retry, RetryStrategy):
        msg = f"{name}: retry must be a strategy from asyncwait.retry, got {retry!r}"
        raise ValueError(msg)
    if chosen is OutputMode.KEY_ORDERED and key is None:
        msg = f"{name}: KEY_ORDERED needs key=, a function from value to key"
        raise ValueError(msg)
    if key is not None and not callable(key):
        msg = f"{name}: key must be callable, got {key!r}"
        raise ValueError(msg)
    attempt = check_seconds(name, "attempt_timeout", attempt_timeout, optional=True)
    if attempt is not None and seconds is not None and attempt >= seconds:
        msg = (
            f"{name}: attempt_timeout ({attempt:g} s) must be shorter than timeout "
            f"({seconds:g} s), the element's deadline over all its attempts"
        )
        raise ConfigError(msg)
    try:
        policy = OnError(on_error)
    except ValueError:
        allowed = ", ".join(repr(p.value) for p in OnError)
        msg = f"{name}: on_error must be one of {allowed}, got {on_error!r}"
        raise ConfigError(msg) from None
    if policy is OnError.DEFAULT and not callable(default):
        msg = f"{name}: on_error 'default' needs default=, a function (value, error) -> outputs"
        raise ConfigError(msg)
    if default is not None and policy is not OnError.DEFAULT:
        msg = f"{name}: default is given but on_error is {policy.value!r}; use on_error='default'"
        raise ConfigError(msg)
    return Options(
        name=name,
        mode=chosen,
        capacity=size,
        timeout=seconds,
        retry=retry,
        key=key,
        attempt_timeout=attempt,
        on_error=policy,
        default=default,  # type: ignore[arg-type]
    )
