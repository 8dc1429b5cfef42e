"""Formats: a batch of records rendered as JSONL or CSV, UTF-8 bytes (private)."""

from __future__ import annotations

import csv as _csv
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, final

from .._codec import dumps_lines
from ..elements import Record, StreamElement, Watermark
from ..errors import ConfigError

__all__ = ("CsvFormat", "Format", "JsonlFormat", "check_delimiter")

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
    def __init__(self, delimiter: str) -> None:
        self._delimiter = delimiter
        self._header: tuple[str, ...] | None = None
        self._keys: frozenset[str] = frozenset()

    def state(self) -> Any:
        return None if self._header is None else (self._header, tuple(self._keys))

    def restore(self, state: Any) -> None:
        if state is not None:
            header, keys = state
            self._header = tuple(header)
            self._keys = frozenset(keys)

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
                header = self._header = tuple(map(str, value))
                self._keys = frozenset(value)
                rows.append(list(header))
            elif value.keys() != self._keys:
                bad(element, f"its keys differ from the CSV header {list(header)}")
                continue
            rows.append([value[key] for key in header])
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
