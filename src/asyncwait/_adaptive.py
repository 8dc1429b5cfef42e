"""Adaptive concurrency: how many calls to a store may be in flight (private).

:class:`ConcurrencyLimit` moves a limit between ``min`` and ``max`` from what the store
shows. Like the queues it is a plain synchronous object, with no awaits, tasks or clock: the
caller passes ``now`` (loop time, float seconds) and reports how each call ended.

Why this algorithm: a store's latency is flat while it has room and rises once requests
queue. Past that knee more calls only add latency, and on a store whose latency grows per
queued request (5 ms up to K in flight, +2 ms per extra one: the resilience benchmark's)
a single call over K costs a quarter of the throughput. AIMD alone finds no knee until the
store errs, and a Vegas/gradient rule with a 1.5-2x latency tolerance settles one or two
calls past it. So the limit is a hill climb on Little's law (throughput ~ limit / latency)
that remembers the last good level, with AIMD's cut for overload:

* **Rounds.** One verdict per round: at least ``ROUND`` calls and half the limit, counting
  only calls that started (``now - latency``) after the limit last changed *and* filled,
  and only once a call that started after the round's first answer has answered too. The
  first round after an increase only warms up: on a real event loop the calls that filled
  the new limit start in one loop iteration and answer together, fastest first.
* **Robust.** A round's latency is the mean of its fastest ``KEPT`` share: the slowest
  calls on a real loop carry the client's own lag (other callbacks, a collection), which is
  no queueing at the store; the lag of a busy loop is still seen through the throughput
  estimate ``limit / latency``.
* **Good.** A round is good when its latency stays within ``TOLERANCE`` of the baseline
  (the lowest round latency) and its ``limit / latency`` is not ``DROP`` below the good
  level's. ``STRIKES`` rounds in a row at the good level that queue cut it to where the
  latency would be within tolerance (0.5-0.9); if the next round is no faster, the store
  itself got slower: new baseline.
* **Probes.** At first the limit grows by ``START`` per good round. After the first
  failed probe it holds ``HOLD`` rounds at the good level, then probes alternately one
  below (kept only if clearly better: the climb overshot the knee) and above (+1, +2,
  +4 ... while each does as well, each at most ``GROWTH``). A failed probe returns to
  the good level; one call of an upward probe slower than ``EARLY`` x baseline ends it
  at once. Probing costs about two rounds (warm-up and verdict) in ``HOLD``.
* **Overload.** A 429/503/Retry-After or a timeout cuts to ``BACKOFF`` (by one at least),
  at most once per round-trip, and caps later probes at that level (the store's answer
  lags behind its own burst allowance) until ``CALM`` rounds pass, when the cap rises 10%.

::

    limit        overshoot: back to good              429: x0.9, capped
      │              ╭╮                  ╭╮               ╭─╮
      │          ╭───╯╰──────╮╭──────────╯╰─────╮╭────────╯ ╰─╮  ╭────
      │      ╭───╯    hold   ╰╯  hold    +1     ╰╯ hold  +1+2 ╰──╯
      │  ╭───╯ x1.5         -1 (kept)                -1
      └──┴─────────────────────────────────────────────────────────► time

``tests/unit/test_adaptive.py`` runs it in a discrete-event simulation of that store (with
and without a rate limit) against the best fixed limit found by a sweep.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final, final

from ._checks import check_int
from .errors import ConfigError

__all__ = ("ConcurrencyLimit", "ConcurrencyStatistics")

TOLERANCE: Final = 1.5  # a round's latency over baseline x this: requests are queueing
EARLY: Final = 3.0  # one call of a probe over baseline x this fails the probe at once
ROUND: Final = 8  # the fewest calls in a round (a round is at least half the limit)
# The share of a round's calls, fastest first, whose mean is the round's latency: the
# slowest calls of a round on a real event loop carry the loop's own lag (a callback, a
# collection, another task's burst), which is no queueing at the store.
KEPT: Final = 0.75
STRIKES: Final = 2  # consecutive queueing rounds at the good level before a cut
DROP: Final = 0.05  # a probe whose throughput estimate is this much below the good level's failed
GROWTH: Final = 1.25  # the most an upward probe adds after the first failed one (at least +1)
START: Final = 1.5  # growth per good round before the first failed probe (at least +1)
HOLD: Final = 16  # good rounds at the good level before probing above it again
BACKOFF: Final = 0.9  # the cut on overload and timeouts (and the least cut on queueing)
CALM: Final = 64  # rounds without overload after which its level no longer caps the probes
SETTLED: Final = 0.9  # a cut that left latency above this x before: the store itself is slower
_SAME_INSTANT: Final = 1e-9  # seconds: calls started this close to the fill time count as before
# Seconds: the shortest latency measured. A round of zero latency (a store answering within
# one tick of a virtual clock) would make the baseline 0, and every later round "queueing".
_FLOOR: Final = 1e-6


class _Phase(enum.Enum):
    """What the current round is testing."""

    START = "start"  # no probe has failed yet: grow by GROWTH per good round
    HOLD = "hold"  # at the good level, counting rounds to the next probe
    UP = "up"  # above the good level: +1, +2, +4 ... while each does as well
    DOWN = "down"  # one below the good level: kept only if it does clearly better


@final
@dataclass(frozen=True, slots=True)
class ConcurrencyStatistics:
    """A snapshot of a :class:`ConcurrencyLimit`.

    Attributes:
        limit: calls that may be in flight now.
        increases: times the limit went up.
        decreases: times the limit went down (failed probes, overload, timeouts, queueing).
        min_latency: the latency baseline in seconds: the lowest round latency, reset when the
            store became slower for good (``None`` before the first round).
        recent_latency: the last round's latency in seconds (``None`` before it).
        overloads: ``on_overload`` calls; timeouts: ``on_timeout`` calls; errors:
            ``on_error`` calls.
    """

    limit: int
    increases: int
    decreases: int
    min_latency: float | None
    recent_latency: float | None
    overloads: int
    timeouts: int
    errors: int


@final
class ConcurrencyLimit:
    """An adaptive limit on the calls in flight to one store, between ``min`` and ``max``.

    The caller asks :meth:`acquire_ok` before each call and reports how each call ended:
    :meth:`on_success` with its latency, :meth:`on_overload` (the store said 429/503 or
    sent Retry-After), :meth:`on_timeout` (an attempt was abandoned) or :meth:`on_error`
    (any other failure: neutral, since a failing store is the circuit breaker's business).
    The object never waits and never reads a clock; lowering the limit never cancels a
    call, it only refuses new ones until fewer are in flight. The limit only grows while
    callers fill it. The algorithm is described in the module docstring.

    Args:
        min: the lowest limit (an int >= 1).
        max: the highest limit (an int >= ``min``); at most the operator's capacity.
        initial: the limit to start from (default ``min``).

    Raises:
        ConfigError: a bound is not an int >= 1, ``min > max``, or ``initial`` is outside.

    >>> limit = ConcurrencyLimit(1, 8)
    >>> limit.acquire_ok(0.0, 0), limit.acquire_ok(0.0, 1)
    (True, False)
    >>> for ms in range(5, 50, 5):  # one call at a time, 5 ms each
    ...     limit.on_success(ms / 1000, 0.005)
    ...     ok = limit.acquire_ok(ms / 1000, 0)
    >>> limit.limit  # eight calls ran at the full limit: a good round
    2
    """

    __slots__ = (
        "_base",
        "_calm",
        "_ceiling",
        "_changed_at",
        "_cut_at",
        "_cut_latency",
        "_decreases",
        "_errors",
        "_first_end",
        "_full_at",
        "_good",
        "_good_rate",
        "_hold",
        "_increases",
        "_limit",
        "_max",
        "_min",
        "_next",
        "_overloads",
        "_phase",
        "_recent",
        "_samples",
        "_settled",
        "_step",
        "_strikes",
        "_timeouts",
        "_warming",
    )

    def __init__(self, min: int, max: int, *, initial: int | None = None) -> None:
        lo = check_int("ConcurrencyLimit", "min", min)
        hi = check_int("ConcurrencyLimit", "max", max)
        if lo > hi:
            msg = f"ConcurrencyLimit: min must be <= max, got min = {lo}, max = {hi}"
            raise ConfigError(msg)
        first = check_int("ConcurrencyLimit", "initial", initial, optional=True)
        if first is not None and not lo <= first <= hi:
            msg = f"ConcurrencyLimit: initial must be from {lo} to {hi}, got {first}"
            raise ConfigError(msg)
        self._min = lo
        self._max = hi
        self._limit = lo if first is None else first
        self._phase = _Phase.START
        self._good = self._limit  # the highest limit whose last round was good
        self._good_rate = 0.0  # limit / latency at the good level; 0.0: not measured yet
        self._step = 1  # the next UP probe's increase; doubles per good UP probe
        self._hold = 0  # good rounds left at the good level before the next probe
        self._next = _Phase.UP  # the direction of the next probe (UP or DOWN)
        self._cut_latency: float | None = None  # the round latency that made the last cut
        # The lowest limit the store recently answered with overload or timeouts, and the
        # rounds since: the store's answer lags (its own burst), so probes stop there.
        self._ceiling: int | None = None
        self._calm = 0
        # The current round: calls started after the limit filled (_full_at) since the last
        # change (_changed_at); only those ran with the current limit in flight.
        self._changed_at = -math.inf
        # When the limit last went down: answers to calls started before it came from the
        # higher limit and must not cut again (every round restarts at _changed_at, even
        # when the limit stays, so that one cannot serve: it would hide most overloads).
        self._cut_at = -math.inf
        self._full_at: float | None = None
        self._samples: list[float] = []
        # When the round's first call ended, and whether a call started since then has
        # ended too: see on_success.
        self._first_end: float | None = None
        self._settled = False
        # The first round at a new limit only warms it up: on a real loop the calls of the
        # wave that filled it start and end together, and only the later waves spread out
        # and show the store's answer to the new limit.
        self._warming = False
        self._strikes = 0  # consecutive queueing rounds at the good level
        self._base: float | None = None
        self._recent: float | None = None
        self._increases = 0
        self._decreases = 0
        self._overloads = 0
        self._timeouts = 0
        self._errors = 0

    @property
    def limit(self) -> int:
        """Calls that may be in flight now."""
        return self._limit

    def acquire_ok(self, now: float, in_flight: int) -> bool:
        """Whether one more call may start at ``now`` while ``in_flight`` calls run."""
        if self._full_at is None and in_flight + 1 >= self._limit:
            self._full_at = now  # callers fill the limit: from now on a call measures it
        return in_flight < self._limit

    def on_success(self, now: float, latency: float) -> None:
        """A call that started at ``now - latency`` succeeded at ``now``."""
        latency = max(latency, 0.0)
        started = now - latency
        if started <= self._changed_at + _SAME_INSTANT:
            return  # it started under an older limit
        base = self._base
        if self._limit > self._good and base is not None and latency > base * EARLY:
            self._fall_back(now, _Phase.DOWN)  # one slow call of a probe is enough
            return
        full = self._full_at
        if full is None or started <= full + _SAME_INSTANT:
            return  # it started with fewer calls in flight than the limit
        samples = self._samples
        samples.append(max(latency, _FLOOR))
        # The first answers after the limit filled are the fastest calls of the wave that
        # filled it; on a real loop a whole wave starts in one iteration, and the calls
        # past the knee are its slowest. A verdict waits for a call that started after
        # an answer (so with the limit truly in flight) and that one call's answer.
        if self._first_end is None:
            self._first_end = now
        elif started > self._first_end:
            self._settled = True
        if self._settled and len(samples) >= max(ROUND, self._limit // 2):
            self._end_round(now)

    def on_overload(self, now: float) -> None:
        """The store refused a call as overloaded (429, 503, or a Retry-After) at ``now``."""
        self._overloads += 1
        self._refused(now)

    def on_timeout(self, now: float) -> None:
        """A call was abandoned at ``now`` after its attempt timeout."""
        self._timeouts += 1
        self._refused(now)

    def on_error(self, now: float) -> None:
        """A call failed at ``now`` for another reason; the limit does not move."""
        self._errors += 1

    def _refused(self, now: float) -> None:
        self._calm = 0
        limit = self._limit
        if self._back_off(now, BACKOFF):
            self._ceiling = limit

    def _end_round(self, now: float) -> None:
        if self._warming:
            self._warming = False
            self._changed_at, self._samples = now, []
            self._first_end, self._settled = None, False
            return
        samples = sorted(self._samples)
        del samples[max(1, math.ceil(len(samples) * KEPT)) :]
        latency = sum(samples) / len(samples)
        self._recent = latency
        self._calm += 1
        if self._ceiling is not None and self._calm >= CALM:
            self._ceiling += max(1, self._ceiling // 10)  # calm for long: may be more now
            self._calm = 0
        base = self._base
        queueing = base is not None and latency > base * TOLERANCE
        if base is None or latency < base:
            self._base = latency
        rate = self._limit / latency  # Little's law; latency >= _FLOOR
        strikes, self._strikes = self._strikes, 0
        phase = self._phase
        if phase is _Phase.UP or (phase is _Phase.START and self._limit > self._good):
            if queueing or rate < self._good_rate * (1 - DROP):
                self._fall_back(now, _Phase.DOWN)
                return
            self._good, self._good_rate = self._limit, rate
            self._step *= 2 if phase is _Phase.UP else 1
            self._grow(now)
        elif phase is _Phase.DOWN:
            if queueing or rate <= self._good_rate * (1 + DROP):
                self._fall_back(now, _Phase.UP)
                return
            self._good, self._good_rate = self._limit, rate
            self._set(self._limit - 1, now)  # better: try one lower still
        elif queueing and strikes + 1 < STRIKES:
            # One slow round alone may be the client's lag: measure the same level again.
            self._strikes = strikes + 1
            self._set(self._limit, now)
        elif queueing and self._cut_latency is not None and latency > self._cut_latency * SETTLED:
            # The last cut did not bring latency down: the store is slower, not queueing.
            self._base, self._cut_latency = latency, None
            self._set(self._limit, now)
        elif queueing:
            assert base is not None  # queueing needs a baseline
            # Cut to where the latency would be within tolerance if it grew with the calls
            # in flight: a level just past the knee loses little, a runaway one half.
            self._back_off(now, base * TOLERANCE / latency, gated=False)
            self._cut_latency = latency
        else:  # a good round at the good level
            self._good_rate, self._cut_latency = rate, None
            if self._hold > 0:
                self._hold -= 1
                self._set(self._limit, now)
            elif self._next is _Phase.DOWN and self._limit > self._min:
                self._phase, self._next = _Phase.DOWN, _Phase.UP
                self._set(self._limit - 1, now)
            else:
                self._grow(now)

    def _grow(self, now: float) -> None:
        """Probe above the good level: by GROWTH at the start, then by the step."""
        most = max(1, int(self._limit * (GROWTH - 1)))  # bounds the cost of an overshoot
        if self._phase is _Phase.START:
            step = max(1, int(self._limit * (START - 1)))
        else:
            self._phase, step = _Phase.UP, min(self._step, most)
        grown = self._limit + step
        if self._ceiling is not None and grown > self._ceiling:
            grown, self._step = max(self._limit, self._ceiling), 1
        self._set(grown, now)

    def _fall_back(self, now: float, then: _Phase) -> None:
        """The probe did worse than the good level: go back, hold, then probe ``then``."""
        self._phase, self._next, self._hold, self._step = _Phase.HOLD, then, HOLD, 1
        self._set(self._good, now)

    def _back_off(self, now: float, factor: float, *, gated: bool = True) -> bool:
        """Cut the limit to ``factor`` (between 0.5 and BACKOFF) times, by one at least.

        With ``gated``, at most once per round-trip after the last decrease: the answers
        still in flight were caused by the higher limit. Returns whether it cut.
        """
        if gated and now - self._cut_at < (self._recent or self._base or 0.0):
            return False
        factor = max(0.5, min(BACKOFF, factor))
        cut = max(self._min, min(self._limit - 1, math.floor(self._limit * factor)))
        if cut < self._good:
            self._good, self._good_rate = cut, 0.0  # measure the new good level afresh
        self._phase, self._next, self._hold, self._step = _Phase.HOLD, _Phase.UP, HOLD, 1
        self._set(cut, now)
        return True

    def _set(self, limit: int, now: float) -> None:
        """Set the limit (within bounds) and start a new round."""
        limit = max(self._min, min(self._max, limit))
        if limit > self._limit:
            self._increases += 1
        elif limit < self._limit:
            self._decreases += 1
            self._cut_at = now
        self._warming = limit > self._limit
        self._limit = limit
        self._changed_at = now
        self._full_at = None
        self._samples = []
        self._first_end = None
        self._settled = False

    def statistics(self) -> ConcurrencyStatistics:
        return ConcurrencyStatistics(
            limit=self._limit,
            increases=self._increases,
            decreases=self._decreases,
            min_latency=self._base,
            recent_latency=self._recent,
            overloads=self._overloads,
            timeouts=self._timeouts,
            errors=self._errors,
        )

    def __repr__(self) -> str:
        base = "-" if self._base is None else f"{self._base * 1000:.1f}ms"
        recent = "-" if self._recent is None else f"{self._recent * 1000:.1f}ms"
        return (
            f"<ConcurrencyLimit limit={self._limit} ({self._min}..{self._max})"
            f" {self._phase.value} good={self._good} latency={recent} min={base}>"
        )
