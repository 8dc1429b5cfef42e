"""The CSV source: rows keyed by the header, quoted fields across lines (private)."""

from __future__ import annotations

import csv as _csv
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, final

from ..elements import StreamElement
from ..errors import ConfigError
from ._base import Source, SourcedRecord
from ._inputs import FileInput, Input
from ._lines import LineSource

__all__ = ("csv", "csv_source")


class _Feed:
    """The one-line iterable a persistent ``csv.reader`` parses, one row at a time."""

    __slots__ = ("text",)

    def __init__(self) -> None:
        self.text: str | None = None

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        text = self.text
        if text is None:
            raise StopIteration
        self.text = None
        return text


@final
class _CsvSource(LineSource):
    """CSV with a header row; a quoted field may span lines."""

    def __init__(
        self,
        name: str,
        input_: Input,
        *,
        delimiter: str,
        quotechar: str,
        types: Mapping[str, Callable[[str], Any]] | None,
        encoding: str,
    ) -> None:
        super().__init__(name, input_)
        for what, char in (("delimiter", delimiter), ("quotechar", quotechar)):
            if not isinstance(char, str) or len(char) != 1 or not char.isascii():
                msg = f"csv source {name}: {what} must be one ASCII character, got {char!r}"
                raise ConfigError(msg)
        if types is not None and not all(callable(fn) for fn in types.values()):
            msg = f"csv source {name}: types must map field names to callables, got {types!r}"
            raise ConfigError(msg)
        self._dialect: dict[str, Any] = {"delimiter": delimiter, "quotechar": quotechar}
        self._quote = quotechar.encode("ascii")
        self._types = dict(types or {})
        self._encoding = encoding
        self._header: tuple[str, ...] = ()
        self._feed = _Feed()
        self._parser = _csv.reader(self._feed, **self._dialect)
        self._pending: list[bytes] | None = None  # lines of a row whose quoted field is open
        self._pending_line = 0
        self._pending_offset = 0  # where that row starts

    @property
    def header(self) -> tuple[str, ...]:
        """The field names, from the first row (empty before ``open``)."""
        return self._header

    async def _prepare(self, start_offset: int, start_line: int) -> None:
        self._pending = None
        row = await self._next_row()
        while row is not None and not row[0].strip():
            row = await self._next_row()
        if row is None:
            self._header = ()
            return
        raw, line = row
        try:
            fields = self._parse(raw)
        except (UnicodeDecodeError, _csv.Error) as exc:
            msg = f"{self.name}:{line}: cannot read the CSV header: {exc}"
            raise ConfigError(msg) from exc
        if fields and fields[0].startswith("\ufeff"):
            fields[0] = fields[0][1:]  # a UTF-8 byte order mark
        if len(set(fields)) != len(fields):
            msg = f"{self.name}:{line}: the CSV header repeats a field name: {fields!r}"
            raise ConfigError(msg)
        unknown = sorted(set(self._types) - set(fields))
        if unknown:
            msg = f"{self.name}: types names fields the header lacks: {unknown} (header {fields})"
            raise ConfigError(msg)
        self._header = tuple(fields)
        if start_offset > self.offset:
            self._seek(start_offset, start_line)

    def _parse(self, raw: bytes) -> list[str]:
        self._feed.text = raw.decode(self._encoding)
        return next(self._parser)

    def _complete(self, raw: bytes) -> bool:
        """Whether ``raw``, with an odd number of quote characters, is a whole row."""
        try:
            next(_csv.reader([raw.decode(self._encoding)], strict=True, **self._dialect))
        except _csv.Error as exc:
            return "unexpected end of data" not in str(exc)
        except UnicodeDecodeError:
            return True  # rejected as a whole when it is parsed
        return True

    def _resume_point(self) -> tuple[int, int]:
        if self._pending is not None:
            # In the middle of a row whose quoted field spans lines: resume at its start,
            # not inside it (which would read the rest of the row as rows of their own).
            return self._pending_offset, self._pending_line - 1
        return self.offset, self.line

    def _take_row(self) -> tuple[bytes, int] | None:
        """The next complete row and its first line, or None when the lines run out."""
        lines, quote = self._lines, self._quote
        while self._next < len(lines):
            raw = lines[self._next]
            self._next += 1
            self.line += 1
            self.offset += len(raw) + self._newline
            pending = self._pending
            if pending is None:
                if not raw.count(quote) % 2 or self._complete(raw):
                    return raw, self.line
                self._pending, self._pending_line = [raw], self.line
                self._pending_offset = self.offset - len(raw) - self._newline
            else:
                pending.append(raw)
                text = b"\n".join(pending)
                if not text.count(quote) % 2 or self._complete(text):
                    self._pending = None
                    return text, self._pending_line
        return None

    async def _next_row(self) -> tuple[bytes, int] | None:
        while (row := self._take_row()) is None:
            if not await self._fill():
                pending, self._pending = self._pending, None
                if pending is not None:
                    self._bad(b"\n".join(pending), self._pending_line, "unterminated quoted field")
                return None
        return row

    async def read(self, max_elements: int) -> list[StreamElement] | None:
        header = self._header
        if not header:
            return None
        out: list[StreamElement] = []
        width, types = len(header), self._types
        for _ in range(max_elements):
            row = self._take_row()
            if row is None:
                if out:
                    break  # return what there is rather than wait on a live input for more
                row = await self._next_row()
                if row is None:
                    break
            raw, line = row
            if not raw.strip():
                continue
            try:
                fields = self._parse(raw)
            except (UnicodeDecodeError, _csv.Error) as exc:
                self._bad(raw, line, f"invalid CSV row: {exc}")
                continue
            if len(fields) != width:
                self._bad(raw, line, f"expected {width} fields (the header's), got {len(fields)}")
                continue
            value: dict[str, Any] = dict(zip(header, fields, strict=True))
            if types:
                try:
                    for field, convert in types.items():
                        text = value[field]
                        value[field] = None if text == "" else convert(text)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    reason = f"field {field!r}: cannot convert {text!r}: {exc}"
                    self._bad(raw, line, reason)
                    continue
            out.append(SourcedRecord(value, None, line))
        if not out and self._eof and self._next >= len(self._lines) and self._pending is None:
            return None
        return out


def csv(
    path: str | os.PathLike[str],
    *,
    delimiter: str = ",",
    quotechar: str = '"',
    types: Mapping[str, Callable[[str], Any]] | None = None,
    encoding: str = "utf-8",
) -> Source:
    """A source reading the rows of the CSV file at ``path`` as dicts keyed by its header.

    Records come in file order, each with the line its row starts on; a quoted field may
    span lines, blank lines are skipped. ``types`` converts fields (e.g. ``{"age": int}``);
    an empty field becomes ``None``. A row with the wrong number of fields, or a value its
    conversion rejects, is bad input. Opening a missing file raises
    :class:`~asyncwait.ConfigError` naming the path.

    >>> csv("users.csv", types={"age": int}).name
    'users.csv'
    """
    path = Path(path)
    return _CsvSource(
        str(path),
        FileInput(path, "csv source"),
        delimiter=delimiter,
        quotechar=quotechar,
        types=types,
        encoding=encoding,
    )


def csv_source(
    name: str,
    input_: Input,
    *,
    delimiter: str,
    quotechar: str,
    types: Mapping[str, Callable[[str], Any]] | None,
    encoding: str,
) -> Source:
    """A CSV source named ``name`` reading ``input_`` (for :func:`csv` and ``stdin``)."""
    return _CsvSource(
        name, input_, delimiter=delimiter, quotechar=quotechar, types=types, encoding=encoding
    )
