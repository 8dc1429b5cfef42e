"""The resilience fields of a ``[[lookup]]``, read and checked against each other (private).

``on_error``, ``default``, ``attempt_timeout``, ``rate_limit``, ``burst``, ``adaptive`` and
``circuit_breaker`` (``retry.on_miss`` is read with the retry). A contradiction names the
field it comes from: ``attempt_timeout`` not below ``timeout``, ``default`` without
``on_error = "default"`` (or the reverse), ``adaptive.max`` above ``capacity``, a retry on a
miss without retries or with a cache that keeps misses.
"""

from __future__ import annotations

from typing import Final

from .._flow import AdaptiveSpec, BreakerSpec, RateLimitSpec
from ._spec import CacheSpec, Resilience, RetrySpec
from ._table import Table, kind_of

__all__ = ("RESILIENCE_FIELDS", "read_resilience")

RESILIENCE_FIELDS: Final = (
    "on_error", "default", "attempt_timeout", "rate_limit", "burst", "adaptive",
    "circuit_breaker",
)  # fmt: skip
_ON_ERROR: Final = ("fail", "skip", "dead_letter", "default")


def read_resilience(
    lk: Table,
    *,
    capacity: int,
    timeout: float | None,
    retry: RetrySpec | None,
    cache: CacheSpec | None,
) -> Resilience:
    """Read the resilience fields of ``[[lookup]]`` table ``lk``.

    Raises:
        ConfigError: a bad value or a contradiction, naming the file and the field.
    """
    owner = str(lk.file)
    on_error = lk.text("on_error", choices=_ON_ERROR) or "fail"
    default = lk.data.get("default")
    if default is not None and not isinstance(default, dict):
        lk.fail(lk.field("default"), f"expected a table, got {kind_of(default)} {default!r}")
    if default is not None and on_error != "default":
        lk.fail(
            lk.field("default"),
            f'only used with on_error = "default" (on_error is "{on_error}")',
        )
    if on_error == "default" and default is None:
        lk.fail(lk.field("on_error"), '"default" needs default = { column = value, ... }')
    attempt = lk.number("attempt_timeout", positive=True)
    if attempt is not None and timeout is not None and attempt >= timeout:
        lk.fail(
            lk.field("attempt_timeout"),
            f"must be shorter than timeout ({timeout:g} s), the element's whole deadline; "
            f"got {attempt:g}",
        )
    rate = None
    if lk.has("rate_limit") or lk.has("burst"):
        if not lk.has("rate_limit"):
            lk.fail(lk.field("burst"), "only used with rate_limit")
        limits = {"rate_limit": lk.data["rate_limit"], "burst": lk.data.get("burst")}
        rate = RateLimitSpec.from_mapping(owner, limits, field=lk.name)
    adaptive = None
    if lk.has("adaptive"):
        adaptive = AdaptiveSpec.from_mapping(owner, lk.data["adaptive"], field=lk.field("adaptive"))
        if adaptive.max > capacity:
            lk.fail(lk.field("adaptive"), f"max ({adaptive.max}) must be <= capacity ({capacity})")
    breaker = None
    if lk.has("circuit_breaker"):
        raw = lk.data["circuit_breaker"]
        breaker = BreakerSpec.from_mapping(owner, raw, field=lk.field("circuit_breaker"))
    if retry is not None and retry.on_miss:
        if retry.max_retries < 1:
            lk.fail(lk.field("retry"), "on_miss needs max_retries >= 1 (a miss is asked again)")
        if cache is not None and (cache.type == "full" or cache.miss_ttl is not None):
            lk.fail(
                lk.field("retry"),
                "on_miss cannot work with a cache that keeps misses (a full cache, or an lru "
                "cache with miss_ttl): the retry would find the cached miss",
            )
    return Resilience(
        on_error=on_error,
        default=default,
        attempt_timeout=attempt,
        rate_limit=rate,
        adaptive=adaptive,
        circuit_breaker=breaker,
    )
