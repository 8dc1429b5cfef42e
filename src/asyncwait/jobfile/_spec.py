"""The validated job file: frozen specs of the source, lookups, sink, checkpoint and errors."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, cast, final

from .._flow import AdaptiveSpec, BreakerSpec, RateLimitSpec
from ..operator import OutputMode
from ..retry import (
    MISSING_ROW,
    ExponentialBackoff,
    FixedDelay,
    exponential_backoff,
    fixed_delay,
)

__all__ = (
    "EPOCH_FORMATS",
    "CacheSpec",
    "CheckpointSpec",
    "ErrorsSpec",
    "JobSpec",
    "JoinType",
    "LookupSpec",
    "LookupType",
    "RetrySpec",
    "SinkSpec",
    "SinkType",
    "SourceSpec",
    "SourceType",
    "WatermarkSpec",
)

SourceType: TypeAlias = Literal["jsonl", "csv", "stdin"]
SinkType: TypeAlias = Literal["jsonl", "csv", "stdout"]
LookupType: TypeAlias = Literal["sqlite", "postgres", "mysql", "redis", "http"]
JoinType: TypeAlias = Literal["left", "inner"]

EPOCH_FORMATS: Final = ("epoch_ms", "epoch_s")
"""The ``timestamp_format`` values that read numbers instead of parsing text."""


@final
@dataclass(frozen=True, slots=True)
class WatermarkSpec:
    """Event time for the source: where the timestamp is and how late events may be.

    Attributes:
        timestamp_field: the event field holding the event time.
        timestamp_format: a ``strptime`` format (naive results are UTC), ``"epoch_ms"`` or
            ``"epoch_s"``.
        max_out_of_orderness_ms: how far (ms) an event may trail the newest one seen.
    """

    timestamp_field: str
    timestamp_format: str = "epoch_ms"
    max_out_of_orderness_ms: int = 0


@final
@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where the events come from; ``path`` is absolute (``None`` for stdin)."""

    type: SourceType
    path: Path | None = None
    watermarks: WatermarkSpec | None = None


@final
@dataclass(frozen=True, slots=True)
class CacheSpec:
    """A lookup cache: ``lru`` (``max_size``, ``ttl``, ``miss_ttl``) or ``full``."""

    type: Literal["lru", "full"]
    max_size: int | None = None
    ttl: float | None = None
    miss_ttl: float | None = None
    reload_interval: float | None = None


@final
@dataclass(frozen=True, slots=True)
class RetrySpec:
    """A retry strategy: ``exponential`` or ``fixed``; :attr:`strategy` builds it."""

    type: Literal["exponential", "fixed"]
    max_retries: int
    initial_delay: float | None = None
    max_delay: float | None = None
    multiplier: float = 2.0
    jitter: float = 0.0
    delay: float | None = None
    on_miss: bool = False  # also retry a key without a row (retry.MISSING_ROW)

    @property
    def strategy(self) -> FixedDelay | ExponentialBackoff:
        """The :mod:`asyncwait.retry` strategy this spec describes."""
        on_result = MISSING_ROW if self.on_miss else None
        if self.type == "fixed":
            return fixed_delay(self.max_retries, cast("float", self.delay), on_result=on_result)
        return exponential_backoff(
            self.max_retries,
            cast("float", self.initial_delay),
            cast("float", self.max_delay),
            self.multiplier,
            jitter=self.jitter,
            on_result=on_result,
        )


@final
@dataclass(frozen=True, slots=True)
class Resilience:
    """What a lookup does when its store misbehaves: the fields of API.md section 9.

    Attributes:
        on_error: ``fail``, ``skip``, ``dead_letter`` or ``default``.
        default: with ``on_error = "default"``: the row merged into the event.
        attempt_timeout: seconds per attempt (``None``: only ``timeout``).
        rate_limit: ``rate_limit`` and ``burst``.
        adaptive: ``adaptive = { min, max }``.
        circuit_breaker: ``circuit_breaker = { failure_ratio, min_calls, open_for }``.
    """

    on_error: str = "fail"
    default: dict[str, Any] | None = None
    attempt_timeout: float | None = None
    rate_limit: RateLimitSpec | None = None
    adaptive: AdaptiveSpec | None = None
    circuit_breaker: BreakerSpec | None = None


