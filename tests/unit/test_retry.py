import asyncio
import dataclasses
import math
import random
from typing import Any

import pytest

from asyncwait import NO_RETRY, AsyncWaitOperator
from asyncwait.retry import (
    ANY_EXCEPTION,
    EMPTY_RESULT,
    ExponentialBackoff,
    FixedDelay,
    NoRetry,
    RetryStrategy,
    exception_type,
    exponential_backoff,
    fixed_delay,
)


def test_no_retry_never_retries() -> None:
    assert isinstance(NO_RETRY, NoRetry)
    assert isinstance(NO_RETRY, RetryStrategy)
    assert NO_RETRY.max_retries == 0
    assert NO_RETRY.on_result is None
    assert NO_RETRY.on_exception is None


def test_fixed_delay_waits_the_same_every_time() -> None:
    strategy = fixed_delay(3, 0.5)
    assert isinstance(strategy, FixedDelay)
    assert strategy.max_retries == 3
    assert [strategy.backoff(k) for k in (1, 2, 3)] == [0.5, 0.5, 0.5]
    assert strategy.on_exception is ANY_EXCEPTION
    assert strategy.on_result is None


def test_exponential_backoff_grows_and_is_capped() -> None:
    strategy = exponential_backoff(6, 0.1, 1.0)
    assert isinstance(strategy, ExponentialBackoff)
    delays = [strategy.backoff(k) for k in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert strategy.on_exception is ANY_EXCEPTION
    assert strategy.on_result is None


@pytest.mark.parametrize(
    ("initial", "maximum", "multiplier"), [(0.1, 10.0, 3.0), (0.5, 2.0, 1.0), (1.0, 5.0, 1.5)]
)
def test_exponential_backoff_is_min_of_initial_times_power_and_max(
    initial: float, maximum: float, multiplier: float
) -> None:
    strategy = exponential_backoff(10, initial, maximum, multiplier)
    for k in range(1, 11):
        expected = min(initial * multiplier ** (k - 1), maximum)
        assert strategy.backoff(k) == pytest.approx(expected)


def test_exponential_backoff_survives_huge_retry_numbers() -> None:
    assert exponential_backoff(5000, 0.1, 30.0).backoff(5000) == 30.0


def test_backoff_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        exponential_backoff(3, 0.1, 1.0).backoff(0)


def test_jitter_multiplies_by_a_factor_drawn_from_the_injected_rng() -> None:
    strategy = exponential_backoff(5, 0.1, 1.0, jitter=0.5)
    for k, base in [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.0)]:
        expected = base * random.Random(k).uniform(0.5, 1.5)
        assert strategy.backoff(k, random.Random(k)) == pytest.approx(expected)


def test_jitter_stays_within_its_range_and_spreads() -> None:
    strategy = exponential_backoff(5, 0.2, 1.0, jitter=0.25)
    rng = random.Random(1234)
    delays = [strategy.backoff(2, rng) for _ in range(2000)]
    assert all(0.4 * 0.75 <= d <= 0.4 * 1.25 for d in delays)
    assert min(delays) < 0.4 * 0.8
    assert max(delays) > 0.4 * 1.2


