"""Sources: where a job's records come from (JSONL and CSV files, stdin, in-memory collections).

A source is read in batches (:meth:`Source.read`), never one element per await. Each record
remembers its position: the source's name and its 1-based line, which error messages and the
errors file show. File sources also track the byte offset after the last line read
(:attr:`Source.offset`) and can start from an offset (``open(start_offset=...)``), so a
later checkpoint can resume them.

Malformed input is *bad input*, not a failure: a line that is not JSON, a JSON value that is
not an object, invalid UTF-8, a CSV row with the wrong number of fields or a value its type
conversion rejects. The source hands it to the job's ``reject`` (the errors file: source,
line, raw text, reason) and goes on; the job fails only past ``max_errors``. A missing file
is a :class:`~asyncwait.ConfigError` naming the path, raised by ``open`` before anything runs.

Files are read in large chunks with plain blocking reads (short for local files); standard
input that is a pipe or a terminal is read without blocking the event loop.
"""

from __future__ import annotations

import csv as _csv
import itertools
import json
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, final

from ._channel import SourcedRecord
from ._inputs import FileInput, Input, StdinInput
from ._rejects import Reject
from .elements import Record, StreamElement, Watermark
from .errors import BadInputError, ConfigError

__all__ = ("Reject", "Source", "collection", "csv", "jsonl", "stdin")

_END: Final = object()  # the end of an async iterable


def _reject_nothing(error: BadInputError, record: Record[Any] | None = None, /) -> None:
    raise error  # a source used outside a job: bad input is an ordinary error


class Source(ABC):
    """Where a job's elements come from: subclass it to read from anything.

    The job calls :meth:`open` once, :meth:`read` until it returns ``None``, then
    :meth:`close` (also when the job fails). Everything runs on the job's event loop; a
    source may await inside ``read`` (a slow source simply makes the job wait), and the job
    never calls ``read`` again before the previous call returned, nor while its output is
    back-pressured.

    Attributes:
        name: names the source in messages and in the errors file (e.g. the path).
        offset: where the next read continues (bytes for files, elements for collections);
            ``open(start_offset=offset)`` resumes there.
        line: the line number of the last line read (0 before the first).
    """

    # True: read() returns the runtime's own records, which carry their line.
    _yields_sourced: ClassVar[bool] = False

    @property
    def replayable(self) -> bool:
        """Whether ``open(start_offset=...)`` reads again from a saved position.

        Checkpointing needs it. True by default: a custom source that overrides it to
        False (or cannot honour ``start_offset``) cannot be checkpointed.
        """
        return True

    def __init__(self, name: str) -> None:
        self.name = name
        self.offset = 0
        self.line = 0

    @abstractmethod
    async def open(self, reject: Reject, *, start_offset: int = 0, start_line: int = 1) -> None:
        """Open the source, positioned at ``start_offset`` (numbering lines from ``start_line``).

        Args:
            reject: called with a :class:`~asyncwait.BadInputError` (``source``, ``line``,
                ``raw`` set) for each malformed element; it raises once the job has seen
                more than ``max_errors``, and that error must propagate.
            start_offset: where to start (see :attr:`offset`).
            start_line: the number of the first line read.

        Raises:
            ConfigError: the source cannot be opened (e.g. a missing file, naming the path).
        """

    @abstractmethod
    async def read(self, max_elements: int) -> list[StreamElement] | None:
        """Return up to ``max_elements`` elements (maybe none), or ``None`` at the end.

        Elements are :class:`~asyncwait.Record` values (their timestamp may be ``None``) and,
        rarely, :class:`~asyncwait.Watermark` values, in source order.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook; the default has nothing to release
        """Release what :meth:`open` acquired; idempotent."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} line {self.line} offset {self.offset}>"


# --------------------------------------------------------------------------- line sources


class _LineSource(Source):
    """Splits an input's bytes into lines, tracking each line's number and end offset."""

    _yields_sourced = True

    def __init__(self, name: str, input_: Input) -> None:
        super().__init__(name)
        self._input = input_
        self._encoding = "utf-8"
        self._reject: Reject = _reject_nothing
        self._reset()

    def _reset(self) -> None:
        self._lines: list[bytes] = []  # complete lines of the current chunk
        self._next = 0  # index of the next line of _lines to take
        self._newline = 1  # bytes after each line of _lines: 0 for a last line without "\n"
        self._tail = b""  # an incomplete line at the end of the last chunk
        self._eof = False

    async def open(self, reject: Reject, *, start_offset: int = 0, start_line: int = 1) -> None:
        if not isinstance(start_offset, int) or start_offset < 0:
            msg = f"{self.name}: start_offset must be an int >= 0, got {start_offset!r}"
            raise ConfigError(msg)
        if not isinstance(start_line, int) or start_line < 1:
            msg = f"{self.name}: start_line must be an int >= 1, got {start_line!r}"
            raise ConfigError(msg)
        self._reject = reject
        self._reset()
        self.offset = 0
        self.line = 0
        await self._input.open()
        try:
            await self._prepare(start_offset, start_line)
        except BaseException:
            await self._input.close()
            raise

    async def _prepare(self, start_offset: int, start_line: int) -> None:
        self._seek(start_offset, start_line)

    @property
    def replayable(self) -> bool:
        return not isinstance(self._input, StdinInput)

    def _seek(self, offset: int, line: int) -> None:
        if offset:
            self._input.seek(offset)
            self._reset()
        self.offset = offset
        self.line = line - 1

    async def close(self) -> None:
        await self._input.close()

    async def _fill(self) -> bool:
        """Make the next lines available; False at the end of the input."""
        while not self._eof:
            chunk = await self._input.read()
            if not chunk:
                self._eof = True
                if self._tail:
                    self._lines, self._next, self._newline = [self._tail], 0, 0
                    self._tail = b""
                    return True
                return False
            lines = chunk.split(b"\n")
            if self._tail:
                lines[0] = self._tail + lines[0]
            self._tail = lines.pop()
            if lines:
                self._lines, self._next, self._newline = lines, 0, 1
                return True
        return False

    def _bad(self, raw: bytes, line: int, reason: str) -> None:
        text = raw.decode(self._encoding, errors="replace").rstrip("\r")
        self._reject(BadInputError(reason, source=self.name, line=line, raw=text))


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8: {exc.reason} at byte {exc.start}"
    return f"invalid JSON: {exc}"  # pragma: no cover - json.loads raises only the two above


