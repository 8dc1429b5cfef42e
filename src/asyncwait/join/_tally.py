"""What a lookup join's lookups came to, and what the join says about it (private).

Every lookup the join starts ends in exactly one outcome::

    start_call / start_keyed / async_invoke ─► row found ────────────► matched
      (the event's key was taken)           ├► no row, left join ────► missed (passed through)
                                            ├► no row, inner join ───► dropped
                                            ├► the lookup failed ────► failed (a failed
                                            │   query or output, a timeout, the close)
                                            └► the event is bad input ► rejected (a key the
                                                table cannot use, an event not a dict)

The join counts them in plain int attributes on its hot path; :class:`JoinStatistics` and
the operator's counters (``Metrics.count_from``) read them. From here come the warning of a
join that matched nothing in its first lookups and the failure of a ratio below
``min_match_ratio``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, final

from ..cache import CacheStatistics
from ..errors import AsyncFunctionError, BadInputError

__all__ = ("WARN_AFTER", "JoinCounts", "JoinStatistics", "check_ratio", "warn_nothing_matched")

WARN_AFTER: Final = 1000
"""Lookups without a single match after which a join warns (once)."""

_log = logging.getLogger("asyncwait.join")


class JoinCounts:
    """The outcome counters of a join's lookups (a base of the join).

    Plain int attributes, bumped once per lookup on the hot path; read by the join's
    statistics and, through :meth:`_counters`, by the operator's metrics.
    """

    matched: int
    missed: int
    dropped: int
    failed: int
    rejected: int

    def reset_counts(self) -> None:
        """Zero every counter (a new run)."""
        self.matched = self.missed = self.dropped = self.failed = self.rejected = 0

    def _count_failure(self, exc: BaseException | None) -> None:
        """Count a lookup that ended with ``exc`` (``None``: withdrawn, so failed too).

        Bad input counts as rejected, everything else as failed.
        """
        if isinstance(exc, BadInputError):
            self.rejected += 1
        else:
            self.failed += 1

    def _counters(self) -> dict[str, int]:
        """The operator's counters of this join (read when its metrics are read)."""
        return {
            "matched": self.matched,
            "missed": self.missed,
            "dropped": self.dropped,
            "lookup_failed": self.failed,
        }


@final
@dataclass(frozen=True, slots=True)
class JoinStatistics:
    """A snapshot of a :class:`~asyncwait.join.LookupJoin`'s counters.

    Every lookup started ends in exactly one of ``matched``, ``missed``, ``dropped``,
    ``failed`` and ``rejected``; a lookup retried by the operator counts once per attempt.

    Attributes:
        lookups: queries sent to the table (a ``get``, or a ``get_many`` for a batch).
        keys: keys sent to the table in those queries.
        coalesced: lookups that waited for another lookup's query of the same key.
        lookup_errors: queries that failed.
        in_flight: keys with a query in flight (or being gathered) now.
        cache: the cache's statistics, or ``None`` without a cache (or before ``open``).
        matched: lookups that found a row.
        missed: lookups without a row whose event a left join passed on.
        dropped: lookups without a row whose event an inner join dropped.
        failed: lookups that failed: the query raised (e.g.
            :class:`~asyncwait.LookupFailedError`), the output could not be built, or the
            lookup was withdrawn (its element timed out, the operator closed).
        rejected: lookups whose event turned out to be bad input (a key the table cannot
            use, an event the row cannot be merged into).
    """

    lookups: int
    keys: int
    coalesced: int
    lookup_errors: int
    in_flight: int
    cache: CacheStatistics | None
    matched: int = 0
    missed: int = 0
    dropped: int = 0
    failed: int = 0
    rejected: int = 0

    @property
    def match_ratio(self) -> float | None:
        """``matched / (matched + missed + dropped)``; ``None`` before any such lookup."""
        looked = self.matched + self.missed + self.dropped
        return self.matched / looked if looked else None


def warn_nothing_matched(source: str, on: str, key: str | None) -> None:
    """Log (once per join) that the first :data:`WARN_AFTER` lookups found no row.

    Args:
        source: the join, ``"<operator>: lookup join on <table>"`` (the table named).
        on: the event side of the key, e.g. ``"event field 'userID'"``.
        key: the table's key column (an SQL table's ``key``), or ``None``.
    """
    where = f"in key column {key!r}" if key is not None else "as the table's key"
    _log.warning(
        "%s: none of the first %s lookups found a row (%s is looked up %s); check the key "
        "column, the event field and the table",
        source,
        f"{WARN_AFTER:,}",
        on,
        where,
        extra={
            "event": "nothing_matched",
            "operator": source.split(": ", 1)[0],  # "<operator>: lookup join on <table>"
            "fields": {"source": source, "lookups": WARN_AFTER},
        },
    )


def check_ratio(source: str, threshold: float | None, matched: int, looked: int) -> None:
    """Fail when ``matched / looked`` is below ``threshold`` (``min_match_ratio``).

    Nothing is checked without a threshold or without any lookup that found or missed a
    row (an empty input cannot have a ratio).

    Raises:
        AsyncFunctionError: the ratio is below ``threshold``; the message names the join,
            the ratio and the threshold.
    """
    if threshold is None or not looked:
        return
    ratio = matched / looked
    if ratio < threshold:
        msg = (
            f"{source}: matched {matched:,} of {looked:,} events ({ratio:.1%}), below "
            f"min_match_ratio {threshold:g}"
        )
        raise AsyncFunctionError(msg)
