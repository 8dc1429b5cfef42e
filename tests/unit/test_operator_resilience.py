"""The operator's resilience options: on_error routing and per-attempt timeouts (virtual time)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asyncwait import (
    AsyncFunctionError,
    AsyncWaitOperator,
    AttemptTimeoutError,
    CircuitOpenError,
    ConfigError,
    OnError,
    OutputMode,
    Record,
    StreamElement,
)
from asyncwait.retry import fixed_delay
from tests.helpers import Gate, plain, settle

pytestmark = pytest.mark.looptime


async def run_all(op: AsyncWaitOperator[Any, Any], values: list[Any], **open_kw: Any) -> list[Any]:
    out: list[StreamElement] = []
    await op.open(out.append, **open_kw)
    for value in values:
        await op.process_element(Record(value))
    await op.end_input()
    await op.close()
    return plain(out)


async def flaky(value: int) -> int:
    if value % 3 == 0:
        raise ConnectionError(f"store down for {value}")
    return value * 10


@pytest.mark.parametrize("mode", list(OutputMode))
async def test_skip_drops_failed_elements_and_counts_them(mode: OutputMode) -> None:
    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        flaky, mode=mode, key=lambda v: v % 2, on_error="skip"
    )
    out = await run_all(op, list(range(1, 10)))
    assert sorted(out) == [10, 20, 40, 50, 70, 80]
    stats = op.statistics()
    assert (stats.skipped, stats.failures, stats.dead_letters, stats.defaulted) == (3, 3, 0, 0)


async def test_default_emits_the_default_of_a_failed_element() -> None:
    op: AsyncWaitOperator[int, Any] = AsyncWaitOperator(
        flaky, on_error=OnError.DEFAULT, default=lambda value, error: [("default", value)]
    )
    out = await run_all(op, [1, 3, 4])
    assert out == [10, ("default", 3), 40]
    assert op.statistics().defaulted == 1


async def test_dead_letters_go_to_the_callback_with_the_reason_and_attempts() -> None:
    letters: list[tuple[Any, str, int]] = []
    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        flaky, on_error="dead_letter", retry=fixed_delay(2, 0.5)
    )
    out = await run_all(
        op,
        [1, 3, 4],
        dead_letter=lambda element, error, attempts: letters.append(
            (element.value, str(error), attempts)
        ),
    )
    assert out == [10, 40]
    assert letters == [(3, "store down for 3", 3)]  # one call and two retries
    assert op.statistics().dead_letters == 1


async def test_dead_letter_without_a_place_is_refused_at_open() -> None:
    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(flaky, on_error="dead_letter")
    with pytest.raises(ConfigError, match=r"needs open\(dead_letter=...\)"):
        await op.open(lambda element: None)


async def test_a_dead_letter_callback_that_raises_fails_the_element_after_all() -> None:
    def full(element: StreamElement, error: BaseException, attempts: int) -> None:
        raise RuntimeError("errors file full")

    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(flaky, on_error="dead_letter")
    out: list[StreamElement] = []
    await op.open(out.append, dead_letter=full)
    await op.process_element(Record(3))
    with pytest.raises(AsyncFunctionError, match="errors file full"):
        await op.end_input()
    await op.close()


async def test_a_timed_out_element_is_routed_like_a_failed_one(gate: Gate) -> None:
    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(gate, timeout=2.0, on_error="skip")
    out: list[StreamElement] = []
    await op.open(out.append)
    await op.process_element(Record(1))
    await op.process_element(Record(2))
    await settle()
    gate.release(2)
    await op.end_input()  # 1 never answers: its deadline routes it
    await op.close()
    assert plain(out) == [2]
    assert op.statistics().timeouts == 1
    assert op.statistics().skipped == 1


async def test_a_circuit_open_error_is_never_retried() -> None:
    calls: list[int] = []

    async def refused(value: int) -> int:
        calls.append(value)
        raise CircuitOpenError("breaker open")

    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        refused, retry=fixed_delay(5, 0.1), on_error="skip"
    )
    assert await run_all(op, [1, 2]) == []
    assert calls == [1, 2]
    assert op.statistics().retries == 0


async def test_a_slow_attempt_is_abandoned_and_retried_within_the_deadline() -> None:
    started: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()

    async def slow_first(value: int) -> int:
        started.append((loop.time(), value))
        if len([s for s in started if s[1] == value]) == 1:
            await asyncio.sleep(100)  # the first attempt hangs
        return value

    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        slow_first, timeout=10.0, attempt_timeout=1.0, retry=fixed_delay(3, 0.5)
    )
    assert await run_all(op, [7]) == [7]
    assert [round(t, 3) for t, _ in started] == [0.0, 1.5]  # 1 s attempt + 0.5 s backoff
    assert op.statistics().attempt_timeouts == 1
    assert op.statistics().retries == 1


async def test_attempts_that_keep_timing_out_end_at_the_last_retry() -> None:
    async def hang(value: int) -> int:
        await asyncio.sleep(100)
        return value

    failures: list[BaseException] = []
    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        hang, attempt_timeout=1.0, retry=fixed_delay(2, 0.0), on_error="dead_letter"
    )
    out = await run_all(
        op, [1], dead_letter=lambda element, error, attempts: failures.append(error)
    )
    assert out == []
    assert len(failures) == 1
    assert isinstance(failures[0], AttemptTimeoutError)
    assert str(failures[0]) == "attempt 3 timed out after 1.0 s"
    assert op.statistics().attempt_timeouts == 3


async def test_the_element_deadline_still_bounds_all_attempts() -> None:
    async def hang(value: int) -> int:
        await asyncio.sleep(100)
        return value

    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        hang, timeout=2.5, attempt_timeout=1.0, retry=fixed_delay(10, 0.0), on_error="skip"
    )
    loop = asyncio.get_running_loop()
    assert await run_all(op, [1]) == []
    assert round(loop.time(), 3) == 2.5
    stats = op.statistics()
    assert (stats.timeouts, stats.attempt_timeouts, stats.skipped) == (1, 2, 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempt_timeout": 2.0, "timeout": 1.0}, "attempt_timeout .* must be shorter than"),
        ({"attempt_timeout": 0}, "attempt_timeout must be a number of seconds > 0"),
        ({"on_error": "retry"}, "on_error must be one of 'fail', 'skip'"),
        ({"on_error": "default"}, "on_error 'default' needs default="),
        ({"default": lambda v, e: [v]}, "default is given but on_error is 'fail'"),
    ],
)
def test_contradictory_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AsyncWaitOperator(flaky, name="op", **options)
