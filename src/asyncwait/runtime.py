"""The dataflow runtime: a source, chained steps, async operators and a sink, run on one loop.

Build a job on a :class:`StreamEnvironment`, then run it::

    env = StreamEnvironment(errors_path="errors.jsonl", max_errors=1000)
    (env.from_source(sources.jsonl("events.jsonl"))
        .map(parse)
        .lookup_join(lookups.sqlite("dim.db", table="dim_user", key="user_id"), on="userID")
        .sink_to(sinks.jsonl("out.jsonl")))
    result = env.execute()

How it runs (one asyncio loop, one task per stage, like Flink's chained tasks)::

    source ─► [map ─ filter ─ timestamps ─► async op] ─► [map ─► async op] ─► [map ─► sink]
           channel                         channel                  channel

Consecutive stateless steps are chained into the stage of the next async operator (or of
the sink). Stages are connected by bounded channels that carry batches of up to
``buffer_size`` elements, so a slow sink or a full operator back-pressures everything up
to the source, which never reads more than a few batches ahead. Records and watermarks
flow in order through every stage; each async operator applies its own ordering
(:class:`~asyncwait.OutputMode`).

Errors: a :class:`~asyncwait.BadInputError` (a malformed line, a missing join key, a value
a sink cannot write) routes that element to the errors file and the job goes on, up to
``max_errors``. Any other exception fails the job: every stage is cancelled, every
operator, source and sink is closed, and the failure is raised from ``execute``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import AsyncIterable, Iterable
from pathlib import Path
from typing import Any, final

from ._checkpoint.store import CheckpointConfig
from ._dataflow.files import guarded_outputs
from ._dataflow.job import Job
from ._dataflow.plan import JobPlan
from ._dataflow.results import JobProgress as JobProgress
from ._dataflow.results import JobResult as JobResult
from ._dataflow.results import JobTotals as JobTotals
from ._dataflow.results import OperatorSummary as OperatorSummary
from ._dataflow.stream import DataStream as DataStream
from .errors import AsyncWaitError, ConfigError
from .sources import Source, collection

__all__ = (
    "DataStream",
    "JobProgress",
    "JobResult",
    "JobTotals",
    "OperatorSummary",
    "StreamEnvironment",
)


_log = logging.getLogger("asyncwait.job")


def _event(event: str, job: str, **fields: object) -> dict[str, object]:
    """A lifecycle log record's extras (see ``docs/observability.md``)."""
    return {"event": event, "job": job, "fields": fields}


def _path_or_none(what: str, value: object) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        msg = f"StreamEnvironment: {what} must be a path or None, got {value!r}"
        raise ConfigError(msg)
    return Path(value)


