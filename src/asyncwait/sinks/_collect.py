"""The collect sink: records kept in memory (private; re-exported by :mod:`asyncwait.sinks`)."""

from __future__ import annotations

from typing import Any, final

from .._rejects import Reject
from ..elements import Record, StreamElement
from ._base import Sink

__all__ = ("CollectSink", "collect")


@final
class CollectSink(Sink):
    """Keeps every record's value in memory, for tests and small jobs; see :func:`collect`.

    Attributes:
        values: the value of every record, in arrival order.
        elements: every record and watermark, in arrival order.
    """

    def __init__(self, name: str = "collect") -> None:
        super().__init__(name)
        self.values: list[Any] = []
        self.elements: list[StreamElement] = []

    async def open(self, reject: Reject) -> None:
        await super().open(reject)
        self.values = []
        self.elements = []

    def write(self, elements: list[StreamElement]) -> None:
        self.elements.extend(elements)
        self.values.extend(e.value for e in elements if isinstance(e, Record))

    def result(self) -> list[Any]:
        """The collected values."""
        return self.values

    def __repr__(self) -> str:
        return f"<CollectSink {self.name!r} values {len(self.values)}>"


def collect(name: str = "collect") -> CollectSink:
    """A sink keeping the records' values in memory: ``.values`` (and ``.elements``).

    Both lists are reset when a job starts. Nothing is ever rejected.

    >>> sink = collect()
    >>> sink.values
    []
    """
    return CollectSink(name)
