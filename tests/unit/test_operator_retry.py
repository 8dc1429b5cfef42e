"""Retries on the loop's virtual clock (looptime): attempts land at exact times."""

import asyncio
from typing import Any

import pytest

from asyncwait import AsyncFunctionError, AsyncWaitOperator, OutputMode, Record, StreamElement
from asyncwait.retry import (
    EMPTY_RESULT,
    exception_type,
    exponential_backoff,
    fixed_delay,
)
from tests.helpers import plain

pytestmark = pytest.mark.looptime


def now() -> float:
    return asyncio.get_running_loop().time()


class Script:
    """An AsyncFunction that logs each call's time and plays a script of outcomes per value.

    An outcome is an exception (raised) or a list of outputs (returned); the last outcome
    repeats forever.
    """

    def __init__(self, outcomes: dict[Any, list[Any]], latency: float = 0.0) -> None:
        self.outcomes = outcomes
        self.latency = latency
        self.calls: list[tuple[float, Any]] = []

    async def async_invoke(self, value: Any) -> Any:
        self.calls.append((now(), value))
        if self.latency:
            await asyncio.sleep(self.latency)
        script = self.outcomes[value]
        outcome = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def times(self, value: Any = None) -> list[float]:
        return [t for t, v in self.calls if value is None or v == value]


async def _run(
    fn: Any, values: list[Any], out: list[StreamElement], **options: Any
) -> AsyncWaitOperator[Any, Any]:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(fn, **options)
    await op.open(out.append)
    for value in values:
        await op.process_element(Record(value))
    return op


async def test_exponential_backoff_lands_at_exact_virtual_times(
    out: list[StreamElement],
) -> None:
    fn = Script({"a": [ConnectionError("down")]})
    op = await _run(fn, ["a"], out, retry=exponential_backoff(3, 0.1, 1.0))
    with pytest.raises(AsyncFunctionError):
        await op.end_input()
    assert fn.times() == [0.0, 0.1, 0.3, 0.7]  # backoffs 0.1, 0.2, 0.4
    assert now() == 0.7
    await op.close()


async def test_exponential_backoff_is_capped_at_max_delay(out: list[StreamElement]) -> None:
    fn = Script({"a": [ConnectionError("down")] * 5 + [["ok"]]})
    op = await _run(fn, ["a"], out, retry=exponential_backoff(5, 0.5, 1.5, multiplier=3.0))
    await op.end_input()
    # backoffs: 0.5, 1.5 (capped from 1.5), 1.5 (capped from 4.5), 1.5, 1.5
    assert fn.times() == [0.0, 0.5, 2.0, 3.5, 5.0, 6.5]
    assert plain(out) == ["ok"]
    await op.close()


async def test_fixed_delay_waits_after_each_attempt_completes(out: list[StreamElement]) -> None:
    fn = Script({"a": [ConnectionError("1"), ConnectionError("2"), ["ok"]]}, latency=0.25)
    op = await _run(fn, ["a"], out, retry=fixed_delay(2, 0.5))
    await op.end_input()
    assert fn.times() == [0.0, 0.75, 1.5]  # each attempt takes 0.25, then 0.5 of backoff
    assert now() == 1.75
    assert plain(out) == ["ok"]
    assert op.statistics().retries == 2
    await op.close()


async def test_jittered_backoff_stays_within_its_range(out: list[StreamElement]) -> None:
    values = list(range(20))
    fn = Script({v: [ConnectionError("down"), ["ok"]] for v in values})
    op = await _run(
        fn,
        values,
        out,
        mode=OutputMode.UNORDERED,
        capacity=20,
        retry=exponential_backoff(1, 1.0, 1.0, jitter=0.5),
    )
    await op.end_input()
    retries = [fn.times(v)[1] for v in values]
    assert all(0.5 <= t <= 1.5 for t in retries)
    assert len(set(retries)) > 1  # the factor is drawn per retry
    assert plain(out) == ["ok"] * 20
    await op.close()


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_max_retries_counts_retries_and_the_last_exception_fails(
    out: list[StreamElement], max_retries: int
) -> None:
    errors = [ConnectionError(f"attempt {i + 1}") for i in range(max_retries + 2)]
    fn = Script({"a": list(errors)})
    op = await _run(fn, ["a"], out, retry=fixed_delay(max_retries, 0.1))
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert len(fn.calls) == max_retries + 1
    assert info.value.__cause__ is errors[max_retries]
    assert out == []
    stats = op.statistics()
    assert (stats.retries, stats.failures) == (max_retries, 1)
    await op.close()


async def test_the_last_result_is_emitted_even_if_it_still_matches_on_result(
    out: list[StreamElement],
) -> None:
    fn = Script({"a": [["first"], ["second"], ["third"]]})
    always = fixed_delay(2, 0.1, on_result=lambda result: True)
    op = await _run(fn, ["a"], out, retry=always)
    await op.end_input()
    assert fn.times() == [0.0, 0.1, 0.2]
    assert plain(out) == ["third"]
    await op.close()