_JSON_TYPES: Final = {list: "an array", str: "a string", int: "a number", float: "a number"}


_SCAN: Final = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # C scanner, no wrappers


def _loads_slowly(text: str, line: int) -> Any:
    """Parse a line the fast path refused: surrounding whitespace, a BOM, or an error."""
    if line == 1:
        text = text.removeprefix("\ufeff")
    return json.loads(text)


@final
class _JsonlSource(_LineSource):
    """One JSON object per line; blank lines are skipped."""

    async def read(self, max_elements: int) -> list[StreamElement] | None:
        out: list[StreamElement] = []
        append = out.append
        scan = _SCAN
        make = SourcedRecord
        budget = max_elements  # lines, good or bad: a run of bad lines still returns
        while budget > 0:
            lines, i = self._lines, self._next
            if i >= len(lines):
                # Return what there is rather than wait on a live input (a pipe) for more.
                if out or not await self._fill():
                    break
                continue
            stop = min(len(lines), i + budget)
            budget -= stop - i
            line, offset, newline = self.line, self.offset, self._newline
            for raw in lines[i:stop]:
                line += 1
                offset += len(raw) + newline
                try:
                    text = raw.decode()
                    try:
                        value, end = scan(text, 0)
                    except StopIteration:
                        value = _loads_slowly(text, line)
                    else:
                        if end != len(text):
                            value = _loads_slowly(text, line)
                except ValueError as exc:
                    if raw.strip():
                        self.line, self.offset = line, offset
                        self._bad(raw, line, _json_reason(exc))
                    continue
                if type(value) is not dict:
                    self.line, self.offset = line, offset
                    kind = _JSON_TYPES.get(type(value), "null" if value is None else "a bool")
                    self._bad(raw, line, f"expected a JSON object, got {kind}")
                    continue
                append(make(value, None, line))
            self.line, self.offset, self._next = line, offset, stop
        if not out and self._eof and self._next >= len(self._lines):
            return None
        return out


def jsonl(path: str | os.PathLike[str]) -> Source:
    """A source reading one JSON object per line from the file at ``path``.

    Records come in file order, one per line, each with its line number; blank lines are
    skipped. A line that is not valid JSON, or whose value is not an object, is bad input
    (the errors file gets its line and raw text). Opening a missing file raises
    :class:`~asyncwait.ConfigError` naming the path.

    >>> jsonl("events.jsonl").name
    'events.jsonl'
    """
    path = Path(path)
    return _JsonlSource(str(path), FileInput(path, "jsonl source"))


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
class _CsvSource(_LineSource):
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


def stdin(
    format: str = "jsonl",
    *,
    delimiter: str = ",",
    quotechar: str = '"',
    types: Mapping[str, Callable[[str], Any]] | None = None,
) -> Source:
    """A source reading the process's standard input as ``"jsonl"`` or ``"csv"``.

    Behaves like :func:`jsonl` or :func:`csv`, named ``<stdin>``. A pipe or terminal is read
    without blocking the event loop; it cannot be resumed from an offset.

    Raises:
        ConfigError: an unknown ``format``.

    >>> stdin().name
    '<stdin>'
    """
    if format == "jsonl":
        return _JsonlSource("<stdin>", StdinInput())
    if format == "csv":
        return _CsvSource(
            "<stdin>",
            StdinInput(),
            delimiter=delimiter,
            quotechar=quotechar,
            types=types,
            encoding="utf-8",
        )
    msg = f"stdin source: format must be 'jsonl' or 'csv', got {format!r}"
    raise ConfigError(msg)


@final
class _CollectionSource(Source):
    """The values of an iterable or async iterable; line *n* is the *n*-th value.

    An iterable is read in batches; an async iterable one value per batch, so that values
    of a live producer are not held back waiting for a batch to fill.
    """

    _yields_sourced = True

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
