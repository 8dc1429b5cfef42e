"""File sinks: JSONL and CSV files, transactional with checkpoints (private)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, final

from .._faults import crash_point
from .._paths import Access, PathUse
from ..errors import ClosedError, ConfigError
from ._base import Sink
from ._formats import CsvFormat, Format, JsonlFormat, check_columns, check_delimiter
from ._text import BUFFER, TextSink

__all__ = ("csv", "errors_file", "jsonl")


@final
class _FileSink(TextSink):
    """A file sink; transactional (part files, committed by checkpoints) when checkpointing."""

    def __init__(
        self, path: Path, format: Callable[[], Format], *, commit_point: str = "commit"
    ) -> None:
        super().__init__(str(path), format)
        self.path = path
        self._commit_point = commit_point  # the crash point inside a commit (tests)
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

    def _open_stream(self) -> IO[bytes]:
        if not self._transactional:
            return open(self.path, "wb", buffering=BUFFER)
        self._recover()
        return self._next_part()

    def _next_part(self) -> IO[bytes]:
        self._part_seq += 1
        self._part = self._part_path(self._part_seq)
        return open(self._part, "wb", buffering=BUFFER)

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
                _copy(src, out, crash=self._commit_point)
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

    def paths(self) -> tuple[PathUse, ...]:
        return (PathUse(f"sink {self.name!r}", self.path, Access.WRITE),)

    def __repr__(self) -> str:
        return f"<FileSink {self.name!r} written {self.written}>"


def _copy(src: IO[bytes], out: IO[bytes], *, crash: str = "") -> None:
    """Copy ``src`` to ``out`` from their positions, in large blocks.

    ``crash`` names the crash point after the first block (tests kill the process there).
    """
    first = True
    while block := src.read(BUFFER):
        out.write(block)
        if crash and first:
            out.flush()
            crash_point(crash)
            first = False


def jsonl(path: str | os.PathLike[str]) -> Sink:
    """A sink writing each record's value as one line of JSON to the file at ``path``.

    The file is created (or truncated) when the job starts and written in stream order
    through a large buffer, flushed at the end. A value JSON cannot represent (a datetime, a
    set, NaN) is bad input, routed to the errors file.

    >>> jsonl("out.jsonl").name
    'out.jsonl'
    """
    return _FileSink(Path(path), JsonlFormat)


def errors_file(path: Path) -> Sink:
    """The job's errors file: JSONL, written and committed like :func:`jsonl` (private).

    Its commit has the crash point ``errors-commit`` (``commit`` is the output sinks').
    """
    return _FileSink(path, JsonlFormat, commit_point="errors-commit")


def csv(
    path: str | os.PathLike[str],
    *,
    delimiter: str = ",",
    columns: Iterable[str] | None = None,
) -> Sink:
    """A sink writing dict records as CSV rows to the file at ``path``, with a header.

    The header is the first record's keys, in order, followed by each of ``columns`` the
    first record lacks: declare there the fields that only some records carry (the
    columns a left join adds to the events that found a row; the job file declares a
    lookup's ``columns``). A later record lacking a header field gets an empty cell; one
    with a field outside the header, or a value that is not a dict, is bad input naming
    the field, routed to the errors file. ``None`` is written as an empty field, other
    values with ``str``. With checkpoints, a resumed run keeps the header.

    Raises:
        ConfigError: ``delimiter`` is not one character, or ``columns`` is not a list of
            distinct names.

    >>> csv("out.csv", columns=["age"]).name
    'out.csv'
    """
    check_delimiter(delimiter)
    return _FileSink(Path(path), functools.partial(CsvFormat, delimiter, check_columns(columns)))
