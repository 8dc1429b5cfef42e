"""Timeouts on the loop's virtual clock (looptime): one deadline per element from admission."""

import asyncio
from typing import Any

import pytest

from asyncwait import (
    AsyncFunctionError,
    AsyncTimeoutError,
    AsyncWaitOperator,
    OutputMode,
    Record,
    StreamElement,
)
from asyncwait.retry import fixed_delay
from tests.helpers import Gate, GatedFunction, plain, settle

pytestmark = pytest.mark.looptime


def now() -> float:
    return asyncio.get_running_loop().time()


async def test_the_default_timeout_fails_the_element_at_its_deadline(
    gate: Gate, out: list[StreamElement]
) -> None:
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(gate, timeout=1.5)
    await op.open(out.append)
    await op.process_element(Record("a", 3))
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert now() == 1.5
    assert info.value.record == Record("a", 3)
    assert isinstance(info.value.__cause__, AsyncTimeoutError)
    assert gate.cancelled == ["a"]  # the call in flight is cancelled
    assert op.statistics().timeouts == 1
    assert out == []
    await op.close()


async def test_the_deadline_counts_from_admission_not_from_process_element(
    out: list[StreamElement],
) -> None:

    class Slow(GatedFunction):
        async def async_invoke(self, value: str) -> list[str]:
            if value == "first":
                await asyncio.sleep(0.5)
                return [value]
            await asyncio.Event().wait()  # never completes
            raise AssertionError("unreachable")

    fn = Slow(Gate(), on_timeout=lambda value: ["late"])
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(fn, capacity=1, timeout=1.0)
    await op.open(out.append)
    await op.process_element(Record("first"))
    await op.process_element(Record("second"))  # waits for a slot until 0.5
    assert now() == 0.5
    await op.end_input()
    assert fn.timeouts == [(1.5, "second")]
    assert plain(out) == ["first", "late"]
    await op.close()


async def test_every_element_has_its_own_deadline(gate: Gate, out: list[StreamElement]) -> None:
    fn = GatedFunction(gate, on_timeout=lambda value: [f"{value}!"])
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(fn, mode=OutputMode.UNORDERED, timeout=1.0)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await asyncio.sleep(0.2)
    await op.process_element(Record("b"))
    await asyncio.sleep(0.3)
    await op.process_element(Record("c"))
    await settle()
    gate.release("b", ["b"])
    await op.end_input()
    assert [(t, v) for t, v in fn.timeouts] == [(1.0, "a"), (1.5, "c")]
    assert plain(out) == ["b", "a!", "c!"]
    await op.close()


async def test_the_deadline_covers_every_retry_attempt(out: list[StreamElement]) -> None:
    calls: list[float] = []

    class Failing(GatedFunction):
        async def async_invoke(self, value: str) -> list[str]:
            calls.append(now())
            raise ConnectionError(f"attempt {len(calls)}")

    fn = Failing(Gate(), on_timeout=lambda value: ["fallback"])
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(fn, timeout=1.0, retry=fixed_delay(10, 0.3))
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.end_input()
    assert now() == 1.0
    assert calls == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert fn.timeouts == [(1.0, "a")]
    assert plain(out) == ["fallback"]
    await asyncio.sleep(5)  # no retry is left armed
    assert len(calls) == 4
    stats = op.statistics()
    assert (stats.retries, stats.timeouts, stats.failures) == (3, 1, 0)
    await op.close()


async def test_a_timeout_cancels_a_pending_retry(out: list[StreamElement]) -> None:
    calls: list[float] = []

    class Failing(GatedFunction):
        async def async_invoke(self, value: str) -> list[str]:
            calls.append(now())
            raise ConnectionError("down")

    fn = Failing(Gate(), on_timeout=lambda value: [])
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(fn, timeout=1.0, retry=fixed_delay(3, 0.8))
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.end_input()
    assert now() == 1.0
    await asyncio.sleep(3)
    assert calls == [0.0, 0.8]  # the retry due at 1.6 never runs
    assert fn.timeouts == [(1.0, "a")]
    assert out == []
    await op.close()


