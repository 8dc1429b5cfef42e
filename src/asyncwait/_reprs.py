"""Short, safe text forms of values for error messages (private)."""

from __future__ import annotations

from typing import Final

__all__ = ("short_repr",)

_REPR_LIMIT: Final = 200


def short_repr(value: object) -> str:
    """Return ``repr(value)`` cut to a length that keeps error messages readable.

    >>> short_repr("x" * 500)[-5:], len(short_repr("x" * 500))
    ('xx...', 200)
    """
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return text
