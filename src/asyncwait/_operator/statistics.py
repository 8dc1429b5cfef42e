"""The operator's counters (private; re-exported by :mod:`asyncwait.operator`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

__all__ = ("OperatorStatistics",)


@final
@dataclass(frozen=True, slots=True)
class OperatorStatistics:
    """A snapshot of an operator's counters.

    Attributes:
        in_flight: admitted records not yet complete (running, waiting for a retry or a key,
            or in the ``timeout()`` hook).
        queued: entries holding a slot: ``in_flight`` plus completed records not yet emitted
            and watermarks.
        capacity: the most entries the operator holds.
        emitted: entries emitted so far (records and watermarks).
        retries: retry attempts started.
        timeouts: elements whose deadline passed.
        failures: elements that failed.
        passed: records whose outputs were known at admission and emitted at once, without
            holding a slot (counted in ``emitted`` too; see ``open(sync_emit=True)``).
        skipped: failed elements dropped by ``on_error="skip"`` (counted in ``failures``).
        dead_letters: failed elements sent to the dead-letter callback (in ``failures``).
        defaulted: failed elements that emitted their default (in ``failures``).
        attempt_timeouts: attempts abandoned after ``attempt_timeout``.
        result_retries: retries the retry's ``on_result`` asked for (for a lookup join
            with ``retry.MISSING_ROW``: retries of a missing row); part of ``retries``.
    """

    in_flight: int
    queued: int
    capacity: int
    emitted: int
    retries: int
    timeouts: int
    failures: int
    passed: int = 0
    skipped: int = 0
    dead_letters: int = 0
    defaulted: int = 0
    attempt_timeouts: int = 0
    result_retries: int = 0