def test_full_jitter_ranges_from_zero_to_double() -> None:
    strategy = exponential_backoff(1, 1.0, 1.0, jitter=1.0)
    rng = random.Random(99)
    delays = [strategy.backoff(1, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 2.0 for d in delays)
    assert min(delays) < 0.1
    assert max(delays) > 1.9


def test_no_jitter_ignores_the_rng() -> None:
    class Exploding(random.Random):
        def uniform(self, a: float, b: float) -> float:
            raise AssertionError("no jitter, no draw")

    assert exponential_backoff(2, 0.1, 1.0).backoff(2, Exploding()) == pytest.approx(0.2)


def test_strategies_are_immutable_values() -> None:
    strategy = exponential_backoff(3, 0.1, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        strategy.max_retries = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fixed_delay(1, 0.1).delay = 2.0  # type: ignore[misc]
    # Backoff is a pure function of the retry number: calling it changes nothing.
    before = [strategy.backoff(k) for k in (1, 2, 3)]
    assert [strategy.backoff(k) for k in (1, 2, 3)] == before
    assert strategy == exponential_backoff(3, 0.1, 1.0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: fixed_delay(-1, 0.1),
        lambda: fixed_delay(1, -0.1),
        lambda: fixed_delay(1, math.nan),
        lambda: fixed_delay(True, 0.1),
        lambda: fixed_delay(1.5, 0.1),  # type: ignore[arg-type]
        lambda: exponential_backoff(-1, 0.1, 1.0),
        lambda: exponential_backoff(1, -0.1, 1.0),
        lambda: exponential_backoff(1, 0.1, -1.0),
        lambda: exponential_backoff(1, 1.0, 0.5),
        lambda: exponential_backoff(1, 0.1, 1.0, 0.5),
        lambda: exponential_backoff(1, 0.1, 1.0, math.nan),
        lambda: exponential_backoff(1, 0.1, 1.0, jitter=-0.1),
        lambda: exponential_backoff(1, 0.1, 1.0, jitter=1.1),
    ],
    ids=[
        "fixed-negative-retries",
        "fixed-negative-delay",
        "fixed-nan-delay",
        "fixed-bool-retries",
        "fixed-float-retries",
        "exp-negative-retries",
        "exp-negative-initial",
        "exp-negative-max",
        "exp-max-below-initial",
        "exp-multiplier-below-1",
        "exp-nan-multiplier",
        "exp-negative-jitter",
        "exp-jitter-above-1",
    ],
)
def test_invalid_arguments_raise_value_error_at_construction(build: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any message; the type is the contract
        build()


def test_boundary_arguments_are_valid() -> None:
    assert fixed_delay(0, 0.0).backoff(1) == 0.0
    assert exponential_backoff(0, 0.0, 0.0, 1.0, jitter=0.0).max_retries == 0
    assert exponential_backoff(1, 0.1, 0.1, 1.0, jitter=1.0).jitter == 1.0


def test_empty_result_predicate() -> None:
    assert EMPTY_RESULT([]) is True
    assert EMPTY_RESULT(()) is True
    assert EMPTY_RESULT([None]) is False


def test_any_exception_predicate_never_retries_cancellation() -> None:
    assert ANY_EXCEPTION(ValueError()) is True
    assert ANY_EXCEPTION(TimeoutError()) is True
    assert ANY_EXCEPTION(asyncio.CancelledError()) is False
    assert ANY_EXCEPTION(KeyboardInterrupt()) is False


def test_exception_type_predicate() -> None:
    retry_io = exception_type(ConnectionError, TimeoutError)
    assert retry_io(ConnectionResetError()) is True
    assert retry_io(TimeoutError()) is True
    assert retry_io(KeyError()) is False
    assert "ConnectionError" in retry_io.__name__


@pytest.mark.parametrize("types", [(), (int,), ("ValueError",)])
def test_exception_type_needs_exception_classes(types: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError):
        exception_type(*types)


def test_predicates_are_kept_as_given() -> None:
    def on_result(result: Any) -> bool:
        return len(result) < 2

    strategy = exponential_backoff(2, 0.1, 1.0, on_result=on_result, on_exception=None)
    assert strategy.on_result is on_result
    assert strategy.on_exception is None
    fixed = fixed_delay(2, 0.1, on_result=EMPTY_RESULT, on_exception=exception_type(OSError))
    assert fixed.on_result is EMPTY_RESULT
    assert fixed.on_exception is not None
    assert fixed.on_exception(OSError())


def test_operator_rejects_a_retry_that_is_not_a_strategy() -> None:
    async def fn(value: int) -> int:
        return value

    with pytest.raises(ValueError, match="retry"):
        AsyncWaitOperator(fn, retry=3)  # type: ignore[arg-type]
