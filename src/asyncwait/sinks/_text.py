"""Text sinks: rendered batches written to a stream; standard output (private)."""

from __future__ import annotations

import functools
import sys
from abc import abstractmethod
from collections.abc import Callable
from typing import IO, Any, Final, final

from .._rejects import Reject, describe
from ..elements import Record, StreamElement
from ..errors import BadInputError, ClosedError, ConfigError
from ._base import Sink
from ._formats import CsvFormat, Format, JsonlFormat, check_delimiter

__all__ = ("BUFFER", "TextSink", "stdout")

BUFFER: Final = 1 << 20  # bytes of write buffer for file sinks


class TextSink(Sink):
    """Writes rendered batches to a text stream: a file it owns, or stdout."""

    def __init__(self, name: str, format: Callable[[], Format]) -> None:
        super().__init__(name)
        self._new_format = format
        self._format = format()
        self._stream: IO[str] | None = None
        self._flush = False  # flush after every batch (an interactive stream)
        self.written = 0  # records written since open

    async def open(self, reject: Reject) -> None:
        await super().open(reject)
        self._format = self._new_format()  # a fresh CSV header for every run
        self.written = 0
        self._stream = self._open_stream()

    @abstractmethod
    def _open_stream(self) -> IO[str]: ...

    def bad(self, record: Record[Any], reason: str) -> None:
        """Route ``record`` to the errors file (called by the format)."""
        self._reject(BadInputError(reason, raw=describe(record.value)), record)

    def write(self, elements: list[StreamElement]) -> None:
        stream = self._stream
        if stream is None:
            msg = f"{self.name}: write() before open() or after close()"
            raise ClosedError(msg)
        text, count = self._format.render(self.bad, elements)
        if count:
            stream.write(text)
            self.written += count
            if self._flush:
                stream.flush()


@final
class _StdoutSink(TextSink):
    def _open_stream(self) -> IO[str]:
        stream = sys.stdout
        if stream is None:
            msg = "stdout sink: this process has no standard output"
            raise ConfigError(msg)
        self._flush = True  # a reader at the other end of a pipe sees each batch
        return stream

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.flush()  # never closed: stdout is the process's


def stdout(format: str = "jsonl", *, delimiter: str = ",") -> Sink:
    """A sink writing to standard output as ``"jsonl"`` or ``"csv"``, flushed per batch.

    Raises:
        ConfigError: an unknown ``format``.

    >>> stdout().name
    '<stdout>'
    """
    if format == "jsonl":
        return _StdoutSink("<stdout>", JsonlFormat)
    if format == "csv":
        check_delimiter(delimiter)
        return _StdoutSink("<stdout>", functools.partial(CsvFormat, delimiter))
    msg = f"stdout sink: format must be 'jsonl' or 'csv', got {format!r}"
    raise ConfigError(msg)