async def test_empty_results_are_retried_then_the_empty_result_is_final(
    out: list[StreamElement],
) -> None:
    fn = Script({"a": [[]], "b": [[], ["b!"]]})
    op = await _run(
        fn, ["a", "b"], out, capacity=1, retry=fixed_delay(2, 0.5, on_result=EMPTY_RESULT)
    )
    await op.end_input()
    assert fn.times("a") == [0.0, 0.5, 1.0]
    assert fn.times("b") == [1.0, 1.5]  # a's slot freed with nothing emitted
    assert plain(out) == ["b!"]
    assert op.statistics().failures == 0
    await op.close()


async def test_on_result_retry_of_a_plain_callable_sees_a_one_element_list(
    out: list[StreamElement],
) -> None:
    seen: list[Any] = []
    attempts = 0

    async def fn(value: str) -> str | None:
        nonlocal attempts
        attempts += 1
        return None if attempts < 3 else value.upper()

    def missing(result: Any) -> bool:
        seen.append(list(result))
        return result[0] is None

    op = await _run(fn, ["a"], out, retry=fixed_delay(5, 0.1, on_result=missing))
    await op.end_input()
    assert seen == [[None], [None], ["A"]]
    assert plain(out) == ["A"]
    await op.close()


async def test_exceptions_not_matching_the_predicate_fail_at_once(
    out: list[StreamElement],
) -> None:
    fn = Script({"a": [KeyError("a")]})
    retry = fixed_delay(5, 0.1, on_exception=exception_type(ConnectionError))
    op = await _run(fn, ["a"], out, retry=retry)
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert len(fn.calls) == 1
    assert isinstance(info.value.__cause__, KeyError)
    await op.close()


async def test_on_exception_none_never_retries_exceptions(out: list[StreamElement]) -> None:
    fn = Script({"a": [ConnectionError("down")]})
    op = await _run(fn, ["a"], out, retry=fixed_delay(5, 0.1, on_exception=None))
    with pytest.raises(AsyncFunctionError):
        await op.end_input()
    assert len(fn.calls) == 1
    await op.close()


async def test_a_raising_predicate_fails_the_element(out: list[StreamElement]) -> None:
    error = RuntimeError("bad predicate")

    def predicate(result: Any) -> bool:
        raise error

    fn = Script({"a": [["a"]]})
    op = await _run(fn, ["a"], out, retry=fixed_delay(5, 0.1, on_result=predicate))
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert info.value.__cause__ is error
    await op.close()


async def test_backoff_state_is_per_element(out: list[StreamElement]) -> None:
    fn = Script({"a": [ConnectionError("x")] * 2 + [["a"]], "b": [ConnectionError("y"), ["b"]]})
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        fn, mode=OutputMode.UNORDERED, retry=exponential_backoff(3, 0.1, 1.0)
    )
    await op.open(out.append)
    await op.process_element(Record("a"))
    await asyncio.sleep(0.15)
    await op.process_element(Record("b"))
    await op.end_input()
    assert fn.times("a") == [0.0, 0.1, 0.3]
    assert fn.times("b") == [0.15, 0.25]  # b's first backoff is 0.1, not a's 0.2
    assert plain(out) == ["b", "a"]
    await op.close()


@pytest.mark.parametrize("mode", list(OutputMode), ids=lambda mode: mode.value)
async def test_a_retrying_element_keeps_its_place_and_others_keep_flowing(
    out: list[StreamElement], mode: OutputMode
) -> None:
    fn = Script({"a1": [ConnectionError("x"), ["a1"]], "a2": [["a2"]], "b1": [["b1"]]})
    op = await _run(
        fn,
        ["a1", "a2", "b1"],
        out,
        mode=mode,
        key=lambda value: value[0],
        retry=fixed_delay(1, 1.0),
    )
    await op.end_input()
    assert fn.times("a1") == [0.0, 1.0]
    assert fn.times("b1") == [0.0]
    if mode is OutputMode.KEY_ORDERED:
        assert fn.times("a2") == [1.0]  # the key stays busy through the backoff
        assert plain(out) == ["b1", "a1", "a2"]
    elif mode is OutputMode.UNORDERED:
        assert fn.times("a2") == [0.0]
        assert plain(out) == ["a2", "b1", "a1"]
    else:
        assert fn.times("a2") == [0.0]
        assert plain(out) == ["a1", "a2", "b1"]
    await op.close()


async def test_end_input_waits_while_retries_keep_running(out: list[StreamElement]) -> None:
    fn = Script({"a": [ConnectionError("x"), ConnectionError("y"), ["a"]], "b": [["b"]]})
    op = await _run(fn, ["a", "b"], out, retry=fixed_delay(2, 2.0))
    assert now() == 0.0
    await op.end_input()
    assert now() == 4.0
    assert fn.times("a") == [0.0, 2.0, 4.0]
    assert plain(out) == ["a", "b"]
    await op.close()


async def test_cancellation_is_never_retried(out: list[StreamElement]) -> None:
    fn = Script({"a": [ConnectionError("x"), ["a"]]}, latency=1.0)
    op = await _run(fn, ["a"], out, retry=fixed_delay(5, 0.5))
    await asyncio.sleep(1.2)  # first attempt failed at 1.0, retry armed for 1.5
    await op.close()
    await asyncio.sleep(5)
    assert fn.times() == [0.0]
    assert out == []
