"""The ``DataStream`` builder: each method appends a step to the job's plan (private).

``DataStream`` is re-exported by :mod:`asyncwait.runtime`, whose ``StreamEnvironment``
starts every stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar, final

from .._flow import AdaptiveSpec, BreakerSpec
from ..errors import ConfigError
from ..function import AsyncFunction
from ..operator import OnError, OutputMode
from ..retry import NO_RETRY, RetryStrategy
from ..sinks import Sink
from ..watermarks import WatermarkStrategy
from .plan import AsyncSpec, JobPlan, Pipeline, StepSpec, output_mode

__all__ = ("DataStream",)

T = TypeVar("T")
U = TypeVar("U")
S = TypeVar("S", bound=Sink)


@final
class DataStream(Generic[T]):
    """A stream of records inside a job being built; users receive it, never build it.

    Every method appends a step and returns the stream after it. A stream continues into
    exactly one next step or sink (no fan-out). Functions run once per record, in stream
    order; see :mod:`asyncwait.runtime` for what their exceptions do.
    """

    __slots__ = ("_pipeline", "_plan", "_position")

    def __init__(self, plan: JobPlan, pipeline: Pipeline) -> None:
        self._plan = plan
        self._pipeline = pipeline
        self._position = len(pipeline.steps)

    def __repr__(self) -> str:
        kinds = [spec.name for spec in self._pipeline.steps[: self._position]]
        return f"<DataStream {' -> '.join([self._pipeline.source.name, *kinds])}>"

    def _then(self, spec: StepSpec | AsyncSpec) -> DataStream[Any]:
        pipeline = self._pipeline
        if pipeline.sink is not None or len(pipeline.steps) != self._position:
            what = f"ends in {pipeline.sink!r}" if pipeline.sink else "continues already"
            msg = (
                f"this stream {what}; a stream feeds exactly one next step or sink "
                "(fan-out is not supported)"
            )
            raise ConfigError(msg)
        pipeline.steps.append(spec)
        return DataStream(self._plan, pipeline)

    def _step(self, kind: str, function: Any, name: str | None) -> DataStream[Any]:
        if not callable(function):
            msg = f"{kind}() needs a callable, got {function!r}"
            raise TypeError(msg)
        return self._then(StepSpec(kind, function, self._plan.step_name(kind, name)))

    def map(self, function: Callable[[T], U], *, name: str | None = None) -> DataStream[U]:
        """Replace each record's value with ``function(value)``, keeping its timestamp.

        Chained (no await, no extra task). A :class:`~asyncwait.BadInputError` routes the
        record to the errors file; any other exception fails the job.
        """
        return self._step("map", function, name)

    def filter(self, function: Callable[[T], object], *, name: str | None = None) -> DataStream[T]:
        """Keep the records whose ``function(value)`` is true; errors as in :meth:`map`."""
        return self._step("filter", function, name)

    def flat_map(
        self, function: Callable[[T], Iterable[U]], *, name: str | None = None
    ) -> DataStream[U]:
        """Replace each record with one record per value ``function(value)`` yields.

        The new records keep the input's timestamp; errors as in :meth:`map`.
        """
        return self._step("flat_map", function, name)

    def assign_timestamps_and_watermarks(
        self, strategy: WatermarkStrategy[T], *, name: str | None = None
    ) -> DataStream[T]:
        """Stamp records with event time and emit watermarks as ``strategy`` says.

        Chained. Upstream watermarks are replaced by the strategy's (the final one at the
        end of input passes). See :mod:`asyncwait.watermarks`.
        """
        if not isinstance(strategy, WatermarkStrategy):
            msg = f"assign_timestamps_and_watermarks() needs a WatermarkStrategy, got {strategy!r}"
            raise TypeError(msg)
        return self._then(
            StepSpec("watermarks", strategy, self._plan.step_name("watermarks", name))
        )

    def _async(
        self, kind: str, function: Any, mode: OutputMode, name: str | None, **options: Any
    ) -> DataStream[Any]:
        """Add an async stage; ``options`` are :class:`AsyncSpec`'s (capacity, timeout...)."""
        spec = AsyncSpec(function, mode, name=self._plan.step_name(kind, name), **options)
        spec.operator(function)  # validates every option now, with the operator's messages
        return self._then(spec)

    def ordered_wait(
        self,
        function: AsyncFunction[T, U] | Callable[[T], Awaitable[U]],
        *,
        capacity: int = 100,
        timeout: float | None = None,
        retry: RetryStrategy = NO_RETRY,
        attempt_timeout: float | None = None,
        on_error: OnError | str = OnError.FAIL,
        default: Callable[[T, BaseException], Iterable[U]] | None = None,
        name: str | None = None,
    ) -> DataStream[U]:
        """Call ``function`` per record, at most ``capacity`` entries held; outputs in input order.

        Runs as its own stage (an :class:`~asyncwait.AsyncWaitOperator` in ``ORDERED``
        mode): watermarks keep their place. ``timeout`` is a per-record deadline (seconds)
        covering all ``retry`` attempts. A :class:`~asyncwait.BadInputError` from the
        function routes the record to the errors file (no retry); a failed record fails the
        job with :class:`~asyncwait.AsyncFunctionError` unless ``on_error`` says otherwise:
        ``"skip"`` drops it (counted), ``"dead_letter"`` writes it to the errors file
        (``kind = "lookup_failed"``, with the event, the reason and the attempts),
        ``"default"`` emits ``default(value, error)``. ``attempt_timeout`` abandons one slow
        attempt (retried while ``timeout`` allows).
        """
        return self._async(
            "ordered_wait",
            function,
            OutputMode.ORDERED,
            name,
            capacity=capacity,
            timeout=timeout,
            retry=retry,
            key=None,
            attempt_timeout=attempt_timeout,
            on_error=on_error,
            default=default,
        )

    def unordered_wait(
        self,
        function: AsyncFunction[T, U] | Callable[[T], Awaitable[U]],
        *,
        capacity: int = 100,
        timeout: float | None = None,
        retry: RetryStrategy = NO_RETRY,
        attempt_timeout: float | None = None,
        on_error: OnError | str = OnError.FAIL,
        default: Callable[[T, BaseException], Iterable[U]] | None = None,
        name: str | None = None,
    ) -> DataStream[U]:
        """As :meth:`ordered_wait`, but outputs in completion order, never across a watermark."""
        return self._async(
            "unordered_wait",
            function,
            OutputMode.UNORDERED,
            name,
            capacity=capacity,
            timeout=timeout,
            retry=retry,
            key=None,
            attempt_timeout=attempt_timeout,
            on_error=on_error,
            default=default,
        )

    def key_ordered_wait(
        self,
        function: AsyncFunction[T, U] | Callable[[T], Awaitable[U]],
        *,
        key: Callable[[T], Hashable],
        capacity: int = 100,
        timeout: float | None = None,
        retry: RetryStrategy = NO_RETRY,
        attempt_timeout: float | None = None,
        on_error: OnError | str = OnError.FAIL,
        default: Callable[[T, BaseException], Iterable[U]] | None = None,
        name: str | None = None,
    ) -> DataStream[U]:
        """As :meth:`unordered_wait`, plus: records of one ``key`` run one at a time, in order.

        A ``key`` that raises :class:`~asyncwait.BadInputError` routes the record to the
        errors file; any other exception fails the job.
        """
        return self._async(
            "key_ordered_wait",
            function,
            OutputMode.KEY_ORDERED,
            name,
            capacity=capacity,
            timeout=timeout,
            retry=retry,
            key=key,
            attempt_timeout=attempt_timeout,
            on_error=on_error,
            default=default,
        )

    def lookup_join(
        self,
        table: Any,
        *,
        on: Callable[[T], Hashable] | str,
        mode: OutputMode | str = OutputMode.UNORDERED,
        cache: Any = None,
        how: str = "left",
        combine: Callable[[T, Any], Any] | None = None,
        columns: Iterable[str] | None = None,
        capacity: int = 100,
        timeout: float | None = None,
        retry: RetryStrategy = NO_RETRY,
        name: str | None = None,
        max_batch_size: int | None = None,
        max_batch_wait: float = 0.0,
        max_queries: int | None = None,
        min_match_ratio: float | None = None,
        attempt_timeout: float | None = None,
        on_error: OnError | str = OnError.FAIL,
        default: Mapping[str, Any] | None = None,
        rate_limit: float | None = None,
        burst: float | None = None,
        adaptive: Mapping[str, int] | AdaptiveSpec | None = None,
        circuit_breaker: Mapping[str, float] | BreakerSpec | None = None,
    ) -> DataStream[Any]:
        """Enrich each event with the row of key ``on(event)`` in ``table`` (a lookup join).

        Runs a :class:`~asyncwait.join.LookupJoin` in an async operator of ``mode``
        (``"ordered"``, ``"unordered"`` or ``"key_ordered"``, keyed by ``on``). Left join:
        ``{**event, **row}``, or the event unchanged when the key has no row; inner join:
        nothing then. An event whose key cannot be taken is bad input. ``capacity``,
        ``timeout`` and ``retry`` are the operator's. Cache misses are micro-batched into
        one ``get_many`` of at most ``max_batch_size`` keys (default 256; 1 = one query per
        key); ``max_batch_wait`` > 0 makes a batch wait up to that many seconds for more
        keys (sent sooner when full), 0 sends it as soon as a query slot is free.
        ``max_queries`` bounds the queries in flight at once (default 2 when batching, else
        ``capacity``); a table with a connection pool sizes it from this.

        The operator's counters tell what the lookups came to: ``matched``, ``missed`` (no
        row, passed on), ``dropped`` (no row, inner join) and ``lookup_failed``; a join that
        matched none of its first 1,000 lookups logs a warning (logger ``asyncwait.join``).
        With ``min_match_ratio``, the job fails at the end of its input when
        ``matched / (matched + missed + dropped)`` is below it.

        Resilience (see ``docs/resilience.md``): ``on_error`` routes an event whose lookup
        finally failed or timed out (``"fail"``, ``"skip"``, ``"dead_letter"`` to the errors
        file, ``"default"``: merged with the ``default`` row); ``attempt_timeout`` abandons
        a slow attempt (retried while ``timeout`` allows); a ``retry`` with
        ``on_result=retry.MISSING_ROW`` asks a missing row again; ``rate_limit``/``burst``,
        ``adaptive = {"min", "max"}`` and ``circuit_breaker = {"failure_ratio",
        "min_calls", "open_for"}`` control the calls to the store
        (:class:`~asyncwait.join.LookupJoin`).

        Raises:
            ConfigError: a bad option (named), or contradicting ones: ``default`` without
                ``on_error="default"`` (or the reverse), ``attempt_timeout >= timeout``,
                ``adaptive.max > capacity``, a retry on a miss with a cache that keeps
                misses.
        """
        from ..join import LookupJoin

        chosen = output_mode(mode)
        source = f"lookup join on {getattr(table, 'name', table)}"
        wants_default = on_error is OnError.DEFAULT or (
            isinstance(on_error, str) and on_error.lower() == "default"
        )
        if default is not None and not wants_default:
            shown = getattr(on_error, "value", on_error)
            msg = f"{source}: default is given but on_error is {shown!r}: use 'default'"
            raise ConfigError(msg)
        if wants_default and default is None:
            msg = f"{source}: on_error 'default' needs default = {{column = value, ...}}"
            raise ConfigError(msg)
        if retry.on_result is not None and _keeps_misses(cache):
            msg = (
                f"{source}: retry on a missing row cannot work with a cache that keeps "
                "misses (cache.full, or cache.lru with miss_ttl): the retry would find the "
                "cached miss"
            )
            raise ConfigError(msg)
        function = LookupJoin(
            table,
            on=on,
            how=how,
            combine=combine,
            cache=cache,
            columns=None if columns is None else list(columns),
            max_batch_size=max_batch_size,
            max_batch_wait=max_batch_wait,
            max_queries=max_queries,
            min_match_ratio=min_match_ratio,
            default=default,
            rate_limit=rate_limit,
            burst=burst,
            adaptive=adaptive,
            circuit_breaker=circuit_breaker,
            retry_misses=retry.on_result is not None,
        )
        # KEY_ORDERED orders by the join key, which the join takes once per event.
        key = function.key_of if chosen is OutputMode.KEY_ORDERED else None
        fallback = function.default_outputs if default is not None else None
        return self._async(
            "lookup_join",
            function,
            chosen,
            name,
            capacity=capacity,
            timeout=timeout,
            retry=retry,
            key=key,
            attempt_timeout=attempt_timeout,
            on_error=on_error,
            default=fallback,
        )

    def sink_to(self, sink: S) -> S:
        """End the stream in ``sink``; return it (e.g. to read a ``collect()`` sink's values)."""
        if not isinstance(sink, Sink):
            msg = f"sink_to() needs a Sink (asyncwait.sinks), got {sink!r}"
            raise TypeError(msg)
        pipeline = self._pipeline
        if pipeline.sink is not None or len(pipeline.steps) != self._position:
            msg = "this stream already continues or ends in a sink; it can have one sink"
            raise ConfigError(msg)
        pipeline.sink = sink
        return sink


def _keeps_misses(cache: Any) -> bool:
    """Whether a cache spec answers a missing key from the cache (a full cache, miss_ttl)."""
    if cache is None:
        return False
    return getattr(cache, "miss_ttl", None) is not None or not hasattr(cache, "miss_ttl")