async def test_the_timeout_outcome_is_final_and_a_late_result_is_ignored(
    out: list[StreamElement],
) -> None:
    cancelled_at: list[float] = []

    class Stubborn(GatedFunction):
        async def async_invoke(self, value: str) -> list[str]:
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled_at.append(now())
                return ["late"]  # swallows the cancellation: the result must be dropped
            return ["too late"]

    fn = Stubborn(Gate(), on_timeout=lambda value: ["fallback"])
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        fn, timeout=1.0, retry=fixed_delay(3, 0.1, on_result=lambda r: True)
    )
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.end_input()
    assert plain(out) == ["fallback"]
    assert cancelled_at == [1.0]
    await asyncio.sleep(10)
    assert plain(out) == ["fallback"]
    assert op.statistics().retries == 0
    await op.close()


async def test_a_result_arriving_after_the_deadline_passed_is_ignored(
    gate: Gate, out: list[StreamElement]
) -> None:
    fn = GatedFunction(gate, on_timeout=lambda value: ["fallback"])
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(fn, timeout=1.0)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    await asyncio.sleep(1.0)
    assert fn.timeouts == [(1.0, "a"), (1.0, "b")]
    assert gate.cancelled == ["a", "b"]
    assert plain(out) == ["fallback", "fallback"]
    assert op.statistics().queued == 0
    await op.close()


async def test_an_async_timeout_hook_is_awaited(gate: Gate, out: list[StreamElement]) -> None:
    async def fallback(value: str) -> list[str]:
        await asyncio.sleep(0.25)
        return [f"cached-{value}"]

    fn = GatedFunction(gate, on_timeout=fallback)
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(fn, timeout=1.0)
    await op.open(out.append)
    await op.process_element(Record("a", 42))
    await op.end_input()
    assert now() == 1.25
    assert out == [Record("cached-a", 42)]
    await op.close()


@pytest.mark.parametrize("async_hook", [False, True], ids=["sync-hook", "async-hook"])
async def test_a_timeout_hook_that_raises_fails_the_element(
    gate: Gate, out: list[StreamElement], async_hook: bool
) -> None:
    error = LookupError("no fallback")

    def raising(value: str) -> Any:
        raise error

    async def raising_later(value: str) -> Any:
        await asyncio.sleep(0.1)
        raise error

    fn = GatedFunction(gate, on_timeout=raising_later if async_hook else raising)
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(fn, timeout=1.0)
    await op.open(out.append)
    await op.process_element(Record("a"))
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert info.value.__cause__ is error
    assert info.value.record == Record("a")
    assert now() == (1.1 if async_hook else 1.0)
    await op.close()


@pytest.mark.parametrize("result", [None, 7])
async def test_a_timeout_hook_returning_a_non_iterable_fails_the_element(
    gate: Gate, out: list[StreamElement], result: Any
) -> None:
    fn = GatedFunction(gate, on_timeout=lambda value: result)
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(fn, timeout=1.0)
    await op.open(out.append)
    await op.process_element(Record("a"))
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert isinstance(info.value.__cause__, TypeError)
    await op.close()


async def test_a_plain_callable_times_out_with_the_default_hook(
    out: list[StreamElement],
) -> None:
    async def slow(value: int) -> int:
        await asyncio.sleep(value)
        return value

    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        slow, mode=OutputMode.UNORDERED, timeout=2.5
    )
    await op.open(out.append)
    await op.process_element(Record(1))
    await op.process_element(Record(2))
    await op.process_element(Record(3))
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    assert now() == 2.5
    assert info.value.record == Record(3)
    assert plain(out) == [1, 2]
    await op.close()


async def test_no_timeout_means_no_deadline(gate: Gate, out: list[StreamElement]) -> None:
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(gate)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await asyncio.sleep(10_000)
    assert gate.pending() == ["a"]
    gate.release("a")
    await op.end_input()
    assert plain(out) == ["a"]
    assert op.statistics().timeouts == 0
    await op.close()


async def test_an_element_completing_in_time_does_not_time_out_later(
    gate: Gate, out: list[StreamElement]
) -> None:
    fn = GatedFunction(gate, on_timeout=lambda value: ["fallback"])
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(fn, timeout=1.0)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await asyncio.sleep(0.999)
    gate.release("a", ["a"])
    await op.end_input()
    await asyncio.sleep(5)
    assert plain(out) == ["a"]
    assert fn.timeouts == []
    await op.close()


