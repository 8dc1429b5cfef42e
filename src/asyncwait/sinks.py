"""Sinks: where a job's records end up (JSONL and CSV files, stdout, an in-memory list).

A sink receives batches of elements (:meth:`Sink.write`), in stream order; watermarks come
along so that a sink can see event-time progress, and the file sinks ignore them. Writing
uses large buffered file I/O, flushed when the job ends (or fails) and closes the sink.

With checkpointing on, the file sinks are *transactional*: what they receive between two
checkpoints goes to a hidden part file next to the output (``.out.jsonl.part-000004``) and is
appended to the output only when the checkpoint completes; a job resuming from a checkpoint
first puts the output back to exactly what that checkpoint committed. So the output file
only ever holds committed records, each once. ``stdout`` and ``collect`` cannot take back
what they wrote: with checkpoints their output is at-least-once.

A value a sink cannot write is *bad input*, not a failure: a value JSON cannot represent (a
``datetime``, a ``set``, ``NaN``...), or for CSV a value that is not a dict or whose keys
differ from the header. The sink routes it to the job's errors file, naming the element,
and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv as _csv
import functools
import json
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import IO, Any, Final, final

from ._checkpoints import crash_point
from ._rejects import Reject, describe
from .elements import Record, StreamElement, Watermark
from .errors import BadInputError, ClosedError, ConfigError

__all__ = ("CollectSink", "Reject", "Sink", "collect", "csv", "jsonl", "stdout")

_BUFFER: Final = 1 << 20  # bytes of write buffer for file sinks


def _reject_nothing(error: BadInputError, record: Record[Any] | None = None, /) -> None:
    raise error  # a sink used outside a job: bad input is an ordinary error


class Sink(ABC):
    """Where a job's records go: subclass it to write anywhere.

    The job calls :meth:`open` once before the first element, :meth:`write` with each batch
    in stream order (never again before the previous write finished), then :meth:`close`,
    also when the job fails. ``write`` may return an awaitable: the job awaits it before the
    next batch, so a slow sink back-pressures the whole job up to its source.

    Attributes:
        name: names the sink in messages and in the errors file.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._reject: Reject = _reject_nothing

    async def open(self, reject: Reject) -> None:
        """Prepare to write; ``reject(error, record)`` routes one bad element aside.

        ``reject`` raises once the job has seen more than ``max_errors`` bad elements; let
        that error propagate.
        """
        self._reject = reject

    @abstractmethod
    def write(self, elements: list[StreamElement]) -> Awaitable[None] | None:
        """Write a batch of records (watermarks included, in order); maybe return an awaitable."""

    async def close(self) -> None:  # noqa: B027 - optional hook; the default has nothing to release
        """Flush and release everything; idempotent."""

    def result(self) -> Any:
        """What the job's result reports for this sink (``None`` by default)."""
        return None

    # Checkpointing: a two-phase commit, as Flink's TwoPhaseCommitSinkFunction. The
    # defaults keep nothing, so a sink that does not override them is at-least-once.

    def initialize_state(self, state: Any | None) -> None:  # noqa: B027 - optional hook
        """Called before :meth:`open` when the job takes checkpoints.

        Args:
            state: what :meth:`pre_commit` returned for the checkpoint the job resumes
                from; ``None`` when the job starts from the beginning.
        """

    async def pre_commit(self, checkpoint_id: int) -> Any:
        """Make everything written so far durable, but not yet visible; return the state.

        Called when checkpoint ``checkpoint_id``'s barrier reaches the sink: what was written
        before belongs to that checkpoint. The returned value (picklable) is saved in the
        checkpoint and handed to :meth:`initialize_state` on restore.
        """
        return None

    async def commit(self, checkpoint_id: int) -> None:  # noqa: B027 - optional hook
        """Make what :meth:`pre_commit` of ``checkpoint_id`` prepared visible.

        Called once the checkpoint is saved. It may run again for the same data after a
        crash (through ``initialize_state``), so it must be idempotent there.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# --------------------------------------------------------------------------- formats


class _Format(ABC):
    """Turns a batch of records into text for a stream; a fresh one per job run."""

    @abstractmethod
    def render(self, sink: _TextSink, elements: list[StreamElement]) -> tuple[str, int]:
        """The text for the records of ``elements`` and how many records it holds."""

    def state(self) -> Any:
        """What a resumed run needs to go on writing the same file (e.g. the CSV header)."""
        return None

    def restore(self, state: Any) -> None:  # noqa: B027 - optional hook
        """Go on from :meth:`state` of an earlier run."""


def _not_json(value: object) -> Any:
    msg = f"Object of type {type(value).__name__} is not JSON serializable"
    raise TypeError(msg)


def _json_encoder() -> Callable[[Any, int], Iterable[str]]:
    """A compact JSON encoder: ``encode(value, 0)`` returns the text in parts (join them).

    The C encoder, built once, instead of ``json.dumps``, which rebuilds it for every value.
    ``allow_nan=False``: NaN and Infinity are not JSON, other readers would choke on them.
    Circular values end in RecursionError instead of being tracked.
    """
    if c_make_encoder is not None:
        encode: Callable[[Any, int], Iterable[str]] = c_make_encoder(
            None, _not_json, encode_basestring, None, ":", ",", False, False, False
        )
        return encode
    encoder = json.JSONEncoder(  # pragma: no cover - CPython always has the C encoder
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_not_json
    )
    return lambda value, _level: (encoder.encode(value),)  # pragma: no cover - as above


@final
class _Jsonl(_Format):
    def __init__(self) -> None:
        self._encode = _json_encoder()

    def render(self, sink: _TextSink, elements: list[StreamElement]) -> tuple[str, int]:
        encode = self._encode
        join = "".join
        parts: list[str] = []
        append = parts.append
        records: list[Any] = elements
        for element in records:
            if type(element) is Watermark:
                continue
            try:
                append(join(encode(element.value, 0)))
            except (TypeError, ValueError, RecursionError) as exc:
                sink.bad(element, f"cannot write it as JSON: {exc}")
                continue
        count = len(parts)
        parts.append("")  # a final newline
        return "\n".join(parts), count


@final
class _Csv(_Format):
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

    def render(self, sink: _TextSink, elements: list[StreamElement]) -> tuple[str, int]:
        rows: list[list[Any]] = []
        count = 0
        for element in elements:
            if type(element) is Watermark:
                continue
            assert isinstance(element, Record)  # a stream holds records and watermarks
            value = element.value
            if not isinstance(value, dict):
                sink.bad(element, f"a CSV row must be a dict, got {type(value).__name__}")
                continue
            header = self._header
            if header is None:
                header = self._header = tuple(map(str, value))
                self._keys = frozenset(value)
                rows.append(list(header))
            elif value.keys() != self._keys:
                sink.bad(element, f"its keys differ from the CSV header {list(header)}")
                continue
            rows.append([value[key] for key in header])
            count += 1
        if not rows:
            return "", 0
        out = _StringSink()
        _csv.writer(out, delimiter=self._delimiter, lineterminator="\n").writerows(rows)
        return "".join(out.parts), count


@final
class _StringSink:
    """A ``write``-able list of strings (faster than io.StringIO for one batch)."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


