"""Text sinks: rendered batches (UTF-8) written to a byte stream; standard output (private)."""

from __future__ import annotations

import functools
import sys
from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import IO, Any, Final, cast, final

from .._rejects import Reject, describe
from ..elements import Record, StreamElement
from ..errors import BadInputError, ClosedError, ConfigError
from ._base import Sink
from ._formats import CsvFormat, Format, JsonlFormat, check_columns, check_delimiter

__all__ = ("BUFFER", "TextSink", "stdout")

BUFFER: Final = 1 << 20  # bytes of write buffer for file sinks


class TextSink(Sink):
    """Writes rendered batches to a byte stream: a file it owns, or stdout."""

    def __init__(self, name: str, format: Callable[[], Format]) -> None:
        super().__init__(name)
        self._new_format = format
        self._format = format()
        self._stream: IO[bytes] | None = None
        self._flush = False  # flush after every batch (an interactive stream)
        self.written = 0  # records written since open

    async def open(self, reject: Reject) -> None:
        await super().open(reject)
        self._format = self._new_format()  # a fresh CSV header for every run
        self.written = 0
        self._stream = self._open_stream()

    @abstractmethod
    def _open_stream(self) -> IO[bytes]: ...

    def bad(self, record: Record[Any], reason: str) -> None:
        """Route ``record`` to the errors file (called by the format)."""
        self._reject(BadInputError(reason, raw=describe(record.value)), record)

    def write(self, elements: list[StreamElement]) -> None:
        stream = self._stream
        if stream is None:
            msg = f"{self.name}: write() before open() or after close()"
            raise ClosedError(msg)
        data, count = self._format.render(self.bad, elements)
        if count:
            stream.write(data)
            self.written += count
            if self._flush:
                stream.flush()


@final
class _StdoutSink(TextSink):
    def _open_stream(self) -> IO[bytes]:
        stream = sys.stdout
        if stream is None:
            msg = "stdout sink: this process has no standard output"
            raise ConfigError(msg)
        self._flush = True  # a reader at the other end of a pipe sees each batch
        buffer: IO[bytes] | None = getattr(stream, "buffer", None)
        if buffer is None:
            # A text-only stdout (e.g. replaced by a test): only write and flush are used.
            return cast("IO[bytes]", _Encoding(stream))
        stream.flush()  # what was printed as text before goes first
        return buffer

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.flush()  # never closed: stdout is the process's


def stdout(
    format: str = "jsonl", *, delimiter: str = ",", columns: Iterable[str] | None = None
) -> Sink:
    """A sink writing to standard output as ``"jsonl"`` or ``"csv"``, flushed per batch.

    ``delimiter`` and ``columns`` are those of the CSV format, as for
    :func:`~asyncwait.sinks.csv`.

    Raises:
        ConfigError: an unknown ``format``, or a bad ``delimiter`` or ``columns``.

    >>> stdout().name
    '<stdout>'
    """
    if format == "jsonl":
        if columns is not None:
            msg = "stdout sink: columns is an option of format 'csv', not 'jsonl'"
            raise ConfigError(msg)
        return _StdoutSink("<stdout>", JsonlFormat)
    if format == "csv":
        check_delimiter(delimiter)
        format_of = functools.partial(CsvFormat, delimiter, check_columns(columns))
        return _StdoutSink("<stdout>", format_of)
    msg = f"stdout sink: format must be 'jsonl' or 'csv', got {format!r}"
    raise ConfigError(msg)


@final
class _Encoding:
    """A byte-stream face on a text stream that has no ``buffer``."""

    __slots__ = ("_text",)

    def __init__(self, text: IO[str]) -> None:
        self._text = text

    def write(self, data: bytes) -> int:
        return self._text.write(data.decode())

    def flush(self) -> None:
        self._text.flush()