@final
@dataclass(frozen=True, slots=True)
class LookupSpec:
    """One ``[[lookup]]``: a dimension table joined to each event on one of its fields.

    Attributes:
        type: the lookup connector.
        on: the event field whose value is looked up.
        path: the SQLite database (absolute).
        dsn: the postgres/mysql connection string.
        url: the redis URL or the http URL template (with ``{key}``).
        table: the table to read.
        key: the table column matched against the event's ``on`` field.
        columns: the columns joined to the event (``None``: all of them).
        how: ``left`` keeps events without a row; ``inner`` drops them.
        mode: the output order of the join's async operator.
        capacity: lookups in flight (and results held) at most.
        timeout: seconds per event before it fails (``None``: no deadline).
        cache: the lookup cache, if any.
        retry: the retry strategy, if any.
        key_prefix: redis only: prefix of every key.
        value: redis only: ``hash`` or ``json``.
        method: http only: the request method.
        max_batch_size: the most keys per batched query (``None``: the join's default).
        max_batch_wait: seconds a new batch waits for more keys (0: none).
        max_queries: the most queries in flight at once (``None``: the join's default).
        schema: postgres only: the table's schema (``None``: the search path).
        pool_size: postgres, mysql and redis only: the most connections (``None``: sized by
            the join).
        min_match_ratio: fail the job when, at the end of the input, fewer than this share
            of the events looked up found a row (``None``: never).
        resilience: ``on_error``, ``default``, ``attempt_timeout``, ``rate_limit``,
            ``burst``, ``adaptive``, ``circuit_breaker``.
    """

    type: LookupType
    on: str
    path: Path | None = None
    dsn: str | None = None
    url: str | None = None
    table: str | None = None
    key: str | None = None
    columns: tuple[str, ...] | None = None
    how: JoinType = "left"
    mode: OutputMode = OutputMode.UNORDERED  # as DataStream.lookup_join
    capacity: int = 100
    timeout: float | None = None
    cache: CacheSpec | None = None
    retry: RetrySpec | None = None
    key_prefix: str | None = None
    value: str | None = None
    method: str | None = None
    max_batch_size: int | None = None
    max_batch_wait: float = 0.0
    max_queries: int | None = None
    schema: str | None = None
    pool_size: int | None = None
    min_match_ratio: float | None = None
    resilience: Resilience = field(default_factory=Resilience)


@final
@dataclass(frozen=True, slots=True)
class SinkSpec:
    """Where the results go; ``path`` is absolute (``None`` for stdout)."""

    type: SinkType
    path: Path | None = None


@final
@dataclass(frozen=True, slots=True)
class CheckpointSpec:
    """Periodic checkpoints: every ``interval`` seconds into ``dir`` (absolute)."""

    interval: float
    dir: Path


@final
@dataclass(frozen=True, slots=True)
class ErrorsSpec:
    """Where bad input goes (``path``, absolute) and how much of it a job tolerates."""

    path: Path | None = None
    max_errors: int | None = None


@final
@dataclass(frozen=True, slots=True)
class MetricsSpec:
    """The Prometheus endpoint of ``[metrics]``: ``/metrics`` on ``host:port`` while running."""

    port: int
    host: str = "127.0.0.1"


@final
@dataclass(frozen=True, slots=True)
class JobSpec:
    """A whole validated job file.

    Attributes:
        file: the job file, as given (used in messages).
        name: the job's name.
        source: where events come from.
        lookups: the lookup joins, applied in order.
        sink: where results go.
        checkpoint: checkpoint settings, if any.
        errors: the bad-input settings, if any.
        metrics: the Prometheus endpoint, if any.
    """

    file: Path
    name: str
    source: SourceSpec
    sink: SinkSpec
    lookups: tuple[LookupSpec, ...] = ()
    checkpoint: CheckpointSpec | None = None
    errors: ErrorsSpec | None = None
    metrics: MetricsSpec | None = None

    def with_max_errors(self, max_errors: int) -> JobSpec:
        """Return a copy whose ``errors.max_errors`` is ``max_errors`` (``--max-errors``)."""
        errors = self.errors or ErrorsSpec()
        return replace(self, errors=replace(errors, max_errors=max_errors))
