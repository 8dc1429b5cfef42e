"""The errors file: bad input elements, counted, sampled and written one JSON object a line.

Each entry has at least ``source`` (where the element came from: a path, ``<stdin>``,
``collection``), ``line`` (1-based, or ``null`` when unknown), ``raw`` (the raw text, or the
element's value as JSON once it was parsed) and ``reason``; an element rejected by a later
step also names that step in ``operator``.

Without checkpoints the file is written as entries come, through the file sink's buffer,
flushed when the job ends, fails or stops: at least once. With checkpoints it is a
transactional file sink like the outputs (part files committed by checkpoints), so an
entry is in the errors file exactly when the checkpoint after it commits::

    stage reports an entry ── the stage has not passed barrier n yet ─► part of checkpoint n
                          └─ it has (n is under way) ───────────────► held in memory
    every stage passed n ─► seal(n): pre-commit the part (n's entries), then write the
                            held entries into the next part ─► checkpoint n written
                            ─► commit(n): the part is appended to the errors file

A crash before checkpoint n commits loses none of its entries: the restored run replays the
elements they came from (input after the source's saved position, inputs the operators
saved) and reports them again, once, with their source lines.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, final

from .._rejects import as_event, describe, failure_reason
from ..elements import Record, StreamElement
from ..errors import BadInputError, ConfigError
from ..sinks import Sink
from ..sinks._files import errors_file
from .steps import Rejected

__all__ = ("ErrorLog",)

_SAMPLES: Final = 10  # entries kept in memory for JobResult.error_samples


def _refuse(error: BadInputError, record: Record[Any] | None = None, /) -> None:
    raise error  # an entry the errors file cannot write (it holds only text and numbers)


@final
class ErrorLog:
    """Bad input elements of one job run.

    Args:
        job: the job's name, for the ``max_errors`` message.
        path: the errors file (created or truncated by :meth:`open` unless resuming), or
            ``None``.
        max_errors: more than this many bad elements fail the job (counting those a resumed
            checkpoint committed); ``None`` for no limit.
        on_overflow: called once with the error when ``max_errors`` is exceeded.
    """

    __slots__ = (
        "_held",
        "_job",
        "_on_overflow",
        "_sealing",
        "_sink",
        "_transactional",
        "_written",
        "_written_dead",
        "count",
        "dead_letters",
        "max_errors",
        "overflow",
        "path",
        "restored",
        "restored_dead",
        "samples",
        "sealed",
        "total",
        "total_dead",
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
        self._sink: Sink | None = None if path is None else errors_file(path)
        self._transactional = False
        self.count = 0  # bad elements this run (replayed ones included)
        self.dead_letters = 0  # events whose lookup failed, written this run (likewise)
        self.restored = 0  # entries the checkpoint resumed from had committed
        self.total = 0  # entries of the checkpoints sealed, earlier runs' included
        self._written = 0  # entries written to the file (or counted, without one) this run
        self._written_dead = 0  # of which dead letters
        self.restored_dead = 0  # dead letters the checkpoint resumed from had committed
        self.total_dead = 0  # dead letters of the checkpoints sealed, earlier runs' included
        self.samples: list[dict[str, Any]] = []
        self.overflow: BadInputError | None = None  # set once max_errors is exceeded
        # Entries not written yet: before open(), or of the checkpoint after the one under
        # way (from stages past its barrier) until that one is sealed.
        self._held: list[dict[str, Any]] | None = []
        self.sealed = 0  # the last checkpoint sealed; a stage past it reports the next one's
        self._sealing = False  # a pre-commit is under way: every entry waits

    def __repr__(self) -> str:
        return f"<ErrorLog {str(self.path)!r} count {self.count} sealed {self.sealed}>"

    def _identity(self) -> str | None:
        return None if self.path is None else os.path.abspath(self.path)

    def check_restore(self, state: Any, checkpoint: str) -> None:
        """Refuse to resume ``state`` (a checkpoint's) into another errors file.

        Raises:
            ConfigError: the checkpoint committed another errors file (or none), whose
                committed length says nothing about this one.
        """
        saved = None if state is None else state["path"]
        if saved != self._identity():
            msg = (
                f"job {self._job!r}: {checkpoint} was taken with errors file {saved!r}, "
                f"this job writes {self._identity()!r}; resuming would cut or mix them up. "
                "Use the same errors path, or start over with --fresh "
                "(StreamEnvironment(..., fresh=True))."
            )
            raise ConfigError(msg)

    async def open(self, *, transactional: bool, restored: Any = None) -> None:
        """Open the errors file; write what was reported before.

        Args:
            transactional: the job checkpoints: commit entries with its checkpoints.
            restored: the errors state of the checkpoint resumed from, ``None`` for a
                fresh start (the file is emptied: the run reports everything again).
        """
        self._transactional = transactional
        if restored is not None:
            self.restored = self.total = int(restored["entries"])
            self.restored_dead = self.total_dead = int(restored.get("dead_letters", 0))
        sink = self._sink
        if sink is not None:
            if transactional:
                sink.initialize_state(None if restored is None else restored["sink"])
            await sink.open(_refuse)
        held, self._held = self._held, None
        for entry in held or ():
            self._write(entry)

    def add(
        self,
        *,
        source: str,
        line: int | None,
        raw: str,
        reason: str,
        operator: str | None = None,
        epoch: int = 0,
    ) -> None:
        """Record one bad element; raise :class:`BadInputError` past ``max_errors``.

        ``epoch`` is the last checkpoint whose barrier the reporting stage had passed.
        """
        if self.overflow is not None:
            raise self.overflow
        self.count += 1
        entry: dict[str, Any] = {
            "kind": "bad_input",
            "source": source,
            "line": line,
            "raw": raw,
            "reason": reason,
        }
        if operator is not None:
            entry["operator"] = operator
        if len(self.samples) < _SAMPLES:
            self.samples.append(entry)
        self._enter(entry, epoch)
        limit = self.max_errors
        if limit is not None and self.restored + self.count > limit:
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

    def dead_letter(
        self,
        *,
        source: str,
        line: int | None,
        event: Any,
        reason: str,
        operator: str,
        attempts: int,
        epoch: int = 0,
    ) -> None:
        """Record an event whose lookup finally failed (``on_error = "dead_letter"``).

        Written like bad input (exactly once with checkpoints), as ``kind =
        "lookup_failed"`` with the ``event`` itself; not counted against ``max_errors``.
        """
        self.dead_letters += 1
        entry: dict[str, Any] = {
            "kind": "lookup_failed",
            "source": source,
            "line": line,
            "operator": operator,
            "reason": reason,
            "attempts": attempts,
            "event": event,
        }
        self._enter(entry, epoch)

    def route(self, rejected: Rejected, source: str, operator: str, epoch: int) -> None:
        """Write an async function's input set aside as bad input or as a dead letter."""
        error = rejected.error
        if rejected.kind == "lookup_failed":
            self.dead_letter(
                source=source,
                line=rejected.line,
                event=as_event(rejected.value),
                reason=failure_reason(error),
                operator=operator,
                attempts=rejected.attempts,
                epoch=epoch,
            )
            return
        assert isinstance(error, BadInputError)
        self.add(
            source=source,
            line=rejected.line if rejected.line is not None else error.line,
            raw=error.raw if error.raw is not None else describe(rejected.value),
            reason=str(error),
            operator=operator,
            epoch=epoch,
        )

    def _enter(self, entry: dict[str, Any], epoch: int) -> None:
        held = self._held
        if held is None and (self._sealing or epoch > self.sealed):
            held = self._held = []
        if held is not None:
            held.append(entry)
        else:
            self._write(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        self._written += 1
        if entry["kind"] == "lookup_failed":
            self._written_dead += 1
        sink = self._sink
        if sink is not None:
            batch: list[StreamElement] = [Record(entry)]
            sink.write(batch)

    async def seal(self, checkpoint_id: int) -> dict[str, Any]:
        """Pre-commit the entries of checkpoint ``checkpoint_id``; return the state to save.

        Called once every stage passed its barrier: the entries written so far are
        exactly those reported before it.
        """
        self._sealing = True
        try:
            state = None
            if self._sink is not None and self._transactional:
                state = await self._sink.pre_commit(checkpoint_id)
        finally:
            self._sealing = False
        self.sealed = checkpoint_id
        self.total = self.restored + self._written
        self.total_dead = self.restored_dead + self._written_dead
        saved = {
            "path": self._identity(),
            "sink": state,
            "entries": self.total,
            "dead_letters": self.total_dead,
        }
        held, self._held = self._held, None
        for entry in held or ():
            self._write(entry)  # the next checkpoint's, into the next part file
        return saved

    async def commit(self, checkpoint_id: int) -> None:
        """Append what :meth:`seal` prepared for ``checkpoint_id`` to the errors file."""
        if self._sink is not None and self._transactional:
            await self._sink.commit(checkpoint_id)

    async def close(self) -> None:
        """Flush and close the errors file; idempotent.

        With checkpoints, entries no checkpoint committed stay in the part file (the next
        run drops it and reports them again).
        """
        sink = self._sink
        if sink is not None:
            await sink.close()
