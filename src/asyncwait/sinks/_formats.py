"""Formats: a batch of records rendered as JSONL or CSV, UTF-8 bytes (private)."""

from __future__ import annotations

import csv as _csv
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, final

from .._codec import dumps_lines
from ..elements import Record, StreamElement, Watermark
from ..errors import ConfigError

__all__ = ("CsvFormat", "Format", "JsonlFormat", "check_columns", "check_delimiter")

Bad = Callable[[Record[Any], str], None]
"""Routes one record a format cannot write aside, with the reason."""


class Format(ABC):
    """Turns a batch of records into text for a stream; a fresh one per job run."""

    @abstractmethod
    def render(self, bad: Bad, elements: list[StreamElement]) -> tuple[bytes, int]:
        """The UTF-8 text for the records of ``elements`` and how many records it holds.

        A record it cannot write goes to ``bad(record, reason)`` and is left out.
        """

    def state(self) -> Any:
        """What a resumed run needs to go on writing the same file (e.g. the CSV header)."""
        return None

    def restore(self, state: Any) -> None:  # noqa: B027 - optional hook
        """Go on from :meth:`state` of an earlier run."""


@final
class JsonlFormat(Format):
    def render(self, bad: Bad, elements: list[StreamElement]) -> tuple[bytes, int]:
        records: list[Any] = [e for e in elements if type(e) is not Watermark]
        out, failed = dumps_lines([record.value for record in records])
        for index, exc in failed:
            bad(records[index], f"cannot write it as JSON: {exc}")
        return out, len(records) - len(failed)


@final
class CsvFormat(Format):
    """CSV rows under a header: the first record's keys, then the declared ``columns``.

    The header is fixed by the first dict record: its keys in order, then each of
    ``columns`` it lacks (e.g. the columns a left join adds only to matched events). A later
    record may lack header fields (empty cells) but not add any: a field outside the
    header is bad input naming it, never dropped in silence. The header is part of
    :meth:`state`, so a resumed run keeps it.
    """

    def __init__(self, delimiter: str, columns: tuple[str, ...] = ()) -> None:
        self._delimiter = delimiter
        self._columns = columns
        self._header: tuple[str, ...] | None = None
        self._keys: frozenset[str] = frozenset()

    def state(self) -> Any:
        # (header, keys) as earlier releases saved it: their checkpoints still restore.
        return None if self._header is None else (self._header, tuple(self._keys))

    def restore(self, state: Any) -> None:
        if state is not None:
            header, _ = state
            self._header = tuple(header)
            self._keys = frozenset(self._header)

    def render(self, bad: Bad, elements: list[StreamElement]) -> tuple[bytes, int]:
        rows: list[list[Any]] = []
        count = 0
        for element in elements:
            if type(element) is Watermark:
                continue
            assert isinstance(element, Record)  # a stream holds records and watermarks
            value = element.value
            if not isinstance(value, dict):
                bad(element, f"a CSV row must be a dict, got {type(value).__name__}")
                continue
            header = self._header
            if header is None:
                first = tuple(value)
                if not all(type(key) is str for key in first):
                    bad(element, f"CSV field names must be strings, got {list(first)}")
                    continue
                header = self._header = first + tuple(c for c in self._columns if c not in first)
                self._keys = frozenset(header)
                rows.append(list(header))
            if value.keys() == self._keys:
                rows.append([value[key] for key in header])
                count += 1
                continue
            extra = [key for key in value if key not in self._keys]
            if extra:
                fields = ", ".join(repr(key) for key in extra)
                what = f"field {fields} is" if len(extra) == 1 else f"fields {fields} are"
                bad(element, f"{what} not in the CSV header {list(header)}")
                continue
            rows.append([value.get(key) for key in header])  # a missing field: an empty cell
            count += 1
        if not rows:
            return b"", 0
        out = _StringSink()
        _csv.writer(out, delimiter=self._delimiter, lineterminator="\n").writerows(rows)
        return "".join(out.parts).encode(), count


@final
class _StringSink:
    """A ``write``-able list of strings (faster than io.StringIO for one batch)."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


def check_delimiter(delimiter: str) -> None:
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        msg = f"csv sink: delimiter must be one character, got {delimiter!r}"
        raise ConfigError(msg)


def check_columns(columns: object) -> tuple[str, ...]:
    """A csv sink's ``columns``: ``None`` or a list of distinct non-empty names, as a tuple.

    Raises:
        ConfigError: anything else.
    """
    if columns is None:
        return ()
    names = None
    if not isinstance(columns, str | bytes) and isinstance(columns, Iterable):
        names = tuple(columns)
    if (
        names is None
        or not all(isinstance(c, str) and c for c in names)
        or len(set(names)) != len(names)
    ):
        msg = f"csv sink: columns must be a list of distinct column names, got {columns!r}"
        raise ConfigError(msg)
    return names
