"""A lookup join's resilience options: its default row and its flow control (private).

``lookup_join(..., on_error="default", default={...})`` emits an event whose lookup finally
failed merged with ``default``; ``rate_limit``/``burst``, ``adaptive`` and
``circuit_breaker`` make the join's :class:`~asyncwait._gate.FlowGate`, which the batcher
asks before each query (breaker -> rate limit -> concurrency limit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, final

from .._flow import AdaptiveSpec, BreakerSpec, RateLimitSpec
from .._gate import FlowGate
from .._reprs import short_repr
from ..errors import BadInputError, ConfigError
from ..lookups import LookupTable, ThrottledTable

__all__ = ("JoinPolicies",)


@final
@dataclass(frozen=True, slots=True)
class JoinPolicies:
    """The checked resilience options of one lookup join.

    Attributes:
        default: the row merged into an event whose lookup failed (``on_error="default"``).
        rate_limit: calls per second to the store, and the burst.
        adaptive: the bounds of the adaptive concurrency limit.
        breaker: the circuit breaker's options.
    """

    default: dict[str, Any] | None = None
    rate_limit: RateLimitSpec | None = None
    adaptive: AdaptiveSpec | None = None
    breaker: BreakerSpec | None = None

    @classmethod
    def of(
        cls,
        source: str,
        *,
        default: object = None,
        rate_limit: object = None,
        burst: object = None,
        adaptive: object = None,
        circuit_breaker: object = None,
    ) -> JoinPolicies:
        """Check the options as ``lookup_join`` takes them, naming ``source`` (the join).

        Raises:
            ConfigError: a bad value, or ``burst`` without ``rate_limit``.
        """
        row = None
        if default is not None:
            if not isinstance(default, Mapping) or not all(isinstance(k, str) for k in default):
                msg = f"{source}: default must be a table of column = value, got {default!r}"
                raise ConfigError(msg)
            row = dict(default)
        rate = None
        if rate_limit is not None or burst is not None:
            limits = {"rate_limit": rate_limit, "burst": burst}
            rate = RateLimitSpec.from_mapping(source, limits)
        return cls(
            default=row,
            rate_limit=rate,
            adaptive=None if adaptive is None else AdaptiveSpec.from_mapping(source, adaptive),
            breaker=(
                None
                if circuit_breaker is None
                else BreakerSpec.from_mapping(source, circuit_breaker)
            ),
        )

    @property
    def limited(self) -> bool:
        """Whether a flow control policy is set (the join then has a gate)."""
        return not (self.rate_limit is None and self.adaptive is None and self.breaker is None)

    def check_capacity(self, source: str, capacity: int) -> None:
        """Refuse ``adaptive.max`` above the operator's ``capacity``."""
        if self.adaptive is not None:
            self.adaptive.check_capacity(source, capacity)

    def gate(self, name: str, table: LookupTable) -> FlowGate | None:
        """A new gate for a run of the join (``None`` without a policy).

        With a rate limit, a table that waits out ``Retry-After`` itself is told to leave
        that to the gate (which pauses every call of the lookup, not just one).
        """
        if not self.limited:
            return None
        if self.rate_limit is not None and isinstance(table, ThrottledTable):
            table.defer_retry_after()
        return FlowGate(
            name, rate_limit=self.rate_limit, adaptive=self.adaptive, breaker=self.breaker
        )

    def max_batch(self, table: LookupTable, asked: int) -> int:
        """The keys per query (``asked``, or 1 when each key is a call of its own).

        Flow control counts queries: with a table that makes one call per key, a query of
        one key lets the store see the rate and the concurrency asked for.
        """
        if self.limited and isinstance(table, ThrottledTable) and table.one_call_per_key():
            return 1
        return asked

    def merged(self, source: str, event: Any) -> list[Any]:
        """The output of ``event`` whose lookup failed: merged with the default row."""
        assert self.default is not None  # on_error="default" is checked to have one
        try:
            return [{**event, **self.default}]
        except TypeError as exc:
            event_shown = short_repr(event)
            msg = f"{source}: event {event_shown} is not a dict: the default cannot be merged"
            raise BadInputError(msg, source=source) from exc