async def test_key_ordered_waiting_for_the_key_counts_toward_the_deadline(
    out: list[StreamElement],
) -> None:
    gate = Gate()
    fn = GatedFunction(gate, on_timeout=lambda value: [f"{value}!"])
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        fn, mode=OutputMode.KEY_ORDERED, key=lambda value: value[0], timeout=1.0
    )
    await op.open(out.append)
    await op.process_element(Record("a1"))
    await asyncio.sleep(0.5)
    await op.process_element(Record("a2"))  # waits for a1 until a1 times out at 1.0
    await op.process_element(Record("b1"))
    await settle()
    gate.release("b1", ["b1"])
    await asyncio.sleep(0.6)  # t = 1.1: a1 timed out, a2 started at 1.0
    assert fn.timeouts == [(1.0, "a1")]
    assert gate.pending() == ["a2"]
    await op.end_input()
    assert fn.timeouts == [(1.0, "a1"), (1.5, "a2")]
    assert gate.calls == ["a1", "b1", "a2"]
    assert plain(out) == ["b1", "a1!", "a2!"]
    await op.close()


async def test_a_record_timing_out_while_waiting_for_its_key_is_never_invoked(
    out: list[StreamElement],
) -> None:
    gate = Gate()
    fn = GatedFunction(gate, on_timeout=lambda value: [f"{value}!"])
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        fn, mode=OutputMode.KEY_ORDERED, key=lambda value: value[0], timeout=1.0
    )
    await op.open(out.append)
    await op.process_element(Record("a1"))
    await op.process_element(Record("a2"))
    await op.process_element(Record("a3"))
    await asyncio.sleep(0.5)
    await op.process_element(Record("a4"))
    await op.end_input()
    assert [v for _, v in fn.timeouts] == ["a1", "a2", "a3", "a4"]
    assert [t for t, _ in fn.timeouts] == [1.0, 1.0, 1.0, 1.5]
    # a2 and a3 timed out before their turn; a4 started when a3 left, then timed out.
    assert gate.calls == ["a1", "a4"]
    assert plain(out) == ["a1!", "a2!", "a3!", "a4!"]
    await op.close()


async def test_key_ordered_keeps_key_order_when_a_later_timeout_hook_finishes_first(
    gate: Gate, out: list[StreamElement]
) -> None:
    async def fallback(value: str) -> list[str]:
        await asyncio.sleep(0.5 if value == "a1" else 0.1)
        return [f"{value}!"]

    fn = GatedFunction(gate, on_timeout=fallback)
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        fn, mode=OutputMode.KEY_ORDERED, key=lambda value: value[0], timeout=1.0
    )
    await op.open(out.append)
    await op.process_element(Record("a1"))
    await op.process_element(Record("a2"))  # times out at 1.0 while waiting for a1
    await op.process_element(Record("a3"))
    await asyncio.sleep(0.2)
    await op.process_element(Record("a4"))
    await op.end_input()
    # a2's fallback is ready at 1.1, a1's at 1.5: a2 still leaves after a1.
    assert plain(out) == ["a1!", "a2!", "a3!", "a4!"]
    assert [t for t, _ in fn.timeouts] == [1.0, 1.0, 1.0, 1.2]
    assert gate.calls == ["a1"]  # a4 timed out at 1.2, still waiting for a3's hook
    assert now() == 1.5
    await op.close()


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), True])
def test_timeout_must_be_positive(timeout: Any) -> None:
    async def fn(value: int) -> int:
        return value

    with pytest.raises(ValueError, match="timeout"):
        AsyncWaitOperator(fn, timeout=timeout)


async def test_deadlines_of_completed_elements_behind_a_slow_head_are_dropped(
    out: list[StreamElement],
) -> None:
    # One deadline per element is kept in admission order; elements completed behind a head
    # that is still running must not pile up there until the head's deadline.
    head = asyncio.Event()

    async def fn(value: int) -> int:
        if value == 0:
            await head.wait()
        return value

    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(
        fn, mode=OutputMode.UNORDERED, capacity=10, timeout=60
    )
    await op.open(out.append)
    longest = 0
    for value in range(5_000):
        await op.process_element(Record(value))
        longest = max(longest, op._outcomes.deadlines_held())
    assert longest <= 2 * 10 + 16 + 1
    head.set()
    await op.end_input()
    assert sorted(r.value for r in out if isinstance(r, Record)) == list(range(5_000))
    assert now() < 60  # nothing timed out
    await op.close()