# --------------------------------------------------------------------------- text sinks


class _TextSink(Sink):
    """Writes rendered batches to a text stream: a file it owns, or stdout."""

    def __init__(self, name: str, format: Callable[[], _Format]) -> None:
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
        text, count = self._format.render(self, elements)
        if count:
            stream.write(text)
            self.written += count
            if self._flush:
                stream.flush()


@final
class _FileSink(_TextSink):
    """A file sink; transactional (part files, committed by checkpoints) when checkpointing."""

    def __init__(self, path: Path, format: Callable[[], _Format]) -> None:
        super().__init__(str(path), format)
        self.path = path
        self._transactional = False
        self._restored: dict[str, Any] | None = None
        self._committed = 0  # bytes of the output file that checkpoints committed
        self._part_seq = 0
        self._part: Path | None = None  # the part file written now
        # Prepared and not yet committed: checkpoint id -> (part file, base, bytes).
        self._pending: dict[int, tuple[Path, int, int]] = {}

    def initialize_state(self, state: Any | None) -> None:
        self._transactional = True
        self._restored = state
        self._pending = {}

    def _part_path(self, seq: int) -> Path:
        return self.path.with_name(f".{self.path.name}.part-{seq:06d}")

    def _stale_parts(self) -> list[Path]:
        prefix = f".{self.path.name}.part-"
        folder = self.path.parent
        try:
            return [folder / n for n in os.listdir(folder) if n.startswith(prefix)]
        except FileNotFoundError:
            return []

    def _open_stream(self) -> IO[str]:
        if not self._transactional:
            return open(self.path, "w", encoding="utf-8", newline="", buffering=_BUFFER)
        self._recover()
        return self._next_part()

    def _next_part(self) -> IO[str]:
        self._part_seq += 1
        self._part = self._part_path(self._part_seq)
        return open(self._part, "w", encoding="utf-8", newline="", buffering=_BUFFER)

    def _recover(self) -> None:
        """Put the output back to what the restored checkpoint committed (blocking)."""
        state, path = self._restored, self.path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if state is None:
            committed = 0
            with open(path, "wb"):
                pass  # a fresh start: an empty output
        else:
            base, committed = int(state["base"]), int(state["length"])
            part = path.with_name(state["part"])
            if size < committed:
                # The commit was cut short: redo it from the part file, kept until it ends.
                part_size = part.stat().st_size if part.exists() else -1
                if part_size != committed - base or size < base:
                    msg = (
                        f"{self.name}: cannot restore the output of the checkpoint: the file "
                        f"has {size} bytes, the checkpoint committed {committed}, and its part "
                        f"file {str(part)!r} is {'missing' if part_size < 0 else 'incomplete'} "
                        f"(or the output lost bytes before {base})"
                    )
                    raise ConfigError(msg)
                with open(path, "r+b") as out, open(part, "rb") as src:
                    out.truncate(base)
                    out.seek(base)
                    _copy(src, out)
            with open(path, "r+b") as out:
                out.truncate(committed)  # drops output no checkpoint committed
                os.fsync(out.fileno())
            self._part_seq = int(state["seq"])
            self._format.restore(state["format"])
        for stale in self._stale_parts():
            stale.unlink(missing_ok=True)
        self._committed = committed

    async def pre_commit(self, checkpoint_id: int) -> Any:
        if not self._transactional:
            return None
        stream, part = self._stream, self._part
        if stream is None or part is None:
            msg = f"{self.name}: pre_commit() before open() or after close()"
            raise ClosedError(msg)
        stream.flush()
        fd = stream.fileno()
        size = os.fstat(fd).st_size
        await asyncio.to_thread(os.fsync, fd)
        stream.close()
        self._stream = self._next_part()
        base = self._committed + sum(n for _, _, n in self._pending.values())
        self._pending[checkpoint_id] = (part, base, size)
        return {
            "base": base,
            "length": base + size,
            "part": part.name,
            "seq": self._part_seq,
            "format": self._format.state(),
        }

    async def commit(self, checkpoint_id: int) -> None:
        # Parts are appended in order: one prepared for an earlier checkpoint that never
        # completed goes first (its bytes are counted in the bases of the later ones).
        for ready in sorted(n for n in self._pending if n <= checkpoint_id):
            await asyncio.to_thread(self._append, *self._pending.pop(ready))

    def _append(self, part: Path, base: int, size: int) -> None:
        if size:
            with open(self.path, "r+b") as out, open(part, "rb") as src:
                out.truncate(base)
                out.seek(base)
                _copy(src, out, crash=True)
                os.fsync(out.fileno())
        part.unlink(missing_ok=True)
        self._committed = base + size

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        part, self._part = self._part, None
        if part is not None and self._transactional:
            with contextlib.suppress(OSError):
                if part.stat().st_size == 0:
                    part.unlink()  # nothing uncommitted: leave no empty part behind

    def __repr__(self) -> str:
        return f"<FileSink {self.name!r} written {self.written}>"


