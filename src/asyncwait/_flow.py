"""Flow control toward a store: a rate limit, and the options of every policy (private).

Like the queues, the components are plain synchronous objects: no awaits, no tasks, no
clock. The caller passes ``now`` (loop time, float seconds) into every method, decides,
then does the I/O.

    TokenBucket        here: ``rate_limit`` calls per second, bursts of up to ``burst``
    ConcurrencyLimit   ``_adaptive``: calls in flight, between ``adaptive.min`` and ``.max``
    CircuitBreaker     ``_breaker``: stops calls to a failing store for ``open_for`` seconds
    RateLimitSpec, AdaptiveSpec, BreakerSpec
                       here: the options, validated, from Python or a job-file table; each
                       ``build()`` makes a new component
    FlowGate           ``_gate``: the three together for one lookup's calls

A lookup applies them in this order: breaker, rate limit, concurrency limit, attempt.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from ._adaptive import ConcurrencyLimit
from ._breaker import CircuitBreaker, check_ratio
from ._checks import check_int, check_seconds, is_number
from .errors import ConfigError

__all__ = ("AdaptiveSpec", "BreakerSpec", "RateLimitSpec", "RateLimitStatistics", "TokenBucket")

# Seconds. `_free` is a sum of intervals, so it can land a rounding error after the instant
# it stands for (100/s, burst 5: 1e-18 s after 0.0, and the fifth token of a full bucket
# would be refused); a token this close to free is free.
_SAME_INSTANT: Final = 1e-9


def _number(owner: str, field: str, value: object, *, low: float, strict: bool) -> float:
    """Return ``value`` as a float: finite and > ``low`` (``strict``) or >= ``low``."""
    if not is_number(value) or not (value > low if strict else value >= low):  # type: ignore[operator]
        bound = f"{'>' if strict else '>='} {low:g}"
        msg = f"{owner}: {field} must be a number {bound}, got {value!r}"
        raise ConfigError(msg)
    return float(value)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ rate limit


@final
@dataclass(frozen=True, slots=True)
class RateLimitStatistics:
    """A snapshot of a :class:`TokenBucket`.

    Attributes:
        rate: tokens (calls) per second; burst: the bucket's size.
        taken: tokens handed out.
        waits: callers that found the bucket empty (each counted once: see
            :meth:`TokenBucket.try_take`).
        slowdowns: :meth:`TokenBucket.slow_down` calls.
        paused_until: the latest end of a slow-down (loop time), or ``None``.
    """

    rate: float
    burst: float
    taken: int
    waits: int
    slowdowns: int
    paused_until: float | None


@final
class TokenBucket:
    """A token bucket: ``rate`` calls per second, up to ``burst`` at once after a pause.

    Tokens accrue continuously at ``rate`` up to ``burst`` (a full bucket after a long idle
    time, never more), so over any window of ``w`` seconds at most ``rate * w + burst``
    tokens are handed out. It is kept as one float, the time the next token is free (the
    generic cell rate algorithm), so it cannot drift. :meth:`slow_down` (the store
    answered 429/503 or sent Retry-After) hands out no token before its end, then one,
    then ``rate`` per second again.

    Args:
        rate: tokens per second (the ``rate_limit`` option), a number > 0.
        burst: the bucket size, a number >= 1; default ``max(1, rate / 10)``.

    Raises:
        ConfigError: ``rate`` or ``burst`` is out of range.

    >>> bucket = TokenBucket(10.0, burst=2)
    >>> bucket.try_take(0.0), bucket.try_take(0.0), bucket.try_take(0.0)
    (True, True, False)
    >>> bucket.next_at(0.0)
    0.1
    >>> bucket.slow_down(0.1, 1.0)  # Retry-After: 1
    >>> bucket.try_take(0.5), bucket.next_at(0.5), bucket.try_take(1.1)
    (False, 1.1, True)
    """

    __slots__ = (
        "_burst",
        "_free",
        "_interval",
        "_paused_until",
        "_rate",
        "_seen",
        "_slack",
        "_slowdowns",
        "_taken",
        "_waits",
    )

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self._rate = _number("TokenBucket", "rate_limit", rate, low=0.0, strict=True)
        self._burst = (
            max(1.0, self._rate / 10)
            if burst is None
            else _number("TokenBucket", "burst", burst, low=1.0, strict=False)
        )
        self._interval = 1.0 / self._rate
        self._slack = (self._burst - 1.0) * self._interval  # a full bucket's head start
        # When the next token is free (GCRA's arrival time minus the slack). A take moves
        # it on by one interval from no earlier than `now - slack`: a full bucket, no more.
        self._free = -math.inf
        self._paused_until: float | None = None
        self._seen = -math.inf  # the latest `now` passed in, for repr
        self._taken = 0
        self._waits = 0
        self._slowdowns = 0

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """The bucket size."""
        return self._burst

    def try_take(self, now: float, *, waited: bool = False) -> bool:
        """Take one token at ``now`` if one is free; return whether it did.

        A refusal counts as a wait unless ``waited``: a caller that was refused, slept
        until :meth:`next_at` and lost the token to another caller passes ``waited=True``,
        so ``waits`` counts callers that had to wait, not attempts.
        """
        self._seen = max(self._seen, now)
        if now < self._free - _SAME_INSTANT:
            if not waited:
                self._waits += 1
            return False
        self._free = max(self._free, now - self._slack) + self._interval
        self._taken += 1
        return True

    def next_at(self, now: float) -> float:
        """The loop time at which a token is free: ``now`` when one is free now."""
        self._seen = max(self._seen, now)
        return now if now >= self._free - _SAME_INSTANT else self._free

    def slow_down(self, now: float, seconds: float) -> None:
        """Hand out no token before ``now + seconds``; then one, then ``rate`` per second.

        Overlapping slow-downs keep the latest end. A negative ``seconds`` counts as 0;
        the caller bounds what a store may ask for.

        Raises:
            ValueError: ``seconds`` is not a finite number (a caller bug).
        """
        if not is_number(seconds):
            msg = f"slow_down: seconds must be a finite number, got {seconds!r}"
            raise ValueError(msg)
        self._seen = max(self._seen, now)
        self._slowdowns += 1
        end = now + max(seconds, 0.0)
        if self._paused_until is None or end > self._paused_until:
            self._paused_until = end
        # At the end one token, not a burst into a store that just pushed back.
        self._free = max(self._free, end)

    def statistics(self) -> RateLimitStatistics:
        return RateLimitStatistics(
            rate=self._rate,
            burst=self._burst,
            taken=self._taken,
            waits=self._waits,
            slowdowns=self._slowdowns,
            paused_until=self._paused_until,
        )

    def __repr__(self) -> str:
        tokens = self._burst
        if not math.isinf(self._free):
            tokens = min(tokens, (self._seen - self._free) * self._rate + 1.0)
        paused = ""
        if self._paused_until is not None and self._paused_until > self._seen:
            paused = f" paused until {self._paused_until:g}"
        return (
            f"<TokenBucket {self._rate:g}/s burst={self._burst:g}"
            f" tokens={max(tokens, 0.0):.1f} taken={self._taken} waits={self._waits}{paused}>"
        )


# ------------------------------------------------------------------------ options


def _key(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _table(
    owner: str, field: str, mapping: object, allowed: tuple[str, ...], required: tuple[str, ...]
) -> dict[str, Any]:
    """Check a job-file table: a mapping with only ``allowed`` keys and the ``required`` ones.

    A key whose value is ``None`` counts as absent (the Python API's "not given").
    """
    if not isinstance(mapping, Mapping):
        msg = f"{owner}: {field} must be a table with {', '.join(allowed)}, got {mapping!r}"
        raise ConfigError(msg)
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = _key(field, str(key))
            msg = f"{owner}: {where}: unknown key; {hint}(allowed: {', '.join(allowed)})"
            raise ConfigError(msg)
    values = {k: v for k, v in mapping.items() if v is not None}
    for key in required:
        if key not in values:
            msg = f"{owner}: {_key(field, key)}: missing required field"
            raise ConfigError(msg)
    return values


@final
@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """The ``rate_limit`` and ``burst`` options of a lookup: one token bucket for its calls.

    Attributes:
        rate: calls per second to the store (``rate_limit``), a number > 0.
        burst: the bucket size, a number >= 1; ``None``: ``max(1, rate / 10)``.

    Raises:
        ConfigError: a field is out of range, named as the option (``rate_limit``).

    >>> RateLimitSpec(500).build()
    <TokenBucket 500/s burst=50 tokens=50.0 taken=0 waits=0>
    >>> RateLimitSpec.from_mapping("job.toml", {"rate_limit": 0}, field="lookup[0]")
    Traceback (most recent call last):
    asyncwait.errors.ConfigError: job.toml: lookup[0].rate_limit must be a number > 0, got 0
    """

    rate: float
    burst: float | None = None

    def __post_init__(self) -> None:
        rate, burst = self._checked("RateLimitSpec", "", self.rate, self.burst)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "burst", burst)

    @staticmethod
    def _checked(owner: str, field: str, rate: object, burst: object) -> tuple[float, float | None]:
        checked = _number(owner, _key(field, "rate_limit"), rate, low=0.0, strict=True)
        if burst is None:
            return checked, None
        return checked, _number(owner, _key(field, "burst"), burst, low=1.0, strict=False)

    @classmethod
    def from_mapping(cls, owner: str, mapping: object, *, field: str = "") -> RateLimitSpec:
        """Build from a table holding ``rate_limit`` and, optionally, ``burst``.

        Args:
            owner: where the table came from, for messages (a job file, ``lookup join``).
            mapping: ``{"rate_limit": ..., "burst": ...}``; a ``None`` value is absent,
                so ``burst`` without ``rate_limit`` is refused.
            field: the dotted path of the table holding them (``lookup[0]``).

        Raises:
            ConfigError: a key is unknown, missing or out of range; it is named.
        """
        values = _table(owner, field, mapping, ("rate_limit", "burst"), ("rate_limit",))
        # Checked here first so that a message names the job-file field, not the class.
        return cls(*cls._checked(owner, field, values["rate_limit"], values.get("burst")))

    def build(self) -> TokenBucket:
        """A new, full bucket."""
        return TokenBucket(self.rate, self.burst)


@final
@dataclass(frozen=True, slots=True)
class AdaptiveSpec:
    """The ``adaptive = { min, max }`` option of a lookup: an adaptive concurrency limit.

    Attributes:
        min: the lowest limit on calls in flight, an int >= 1.
        max: the highest, an int >= ``min``; it must not exceed the lookup's capacity
            (:meth:`check_capacity`).

    Raises:
        ConfigError: a bound is out of range or ``min > max`` (``adaptive.min`` named).

    >>> AdaptiveSpec(4, 200).build().limit
    4
    >>> AdaptiveSpec.from_mapping("job.toml", {"min": 8, "max": 4}, field="lookup[0].adaptive")
    Traceback (most recent call last):
    asyncwait.errors.ConfigError: job.toml: lookup[0].adaptive.min must be <= ...max, got ...
    """

    min: int
    max: int

    def __post_init__(self) -> None:
        self._checked("AdaptiveSpec", "adaptive", self.min, self.max)

    @staticmethod
    def _checked(owner: str, field: str, low: object, high: object) -> tuple[int, int]:
        lo = check_int(owner, _key(field, "min"), low)
        hi = check_int(owner, _key(field, "max"), high)
        if lo > hi:
            names = f"{_key(field, 'min')} must be <= {_key(field, 'max')}"
            msg = f"{owner}: {names}, got min = {lo}, max = {hi}"
            raise ConfigError(msg)
        return lo, hi

    @classmethod
    def from_mapping(
        cls, owner: str, mapping: object, *, field: str = "adaptive", capacity: int | None = None
    ) -> AdaptiveSpec:
        """Build from ``{"min": ..., "max": ...}``; an ``AdaptiveSpec`` is taken as is.

        Args:
            owner: where the table came from, for messages (a job file, ``lookup join``).
            mapping: the table, or an ``AdaptiveSpec`` (the Python API takes either).
            field: the table's dotted path (``lookup[0].adaptive``).
            capacity: the lookup's capacity, if known: ``max`` must not exceed it.

        Raises:
            ConfigError: a key is unknown, missing or out of range, ``min > max``, or
                ``max > capacity``.
        """
        if isinstance(mapping, cls):
            spec = mapping
        else:
            values = _table(owner, field, mapping, ("min", "max"), ("min", "max"))
            spec = cls(*cls._checked(owner, field, values["min"], values["max"]))
        if capacity is not None:
            spec.check_capacity(owner, capacity, field=field)
        return spec

    def check_capacity(self, owner: str, capacity: int, *, field: str = "adaptive") -> None:
        """Raise :class:`ConfigError` if ``max`` exceeds the lookup's ``capacity``."""
        if self.max > capacity:
            msg = f"{owner}: {_key(field, 'max')} must be <= capacity ({capacity}), got {self.max}"
            raise ConfigError(msg)

    def build(self) -> ConcurrencyLimit:
        """A new limit, starting at ``min``."""
        return ConcurrencyLimit(self.min, self.max)


@final
@dataclass(frozen=True, slots=True)
class BreakerSpec:
    """The ``circuit_breaker = { failure_ratio, min_calls, open_for }`` option of a lookup.

    Attributes:
        failure_ratio: the failure ratio over the window that opens the breaker, in (0, 1].
        min_calls: the window: the last ``min_calls`` calls (an int >= 1).
        open_for: seconds the breaker stays open before it probes, a number > 0.

    Raises:
        ConfigError: a field is out of range (``circuit_breaker.open_for`` named).

    >>> BreakerSpec(0.5, 20, 5.0).build()
    <CircuitBreaker closed 0/0 failed of last 20 openings=0 rejected=0>
    >>> BreakerSpec.from_mapping("job.toml", {"min_calls": 20}, field="lookup[1].circuit_breaker")
    Traceback (most recent call last):
    asyncwait.errors.ConfigError: job.toml: lookup[1].circuit_breaker.failure_ratio: missing ...
    """

    failure_ratio: float
    min_calls: int
    open_for: float

    def __post_init__(self) -> None:
        ratio, _, open_for = self._checked(
            "BreakerSpec", "circuit_breaker", self.failure_ratio, self.min_calls, self.open_for
        )
        object.__setattr__(self, "failure_ratio", ratio)
        object.__setattr__(self, "open_for", open_for)

    @staticmethod
    def _checked(
        owner: str, field: str, ratio: object, min_calls: object, open_for: object
    ) -> tuple[float, int, float]:
        return (
            check_ratio(owner, _key(field, "failure_ratio"), ratio),
            check_int(owner, _key(field, "min_calls"), min_calls),
            check_seconds(owner, _key(field, "open_for"), open_for),
        )

    @classmethod
    def from_mapping(
        cls, owner: str, mapping: object, *, field: str = "circuit_breaker"
    ) -> BreakerSpec:
        """Build from the table; a ``BreakerSpec`` is returned as is.

        Args:
            owner: where the table came from, for messages (a job file, ``lookup join``).
            mapping: ``{"failure_ratio": ..., "min_calls": ..., "open_for": ...}`` (all
                required), or a ``BreakerSpec``.
            field: the table's dotted path (``lookup[0].circuit_breaker``).

        Raises:
            ConfigError: a key is unknown, missing or out of range; it is named.
        """
        if isinstance(mapping, cls):
            return mapping
        keys = ("failure_ratio", "min_calls", "open_for")
        values = _table(owner, field, mapping, keys, keys)
        return cls(*cls._checked(owner, field, *(values[key] for key in keys)))

    def build(self) -> CircuitBreaker:
        """A new, closed breaker."""
        return CircuitBreaker(self.failure_ratio, self.min_calls, self.open_for)
