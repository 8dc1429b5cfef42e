"""The output modes of the operator (private; re-exported by :mod:`asyncwait.operator`)."""

from __future__ import annotations

import enum

__all__ = ("OutputMode",)


class OutputMode(enum.Enum):
    """The order in which an :class:`AsyncWaitOperator` emits results.

    ``OutputMode("ordered")`` (any case) names a mode by its value, as job files do.
    """

    ORDERED = "ordered"  # outputs in input order, watermarks included
    UNORDERED = "unordered"  # completion order; never across a watermark
    KEY_ORDERED = "key_ordered"  # per key: one call at a time, input order; keys concurrent

    @classmethod
    def _missing_(cls, value: object) -> OutputMode | None:
        if isinstance(value, str):
            for mode in cls:
                if mode.value == value.lower():
                    return mode
        return None
