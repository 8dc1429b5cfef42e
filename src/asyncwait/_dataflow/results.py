"""What a job reports: its progress while it runs and its result at the end.

Re-exported by :mod:`asyncwait.runtime` and the package; the job builds them, the
environment hands them out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, final

from ..errors import AsyncWaitError
from ..metrics import HistogramSnapshot
from ..operator import AsyncWaitOperator

__all__ = ("JobProgress", "JobResult", "JobTotals", "OperatorSummary")


@final
@dataclass(frozen=True, slots=True)
class OperatorSummary:
    """One async operator's numbers at a moment (see ``JobProgress``/``JobResult``).

    Attributes:
        name: the operator's name.
        in_flight: records admitted and not complete.
        queued: entries holding a slot (in flight, completed not emitted, watermarks).
        capacity: the most entries the operator holds.
        emitted: entries emitted so far.
        retries: retry attempts started.
        timeouts: elements whose deadline passed.
        failures: elements that failed.
        latency_p50: median seconds from admission to completion (``nan`` before any).
        latency_p99: 99th percentile of the same.
        counters: the function's own counters (e.g. ``cache_hits``, ``cache_misses``).
        skipped, dead_letters, defaulted: elements its ``on_error`` policy dropped, sent
            to the errors file, or completed with the default.
        attempt_timeouts: attempts abandoned after ``attempt_timeout``.
        result_retries: retries asked by the retry's ``on_result`` (a missing row).
        latency: the latency histogram behind ``latency_p50``/``latency_p99`` (seconds from
            admission to completion of one element in 8), as exported to Prometheus.
    """

    name: str
    in_flight: int
    queued: int
    capacity: int
    emitted: int
    retries: int
    timeouts: int
    failures: int
    latency_p50: float = math.nan
    latency_p99: float = math.nan
    counters: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    dead_letters: int = 0
    defaulted: int = 0
    attempt_timeouts: int = 0
    result_retries: int = 0
    latency: HistogramSnapshot = field(default_factory=HistogramSnapshot)

    @classmethod
    def of(cls, op: AsyncWaitOperator[Any, Any]) -> OperatorSummary:
        """The numbers of ``op`` now."""
        stats = op.statistics()
        metrics = op.metrics.snapshot()
        return cls(
            name=op.name,
            in_flight=stats.in_flight,
            queued=stats.queued,
            capacity=stats.capacity,
            emitted=stats.emitted,
            retries=stats.retries,
            timeouts=stats.timeouts,
            failures=stats.failures,
            latency_p50=metrics.latency_p50,
            latency_p99=metrics.latency_p99,
            counters=metrics.counters,
            skipped=stats.skipped,
            dead_letters=stats.dead_letters,
            defaulted=stats.defaulted,
            attempt_timeouts=stats.attempt_timeouts,
            result_retries=stats.result_retries,
            latency=op.metrics.latency.snapshot(),
        )


@final
@dataclass(frozen=True, slots=True)
class JobProgress:
    """A cheap snapshot of a job while it runs (or after), from ``StreamEnvironment.progress``.

    Attributes:
        name: the job's name.
        running: whether the job is running now.
        elapsed: seconds of loop time since the job started.
        events_in: elements read from the source(s), malformed lines included (they are
            counted in ``errors`` too).
        events_out: records written by the sink(s).
        errors: bad input elements routed to the errors file.
        operators: each async operator's numbers, in pipeline order.
        checkpoints: checkpoints completed by this run.
        last_checkpoint: the id of the newest one, or ``None``.
        totals: the numbers over all the job's runs (see :class:`JobResult`).
        skipped: events dropped by an operator's ``on_error = "skip"``.
        dead_letters: events whose lookup failed, written to the errors file.
        checkpoint_durations: seconds (loop time) each checkpoint of this run took, from
            its trigger to its commit.
    """

    name: str
    running: bool
    elapsed: float
    events_in: int
    events_out: int
    errors: int
    operators: tuple[OperatorSummary, ...] = ()
    checkpoints: int = 0
    last_checkpoint: int | None = None
    totals: JobTotals | None = None
    skipped: int = 0
    dead_letters: int = 0
    checkpoint_durations: HistogramSnapshot = field(default_factory=HistogramSnapshot)


@final
@dataclass(frozen=True, slots=True)
class JobTotals:
    """A job's numbers over all its runs: the first and every resume from a checkpoint.

    Each resumed run counts from the checkpoint it resumed from, so an event read before
    that checkpoint is counted once however often the job was resumed (events processed
    after it and replayed are counted by the run that committed them). For a run that did
    not resume, they are that run's numbers.

    Attributes:
        events_in: elements read from the source(s), malformed lines included.
        events_out: records written by the sink(s).
        errors: bad input elements routed to the errors file.
        skipped: events dropped by an operator's ``on_error = "skip"``.
        dead_letters: events whose lookup failed, written to the errors file
            (``on_error = "dead_letter"``).
        runs: the runs counted (1: this run only).
    """

    events_in: int = 0
    events_out: int = 0
    errors: int = 0
    skipped: int = 0
    dead_letters: int = 0
    runs: int = 0

    @classmethod
    def restored(cls, counters: Mapping[str, int]) -> JobTotals:
        """The totals a checkpoint saved (its ``counters``)."""
        return cls(
            events_in=int(counters.get("events_in", 0)),
            events_out=int(counters.get("events_out", 0)),
            errors=int(counters.get("errors", 0)),
            skipped=int(counters.get("skipped", 0)),
            dead_letters=int(counters.get("dead_letters", 0)),
            runs=int(counters.get("runs", 1)),
        )


@final
@dataclass(frozen=True, slots=True)
class JobResult:
    """What a finished job did.

    Attributes:
        name: the job's name.
        events_in: elements read from the source(s), malformed lines included.
        events_out: records written by the sink(s).
        errors: bad input elements routed to the errors file.
        duration: seconds of loop time the job ran.
        operators: each async operator's final numbers, in pipeline order.
        error_samples: the first few bad elements (``source``, ``line``, ``raw``,
            ``reason``, maybe ``operator``), also when there is no errors file.
        sink_results: each sink's ``result()``, in the order the streams were created.
        stopped: the job was stopped (:meth:`StreamEnvironment.stop`) before its end; with
            checkpoints, a later run resumes from ``last_checkpoint``.
        restored_from: the checkpoint this run resumed from, or ``None``.
        checkpoints: checkpoints completed by this run (the final one included).
        last_checkpoint: the id of the newest one, or ``None``.
        totals: the numbers over all the job's runs; after a resume, ``events_out`` of
            this run may exceed its ``events_in`` (it emits what the checkpoint held in
            flight), the totals add up.
        skipped: events dropped by an operator's ``on_error = "skip"`` (counted when
            their turn to leave came).
        dead_letters: events whose lookup finally failed, written to the errors file as
            ``kind = "lookup_failed"`` (``on_error = "dead_letter"``). For a job whose steps
            neither drop nor multiply events: ``events_in = events_out + errors + skipped
            + dead_letters``.
    """

    name: str
    events_in: int
    events_out: int
    errors: int
    duration: float
    operators: tuple[OperatorSummary, ...] = ()
    error_samples: tuple[dict[str, Any], ...] = ()
    sink_results: tuple[Any, ...] = ()
    stopped: bool = False
    restored_from: int | None = None
    checkpoints: int = 0
    last_checkpoint: int | None = None
    totals: JobTotals | None = None
    skipped: int = 0
    dead_letters: int = 0

    @property
    def sink_result(self) -> Any:
        """The result of the job's only sink (e.g. a ``collect()`` sink's values)."""
        if len(self.sink_results) != 1:
            msg = f"job {self.name!r} has {len(self.sink_results)} sinks; use sink_results"
            raise AsyncWaitError(msg)
        return self.sink_results[0]
