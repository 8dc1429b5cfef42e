"""The options of a lookup join, checked with one message shape (private).

Each check names the join (``"lookup join on <table>"``) and the option, and says what is
allowed; :class:`~asyncwait.join.LookupJoin` runs them all before it keeps anything.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from .._reprs import short_repr
from ..errors import BadInputError, ConfigError

__all__ = ("bad_key", "check_batching", "check_join", "not_a_dict", "ratio_option")


def check_join(
    source: str, on: object, how: object, combine: object, cache: object, columns: object
) -> tuple[Callable[[Any], Hashable], str, tuple[str, ...] | None]:
    """Check what a join joins on and how.

    Returns:
        ``on`` as a callable (a field name becomes ``operator.itemgetter``), the join type's
        value (``"left"``/``"inner"``) and ``columns`` as a tuple (or ``None``).

    Raises:
        ConfigError: ``how`` is not ``"left"``/``"inner"``, or ``columns`` is not a list
            of names.
        TypeError: ``on``/``combine`` is not callable, or ``cache`` is not a cache spec.
    """
    if isinstance(on, str):
        on = operator.itemgetter(on)
    if not callable(on):
        msg = f"{source}: on must be a callable or a field name, got {on!r}"
        raise TypeError(msg)
    kind = getattr(how, "value", how)  # a JoinType, or its value
    if kind not in ("left", "inner"):
        msg = f"{source}: how must be 'left' or 'inner', got {how!r}"
        raise ConfigError(msg)
    if combine is not None and not callable(combine):
        msg = f"{source}: combine must be callable or None, got {combine!r}"
        raise TypeError(msg)
    if cache is not None and not callable(getattr(cache, "create", None)):
        msg = (
            f"{source}: cache must be a spec from asyncwait.cache "
            f"(cache.lru(...), cache.full(...)) or None, got {cache!r}"
        )
        raise TypeError(msg)
    if columns is None:
        return on, kind, None
    names = None
    if isinstance(columns, Iterable) and not isinstance(columns, str | bytes):
        names = tuple(columns)
    if names is None or not all(isinstance(c, str) for c in names):
        msg = f"{source}: columns must be a list of names, got {columns!r}"
        raise ConfigError(msg)
    return on, kind, names


def check_batching(
    source: str,
    *,
    max_batch_size: object,
    max_batch: object,
    max_queries: object,
    max_batch_wait: object,
) -> None:
    """Check a join's batching options, naming ``source`` (the join) in the error.

    Raises:
        ConfigError: a size is not an int >= 1 (or both batch sizes are given and differ),
            or ``max_batch_wait`` is not a finite number >= 0.
    """
    for field, value in (
        ("max_batch_size", max_batch_size),
        ("max_batch", max_batch),
        ("max_queries", max_queries),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{source}: {field} must be an int >= 1, got {value!r}"
            raise ConfigError(msg)
    if max_batch is not None and max_batch_size is not None and max_batch != max_batch_size:
        msg = (
            f"{source}: max_batch is the old name of max_batch_size; give one of them, got "
            f"max_batch_size={max_batch_size} and max_batch={max_batch}"
        )
        raise ConfigError(msg)
    if (
        isinstance(max_batch_wait, bool)
        or not isinstance(max_batch_wait, int | float)
        or not math.isfinite(max_batch_wait)
        or max_batch_wait < 0
    ):
        msg = f"{source}: max_batch_wait must be a number of seconds >= 0, got {max_batch_wait!r}"
        raise ConfigError(msg)


def ratio_option(source: str, value: object) -> float | None:
    """``min_match_ratio`` checked: ``None``, or a number in [0, 1] (as a float).

    Raises:
        ConfigError: anything else, naming ``source`` (the join).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        msg = f"{source}: min_match_ratio must be a number in [0, 1] or None, got {value!r}"
        raise ConfigError(msg)
    return float(value)


def bad_key(source: str, value: Any, exc: Exception | None, key: object = None) -> BadInputError:
    """The error for event ``value`` whose join key cannot be taken (``exc``) or is ``key``."""
    if exc is None:
        why = "None" if key is None else f"{key!r}, a boolean, which matches no key"
        msg = f"{source}: the join key of event {short_repr(value)} is {why}"
    else:
        msg = (
            f"{source}: cannot take the join key of event {short_repr(value)}: "
            f"{type(exc).__name__}: {exc}"
        )
    return BadInputError(msg, source=source)


def not_a_dict(source: str, event: Any) -> BadInputError:
    """The error for an event a row cannot be merged into."""
    msg = (
        f"{source}: event {short_repr(event)} is not a dict, so the row "
        f"cannot be merged into it; pass combine=fn(event, row)"
    )
    return BadInputError(msg, source=source)