@final
class StreamEnvironment:
    """Builds and runs one dataflow job on an asyncio event loop.

    Args:
        checkpoint_interval: seconds between checkpoints (> 0), or ``None``. Checkpointing
            is on when this or ``checkpoint_dir`` is set: the job then resumes from its
            latest checkpoint, its file sinks commit output only with checkpoints, and it
            takes a last checkpoint when stopped (:meth:`stop`) and when it ends. See
            ``docs/fault-tolerance.md``.
        checkpoint_dir: where checkpoints go (a folder per job name below it); default
            ``.asyncwait/checkpoints`` when only ``checkpoint_interval`` is given.
        name: the job's name, in messages and results.
        errors_path: the errors file (JSONL, one bad element per line: ``source``,
            ``line``, ``raw``, ``reason``, ``operator`` for later steps), created when the job
            starts; ``None`` only counts them (the first few are in ``JobResult``). With
            checkpointing it is committed with the checkpoints, exactly once.
        max_errors: more than this many bad elements fail the job (with checkpointing,
            counting those the runs it resumes committed); ``None``: no limit.
        buffer_size: elements per batch between stages (each channel holds about that
            many); bounds how far the source reads ahead of a slow sink.
        checkpoints_kept: how many complete checkpoints to keep (>= 1).
        fresh: ignore the job's existing checkpoints (they are deleted) and start over.

    Raises:
        ConfigError: a bad option.

    >>> from asyncwait import sinks
    >>> env = StreamEnvironment(name="double")
    >>> out = env.from_collection([1, 2, 3]).map(lambda v: v * 2).sink_to(sinks.collect())
    >>> env.execute().events_out, out.values
    (3, [2, 4, 6])
    """

    def __init__(
        self,
        checkpoint_interval: float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        *,
        name: str = "job",
        errors_path: str | os.PathLike[str] | None = None,
        max_errors: int | None = None,
        buffer_size: int = 1024,
        checkpoints_kept: int = 3,
        fresh: bool = False,
    ) -> None:
        if checkpoint_interval is not None and (
            isinstance(checkpoint_interval, bool)
            or not isinstance(checkpoint_interval, int | float)
            or not math.isfinite(checkpoint_interval)
            or checkpoint_interval <= 0
        ):
            msg = (
                "StreamEnvironment: checkpoint_interval must be a number of seconds > 0 or "
                f"None, got {checkpoint_interval!r}"
            )
            raise ConfigError(msg)
        if not isinstance(name, str) or not name:
            msg = f"StreamEnvironment: name must be a non-empty str, got {name!r}"
            raise ConfigError(msg)
        if max_errors is not None and (
            isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 0
        ):
            msg = f"StreamEnvironment: max_errors must be an int >= 0 or None, got {max_errors!r}"
            raise ConfigError(msg)
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            msg = f"StreamEnvironment: buffer_size must be an int >= 1, got {buffer_size!r}"
            raise ConfigError(msg)
        if (
            isinstance(checkpoints_kept, bool)
            or not isinstance(checkpoints_kept, int)
            or checkpoints_kept < 1
        ):
            msg = (
                f"StreamEnvironment: checkpoints_kept must be an int >= 1, got {checkpoints_kept!r}"
            )
            raise ConfigError(msg)
        if not isinstance(fresh, bool):
            msg = f"StreamEnvironment: fresh must be True or False, got {fresh!r}"
            raise ConfigError(msg)
        self.checkpoint_interval = (
            None if checkpoint_interval is None else float(checkpoint_interval)
        )
        self.checkpoint_dir = _path_or_none("checkpoint_dir", checkpoint_dir)
        if self.checkpoint_dir is None and self.checkpoint_interval is not None:
            self.checkpoint_dir = Path(".asyncwait/checkpoints")
        self.checkpoints_kept = checkpoints_kept
        self.fresh = fresh
        self.name = name
        self.errors_path = _path_or_none("errors_path", errors_path)
        self.max_errors = max_errors
        self.buffer_size = buffer_size
        self._plan = JobPlan()
        self._job: Job | None = None

    def __repr__(self) -> str:
        state = "running" if self._job is not None and self._job.running else "idle"
        return f"<StreamEnvironment {self.name!r} {state} streams {len(self._plan.pipelines)}>"

    def from_source(self, source: Source) -> DataStream[Any]:
        """Start a stream reading ``source`` (see :mod:`asyncwait.sources`)."""
        if not isinstance(source, Source):
            msg = f"from_source() needs a Source (asyncwait.sources), got {source!r}"
            raise TypeError(msg)
        return DataStream(self._plan, self._plan.add(source))

    def from_collection(
        self, values: Iterable[Any] | AsyncIterable[Any], *, name: str = "collection"
    ) -> DataStream[Any]:
        """Start a stream of ``values`` (plain values, or Records and Watermarks), in order.

        An async iterable may await between values; each value flows on as it comes.
        """
        return self.from_source(collection(values, name=name))

    def execute(self) -> JobResult:
        """Run the job to completion on a new event loop and return what it did.

        Raises:
            RuntimeError: called from a running event loop; ``await execute_async()`` there.
            AsyncFunctionError: an element failed (naming it, its operator, and its source
                line when known).
            BadInputError: more than ``max_errors`` bad input elements.
            ConfigError: a bad job, or a source that cannot be opened (e.g. a missing file).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.execute_async())
        msg = (
            f"job {self.name!r}: execute() cannot run inside a running event loop; "
            "use `await env.execute_async()` there"
        )
        raise RuntimeError(msg)

    async def execute_async(self) -> JobResult:
        """Run the job on the running event loop; see :meth:`execute`.

        Cancelling it cancels every stage and closes every operator, source and sink.

        Before anything is opened, the files of the job are checked: every output (file
        sinks, ``errors_path``, the job's checkpoint folder) must be writable and must not
        be an input (a source's file, a lookup's database) or another output, however the
        path is spelled (``..``, symbolic or hard links). Each output is then locked (an OS
        file lock, see ``docs/fault-tolerance.md``) until the job ends, so a second run
        writing the same outputs is refused. Any refusal is a :class:`ConfigError` and
        changes nothing.
        """
        if self._job is not None and self._job.running:
            msg = f"job {self.name!r} is already running"
            raise AsyncWaitError(msg)
        if not self._plan.pipelines:
            msg = f"job {self.name!r}: nothing to run; start a stream with from_source()"
            raise ConfigError(msg)
        for pipeline in self._plan.pipelines:
            if pipeline.sink is None:
                msg = (
                    f"job {self.name!r}: the stream from {pipeline.source.name} has no sink; "
                    "end it with .sink_to(...)"
                )
                raise ConfigError(msg)
        checkpoint = None
        if self.checkpoint_dir is not None:
            checkpoint = CheckpointConfig(
                self.checkpoint_interval, self.checkpoint_dir, self.checkpoints_kept, self.fresh
            )
        pipelines = list(self._plan.pipelines)
        # Before anything is opened: no output may be an input or another output, and no
        # other run may be writing them; the locks are held until the job has closed all.
        with guarded_outputs(
            self.name, pipelines, errors_path=self.errors_path, checkpoint=checkpoint
        ):
            self._job = job = Job(
                self.name,
                pipelines,
                errors_path=self.errors_path,
                max_errors=self.max_errors,
                buffer_size=self.buffer_size,
                checkpoint=checkpoint,
            )
            _log.info("job %r started", self.name, extra=_event("job_started", self.name))
            try:
                result = await job.run()
            except Exception as exc:
                # INFO: the caller gets the exception and reports it; this only marks the
                # end of the run in a log of lifecycle events.
                _log.info(
                    "job %r failed: %s",
                    self.name,
                    exc,
                    extra=_event("job_failed", self.name, error=str(exc)),
                )
                raise
            _log.info(
                "job %r %s: %d events in, %d out, %d errors in %.3f s",
                self.name,
                "stopped" if result.stopped else "finished",
                result.events_in,
                result.events_out,
                result.errors,
                result.duration,
                extra=_event(
                    "job_stopped" if result.stopped else "job_finished",
                    self.name,
                    events_in=result.events_in,
                    events_out=result.events_out,
                    errors=result.errors,
                    skipped=result.skipped,
                    dead_letters=result.dead_letters,
                    checkpoints=result.checkpoints,
                    seconds=round(result.duration, 6),
                ),
            )
            return result

    def stop(self) -> None:
        """Stop the running job; ``execute`` then returns a result with ``stopped=True``.

        With checkpointing, the job first takes a checkpoint (everything before it is
        committed) and a later run resumes from it; without, it stops at once and the
        sinks keep what they wrote. Call it from the job's event loop thread (e.g. a
        signal handler installed with ``loop.add_signal_handler``). Does nothing when no
        job runs or a stop is already under way.
        """
        job = self._job
        if job is not None:
            job.request_stop()

    def progress(self) -> JobProgress:
        """A snapshot of the running (or last) job: cheap, for a live display.

        Call it from the job's event loop thread.
        """
        job = self._job
        if job is None:
            return JobProgress(self.name, False, 0.0, 0, 0, 0)
        return job.progress()