def _copy(src: IO[bytes], out: IO[bytes], *, crash: bool = False) -> None:
    """Copy ``src`` to ``out`` from their positions, in large blocks."""
    first = True
    while block := src.read(_BUFFER):
        out.write(block)
        if crash and first:
            out.flush()
            crash_point("commit")
            first = False


@final
class _StdoutSink(_TextSink):
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


def jsonl(path: str | os.PathLike[str]) -> Sink:
    """A sink writing each record's value as one line of JSON to the file at ``path``.

    The file is created (or truncated) when the job starts and written in stream order
    through a large buffer, flushed at the end. A value JSON cannot represent (a datetime, a
    set, NaN) is bad input, routed to the errors file.

    >>> jsonl("out.jsonl").name
    'out.jsonl'
    """
    return _FileSink(Path(path), _Jsonl)


def csv(path: str | os.PathLike[str], *, delimiter: str = ",") -> Sink:
    """A sink writing dict records as CSV rows to the file at ``path``, with a header.

    The header is the first record's keys, in order; a later record with other keys, or a
    value that is not a dict, is bad input, routed to the errors file. ``None`` is written
    as an empty field, other values with ``str``.

    >>> csv("out.csv").name
    'out.csv'
    """
    _check_delimiter(delimiter)
    return _FileSink(Path(path), functools.partial(_Csv, delimiter))


def stdout(format: str = "jsonl", *, delimiter: str = ",") -> Sink:
    """A sink writing to standard output as ``"jsonl"`` or ``"csv"``, flushed per batch.

    Raises:
        ConfigError: an unknown ``format``.

    >>> stdout().name
    '<stdout>'
    """
    if format == "jsonl":
        return _StdoutSink("<stdout>", _Jsonl)
    if format == "csv":
        _check_delimiter(delimiter)
        return _StdoutSink("<stdout>", functools.partial(_Csv, delimiter))
    msg = f"stdout sink: format must be 'jsonl' or 'csv', got {format!r}"
    raise ConfigError(msg)


def _check_delimiter(delimiter: str) -> None:
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        msg = f"csv sink: delimiter must be one character, got {delimiter!r}"
        raise ConfigError(msg)


# --------------------------------------------------------------------------- collect


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
