"""The command line's log lines on stderr: human (``warning: ...``) or JSON, one per line.

The library logs lifecycle events once each on the ``asyncwait`` loggers (job started and
ended, checkpoint completed and restored, stop requested, circuit breaker opened and
closed, a join matching nothing) and never per element. Their records carry ``event``,
``job``, ``operator`` and ``fields`` as extras where they apply. While a command runs,
:func:`library_logs` prints those records at ``--log-level`` and above:

* ``human``: ``warning: message`` (the level in lower case), as before;
* ``json``: one object per line: ``time`` (UTC, ISO 8601), ``level``, ``job``,
  ``operator``, ``event``, ``message``, ``fields``, ``logger``.

The records do not go on to the root logger meanwhile: one line each, no
``WARNING:asyncwait...`` duplicate from a handler configured elsewhere. The command's own
errors and warnings (:func:`say`) use the same format.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ("LEVELS", "LogFormat", "json_logs", "library_logs", "name_job", "say")

LEVELS: Final = ("debug", "info", "warning", "error")


class LogFormat(enum.Enum):
    """How log lines look on stderr."""

    HUMAN = "human"  # `level: message`, for people
    JSON = "json"  # one JSON object per line, for log collectors


class _Lines(logging.Handler):
    """Prints each record as one line on stderr (``sys.stderr`` as it is at that moment)."""

    def __init__(self, fmt: LogFormat, level: int) -> None:
        super().__init__(level)
        self.format_ = fmt
        self.job: str | None = None  # set once the job file names it

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # sys.stderr as it is now: a live display redirects it above the table.
            print(self.line(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)

    def line(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if self.format_ is LogFormat.HUMAN:
            return f"{record.levelname.lower()}: {message}"
        fields = getattr(record, "fields", None)
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "job": getattr(record, "job", None) or self.job,
            "operator": getattr(record, "operator", None),
            "event": getattr(record, "event", None) or "log",
            "message": message,
            "fields": dict(fields) if isinstance(fields, Mapping) else {},
            "logger": record.name,
        }
        return json.dumps(entry, default=str, separators=(",", ":"))


_active: list[_Lines] = []  # the handler of the command running (one per process)


@contextlib.contextmanager
def library_logs(fmt: LogFormat = LogFormat.HUMAN, level: str = "warning") -> Iterator[None]:
    """Print the ``asyncwait`` loggers' records at ``level`` and above, as ``fmt``."""
    logger = logging.getLogger("asyncwait")
    handler = _Lines(fmt, getattr(logging, level.upper()))
    saved = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False
    # The logger's own level must let the records through (NOTSET defers to the root's,
    # WARNING by default).
    logger.setLevel(min(handler.level, logger.getEffectiveLevel()))
    _active.append(handler)
    try:
        yield
    finally:
        _active.remove(handler)
        logger.removeHandler(handler)
        logger.propagate, _ = saved
        logger.setLevel(saved[1])


def name_job(job: str) -> None:
    """The job the next lines are about (the ``job`` of JSON lines without one)."""
    for handler in _active:
        handler.job = job


def json_logs() -> bool:
    """Whether the running command writes JSON log lines."""
    return any(handler.format_ is LogFormat.JSON for handler in _active)


def say(level: str, message: str, *, event: str, fields: Mapping[str, Any] | None = None) -> None:
    """Print one line of the command's own (``error: ...``), in the command's log format.

    Shown whatever ``--log-level`` says: the command's errors and warnings are its output.
    """
    record = logging.LogRecord(
        "asyncwait.cli", getattr(logging, level.upper()), "", 0, message, None, None
    )
    record.event = event
    record.fields = dict(fields or {})
    handler = _active[-1] if _active else _Lines(LogFormat.HUMAN, logging.DEBUG)
    print(handler.line(record), file=sys.stderr, flush=True)
