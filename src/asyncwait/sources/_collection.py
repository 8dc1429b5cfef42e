"""The collection source: the values of an iterable or async iterable (private)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, Iterable
from typing import Any, Final, final

from .._rejects import Reject
from ..elements import Record, StreamElement, Watermark
from ._base import Source, SourcedRecord

__all__ = ("collection",)

_END: Final = object()  # the end of an async iterable


@final
class _CollectionSource(Source):
    """The values of an iterable or async iterable; line *n* is the *n*-th value.

    An iterable is read in batches; an async iterable one value per batch, so that values
    of a live producer are not held back waiting for a batch to fill.
    """

    yields_lines = True

    def __init__(self, values: Iterable[Any] | AsyncIterable[Any], name: str) -> None:
        if not isinstance(values, Iterable | AsyncIterable):
            msg = f"{name}: expected an iterable or async iterable of values, got {values!r}"
            raise TypeError(msg)
        super().__init__(name)
        self._values = values
        self._sync: Iterable[Any] | None = None
        self._async: Any = None  # the async iterator

    async def open(self, reject: Reject, *, start_offset: int = 0, start_line: int = 1) -> None:
        values = self._values
        if isinstance(values, AsyncIterable):
            self._async = aiter(values)
            for _ in range(start_offset):
                await anext(self._async, None)
        else:
            self._sync = itertools.islice(values, start_offset, None)
        self.offset = start_offset
        self.line = start_line - 1

    async def read(self, max_elements: int) -> list[StreamElement] | None:
        if self._async is not None:
            # One value per batch: a live producer's values reach the job as they come.
            value = await anext(self._async, _END)
            values: list[Any] = [] if value is _END else [value]
        else:
            assert self._sync is not None  # open() ran
            values = list(itertools.islice(self._sync, max_elements))
        if not values:
            return None
        out: list[StreamElement] = []
        line = self.line
        for value in values:
            line += 1
            if isinstance(value, Record):
                out.append(SourcedRecord(value.value, value.timestamp, line))
            elif isinstance(value, Watermark):
                out.append(value)
            else:
                out.append(SourcedRecord(value, None, line))
        self.line = line
        self.offset += len(values)
        return out

    async def close(self) -> None:
        iterator, self._async = self._async, None
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def collection(values: Iterable[Any] | AsyncIterable[Any], *, name: str = "collection") -> Source:
    """A source yielding ``values`` in order: plain values, or records and watermarks.

    A :class:`~asyncwait.Record` keeps its timestamp; a :class:`~asyncwait.Watermark` is
    passed on as one. Value *n* is "line" *n* in messages. The iterable is consumed when the
    job runs (an async iterable may await between values).

    >>> collection([1, 2, 3]).name
    'collection'
    """
    return _CollectionSource(values, name)
