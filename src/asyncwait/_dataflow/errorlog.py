"""The errors file: bad input elements, counted, sampled and written one JSON object a line.

Each entry has at least ``source`` (where the element came from: a path, ``<stdin>``,
``collection``), ``line`` (1-based, or ``null`` when unknown), ``raw`` (the raw text, or the
element's value as JSON once it was parsed) and ``reason``; an element rejected by a later
step also names that step in ``operator``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final, final

from .._codec import dumps
from ..errors import BadInputError

__all__ = ("ErrorLog",)

_SAMPLES: Final = 10  # entries kept in memory for JobResult.error_samples


@final
class ErrorLog:
    """Bad input elements of one job run.

    Args:
        job: the job's name, for the ``max_errors`` message.
        path: the errors file (created or truncated by :meth:`open`), or ``None``.
        max_errors: more than this many bad elements fail the job; ``None`` for no limit.
        on_overflow: called once with the error when ``max_errors`` is exceeded.
    """

    __slots__ = (
        "_file",
        "_job",
        "_on_overflow",
        "count",
        "max_errors",
        "overflow",
        "path",
        "samples",
    )

    def __init__(
        self,
        job: str,
        path: Path | None,
        max_errors: int | None,
        on_overflow: Callable[[BadInputError], None],
    ) -> None:
        self._job = job
        self.path = path
        self.max_errors = max_errors
        self._on_overflow = on_overflow
        self._file: IO[str] | None = None
        self.count = 0
        self.samples: list[dict[str, Any]] = []
        self.overflow: BadInputError | None = None  # set once max_errors is exceeded

    def open(self, *, append: bool = False) -> None:
        """Create (or truncate) the errors file; ``append``: go on after an earlier run's."""
        if self.path is not None:
            mode = "a" if append else "w"
            self._file = open(self.path, mode, encoding="utf-8", buffering=1 << 16)  # noqa: SIM115 - closed by close()

    def add(
        self,
        *,
        source: str,
        line: int | None,
        raw: str,
        reason: str,
        operator: str | None = None,
    ) -> None:
        """Record one bad element; raise :class:`BadInputError` past ``max_errors``."""
        if self.overflow is not None:
            raise self.overflow
        self.count += 1
        entry: dict[str, Any] = {"source": source, "line": line, "raw": raw, "reason": reason}
        if operator is not None:
            entry["operator"] = operator
        if len(self.samples) < _SAMPLES:
            self.samples.append(entry)
        if self._file is not None:
            self._file.write(dumps(entry).decode() + "\n")
        limit = self.max_errors
        if limit is not None and self.count > limit:
            where = f"see {self.path}" if self.path is not None else "no errors file was set"
            at = f"{source}:{line}" if line is not None else source
            msg = (
                f"job {self._job!r}: more than {limit} bad input "
                f"{'element' if limit == 1 else 'elements'}; {where} "
                f"(the last one, from {at}: {reason})"
            )
            self.overflow = BadInputError(msg, source=source, line=line, raw=raw)
            self._on_overflow(self.overflow)
            raise self.overflow

    def close(self) -> None:
        """Flush and close the errors file; idempotent."""
        file, self._file = self._file, None
        if file is not None:
            file.close()
