"""The source contract, and records that remember where they were read (private)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .._paths import PathUse
from .._rejects import Reject
from ..elements import Record, StreamElement
from ..errors import BadInputError

__all__ = ("Source", "SourcedRecord", "plain", "reject_nothing")

T = TypeVar("T")


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class SourcedRecord(Record[T]):
    """A record read from a source, with the line it came from (private to the runtime).

    Compares, hashes and prints like a plain :class:`Record`; the line only feeds error
    messages and the errors file.
    """

    line: int | None = None

    def __init__(self, value: T, timestamp: int | None = None, line: int | None = None) -> None:
        # As Record.__init__: the slots set directly (a SourcedRecord is built per line read).
        _set_value(self, value)
        _set_timestamp(self, timestamp)
        _set_line(self, line)

    def __repr__(self) -> str:
        return f"Record(value={self.value!r}, timestamp={self.timestamp!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self.value == other.value and self.timestamp == other.timestamp
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.value, self.timestamp))


_set_value = Record.__dict__["value"].__set__
_set_timestamp = Record.__dict__["timestamp"].__set__
_set_line = SourcedRecord.__dict__["line"].__set__


def plain(record: Record[Any]) -> Record[Any]:
    """``record`` as a plain :class:`Record` (what users see in errors and results)."""
    if type(record) is Record:
        return record
    return Record(record.value, record.timestamp)


def reject_nothing(error: BadInputError, record: Record[Any] | None = None, /) -> None:
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
        yields_lines: True for asyncwait's own sources, whose ``read()`` returns records
            that carry their line; a custom source leaves it False and the runtime wraps
            its records.
    """

    yields_lines: ClassVar[bool] = False

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

    def paths(self) -> tuple[PathUse, ...]:
        """The files this source reads (none by default), for the job's checks before it runs.

        The job refuses to start when an output (a sink, the errors file, the checkpoint
        folder) is one of them. A source reading files should list them; it must not open
        them here.
        """
        return ()

    # Checkpointing: where to resume, and whether the input is still the one read.

    def position(self) -> dict[str, Any]:
        """Where the source is, for a checkpoint taken now (picklable).

        Holds ``offset`` and ``line``, which a resumed run passes to ``open`` as
        ``start_offset`` and ``start_line - 1``, plus whatever lets :meth:`check_position`
        tell the input apart from another (a file source: the file's identity and a
        fingerprint of the bytes before the offset). The default: :attr:`offset` and
        :attr:`line`.
        """
        return {"offset": self.offset, "line": self.line}

    def check_position(self, saved: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Refuse to resume from ``saved`` (a :meth:`position`) when the input is another.

        Called on resume, before ``open`` with ``saved``'s offset and line.

        Raises:
            ConfigError: the input is not the one ``saved`` was taken on (replaced,
                truncated, rewritten), naming it and saying to start over with ``--fresh``.
                The default checks nothing.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} line {self.line} offset {self.offset}>"


# --------------------------------------------------------------------------- line sources
