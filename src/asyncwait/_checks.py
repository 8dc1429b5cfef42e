"""Checks of option values shared by every constructor and factory (private).

Each check returns the value in its canonical type or raises ``error`` (a
:class:`~asyncwait.ConfigError` unless the caller's contract says ``ValueError``) with one
message shape everywhere: ``"<owner>: <field> must be <what>, got <value>"``. ``bool`` is
never taken for a number, although it is an ``int`` in Python: ``capacity=True`` is a typo.

>>> check_int("lookup join", "max_queries", 4)
4
>>> check_seconds("lookup join", "timeout", None, optional=True) is None
True
>>> check_int("lookup join", "max_queries", True)
Traceback (most recent call last):
asyncwait.errors.ConfigError: lookup join: max_queries must be an int >= 1, got True
"""

from __future__ import annotations

import math
from typing import Literal, overload

from .errors import ConfigError

__all__ = ("check_bool", "check_int", "check_seconds", "is_int", "is_number")


def is_int(value: object) -> bool:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for a finite ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@overload
def check_int(
    owner: str,
    field: str,
    value: object,
    *,
    minimum: int = ...,
    maximum: int | None = ...,
    optional: Literal[False] = ...,
    error: type[ValueError] = ...,
) -> int: ...
@overload
def check_int(
    owner: str,
    field: str,
    value: object,
    *,
    minimum: int = ...,
    maximum: int | None = ...,
    optional: Literal[True],
    error: type[ValueError] = ...,
) -> int | None: ...
def check_int(
    owner: str,
    field: str,
    value: object,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    optional: bool = False,
    error: type[ValueError] = ConfigError,
) -> int | None:
    """Return ``value`` if it is an int >= ``minimum`` (and <= ``maximum``, if given).

    ``None`` is accepted, and returned, when ``optional``.
    """
    if value is None and optional:
        return None
    if (
        not is_int(value)
        or value < minimum  # type: ignore[operator]
        or (maximum is not None and value > maximum)  # type: ignore[operator]
    ):
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        allowed = f"an int {bound}" + (" or None" if optional else "")
        msg = f"{owner}: {field} must be {allowed}, got {value!r}"
        raise error(msg)
    assert isinstance(value, int)  # is_int
    return value


@overload
def check_seconds(
    owner: str,
    field: str,
    value: object,
    *,
    zero: bool = ...,
    optional: Literal[False] = ...,
    error: type[ValueError] = ...,
) -> float: ...
@overload
def check_seconds(
    owner: str,
    field: str,
    value: object,
    *,
    zero: bool = ...,
    optional: Literal[True],
    error: type[ValueError] = ...,
) -> float | None: ...
def check_seconds(
    owner: str,
    field: str,
    value: object,
    *,
    zero: bool = False,
    optional: bool = False,
    error: type[ValueError] = ConfigError,
) -> float | None:
    """Return ``value`` as float seconds: finite and > 0 (>= 0 with ``zero``), or ``None``."""
    if value is None and optional:
        return None
    if not is_number(value) or not (value >= 0 if zero else value > 0):  # type: ignore[operator]
        allowed = f"a number of seconds {'>=' if zero else '>'} 0" + (
            " or None" if optional else ""
        )
        msg = f"{owner}: {field} must be {allowed}, got {value!r}"
        raise error(msg)
    return float(value)  # type: ignore[arg-type]


def check_bool(
    owner: str, field: str, value: object, *, error: type[ValueError] = ConfigError
) -> bool:
    """Return ``value`` if it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        msg = f"{owner}: {field} must be True or False, got {value!r}"
        raise error(msg)
    return value
