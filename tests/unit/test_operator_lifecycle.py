"""Construction, open, end_input, close and statistics."""

import asyncio
import dataclasses
from typing import Any

import pytest

from asyncwait import (
    AsyncFunction,
    AsyncWaitError,
    AsyncWaitOperator,
    ClosedError,
    OperatorStatistics,
    OutputMode,
    Record,
    RuntimeContext,
    StreamElement,
    Watermark,
)
from asyncwait.retry import fixed_delay
from tests.helpers import Gate, GatedFunction, plain, settle


async def _identity(value: Any) -> Any:
    return value


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "options",
    [
        {"capacity": 0},
        {"capacity": -3},
        {"capacity": 1.5},
        {"capacity": True},
        {"timeout": 0},
        {"timeout": -0.1},
        {"mode": OutputMode.KEY_ORDERED},
        {"mode": "sorted"},  # "ordered" names a mode: see test_cli_polish
        {"key": 42},
    ],
    ids=repr,
)
def test_invalid_options_raise_value_error(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the type is the contract
        AsyncWaitOperator(_identity, **options)


def test_valid_options_construct() -> None:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(
        _identity,
        mode=OutputMode.KEY_ORDERED,
        key=lambda value: value,
        capacity=1,
        timeout=0.001,
        retry=fixed_delay(1, 0.0),
        name="n",
    )
    assert op.statistics().capacity == 1
    assert "n" in repr(op)


def test_output_modes() -> None:
    assert {mode.name for mode in OutputMode} == {"ORDERED", "UNORDERED", "KEY_ORDERED"}


# ---------------------------------------------------------------- open


async def test_calls_before_open_raise(out: list[StreamElement]) -> None:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(_identity)
    with pytest.raises(AsyncWaitError):
        await op.process_element(Record(1))
    with pytest.raises(AsyncWaitError):
        await op.process_watermark(Watermark(1))
    with pytest.raises(AsyncWaitError):
        await op.end_input()
    await op.open(out.append)
    with pytest.raises(AsyncWaitError, match="twice"):
        await op.open(out.append)
    await op.close()


async def test_open_rejects_an_emit_that_is_not_callable() -> None:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(_identity)
    with pytest.raises(TypeError):
        await op.open(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- end_input


async def test_end_input_with_nothing_admitted_returns_at_once(out: list[StreamElement]) -> None:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(_identity)
    await op.open(out.append)
    await op.end_input()
    await op.close()
    assert out == []


async def test_end_input_returns_once_everything_is_emitted(
    gate: Gate, out: list[StreamElement]
) -> None:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(gate, mode=OutputMode.UNORDERED)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.process_watermark(Watermark(1))
    await op.process_element(Record("b"))
    ending = asyncio.create_task(op.end_input())
    for value in ["b", "a"]:
        await settle()
        assert not ending.done()
        gate.release(value)
    await ending
    assert plain(out) == ["a", ("W", 1), "b"]
    stats = op.statistics()
    assert (stats.in_flight, stats.queued) == (0, 0)
    await op.close()


# ---------------------------------------------------------------- close


class _Tracked(GatedFunction):
    def __init__(self, gate: Gate, events: list[str]) -> None:
        super().__init__(gate)
        self.events = events

    async def open(self, context: RuntimeContext) -> None:
        self.events.append("open")

    async def async_invoke(self, value: Any) -> Any:
        self.events.append(f"invoke {value}")
        try:
            return await self.gate(value)
        finally:
            self.events.append(f"finally {value}")

    async def close(self) -> None:
        self.events.append("close")


async def test_close_cancels_in_flight_work_without_emitting_and_closes_the_function(
    out: list[StreamElement],
) -> None:
    gate, events = Gate(), list[str]()
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(_Tracked(gate, events), capacity=5)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    await settle()
    await op.close()
    assert sorted(gate.cancelled) == ["a", "b"]
    assert out == []
    # The cancelled calls have finished before the function is closed.
    assert events[-1] == "close"
    assert sorted(events[:-1]) == ["finally a", "finally b", "invoke a", "invoke b", "open"]
    await op.close()
    await op.close()
    assert events.count("close") == 1


async def test_close_calls_function_close_once_after_failures_too(
    gate: Gate, out: list[StreamElement]
) -> None:
    fn = GatedFunction(gate)
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(fn)
    await op.open(out.append)
    assert fn.opened == 1
    await op.process_element(Record("a"))
    await settle()
    gate.fail("a", ValueError("a"))
    await settle()
    await op.close()
    await op.close()
    assert (fn.opened, fn.closed) == (1, 1)


async def test_late_completions_after_close_are_ignored_silently(
    out: list[StreamElement],
) -> None:
    release = asyncio.Event()

    async def stubborn(value: str) -> str:
        try:
            await release.wait()
        except asyncio.CancelledError:
            await release.wait()  # ignores the cancellation and completes later
            return value
        return value

    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(stubborn)
    await op.open(out.append)
    await op.process_element(Record("a"))
    await settle()
    closing = asyncio.create_task(op.close())
    await settle()
    assert not closing.done()  # waits for the call to give up
    release.set()
    await closing
    await settle()
    assert out == []


@pytest.mark.looptime
async def test_close_cancels_a_pending_async_timeout_hook(out: list[StreamElement]) -> None:
    hook_cancelled = asyncio.Event()

    async def slow_fallback(value: str) -> list[str]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            hook_cancelled.set()
            raise
        return ["unreachable"]

    gate = Gate()
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        GatedFunction(gate, on_timeout=slow_fallback), timeout=1.0
    )
    await op.open(out.append)
    await op.process_element(Record("a"))
    await asyncio.sleep(1.5)
    assert gate.cancelled == ["a"]
    assert not hook_cancelled.is_set()
    await op.close()
    assert hook_cancelled.is_set()
    assert out == []


async def test_close_does_not_wait_for_a_pending_emit_and_emits_nothing_more(
    gate: Gate,
) -> None:
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    emitted: list[StreamElement] = []

    def emit(element: StreamElement) -> asyncio.Future[None]:
        emitted.append(element)
        return ack

    op: AsyncWaitOperator[str, list[str]] = AsyncWaitOperator(GatedFunction(gate))
    await op.open(emit)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    await settle()
    gate.release("a", ["a1", "a2"])
    gate.release("b", ["b1"])
    await settle()
    assert plain(emitted) == ["a1"]
    await op.close()  # returns although the consumer never acknowledged a1
    if not ack.done():
        ack.set_result(None)
    await settle()
    assert plain(emitted) == ["a1"]


async def test_calls_after_close_raise_closed_error(out: list[StreamElement]) -> None:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(_identity)
    await op.open(out.append)
    await op.close()
    with pytest.raises(ClosedError):
        await op.process_element(Record(1))
    with pytest.raises(ClosedError):
        await op.process_watermark(Watermark(1))
    with pytest.raises(ClosedError):
        await op.end_input()


async def test_close_wakes_pending_calls_with_closed_error(
    gate: Gate, out: list[StreamElement]
) -> None:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(gate, capacity=1)
    await op.open(out.append)
    await op.process_element(Record("a"))
    blocked = asyncio.create_task(op.process_element(Record("b")))
    await settle()
    ending = asyncio.create_task(op.end_input())
    await settle()
    await op.close()
    for task in (blocked, ending):
        with pytest.raises(ClosedError):
            await task
    assert gate.calls == ["a"]


async def test_close_before_open_is_allowed() -> None:
    fn = GatedFunction(Gate())
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(fn)
    await op.close()
    await op.close()
    assert fn.opened == 0
    with pytest.raises(ClosedError):
        await op.process_element(Record(1))


async def test_close_from_inside_emit_stops_further_emission(gate: Gate) -> None:
    emitted: list[StreamElement] = []
    closing: list[asyncio.Task[None]] = []

    def emit(element: StreamElement) -> None:
        emitted.append(element)
        closing.append(asyncio.create_task(op.close()))

    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(gate, mode=OutputMode.UNORDERED)
    await op.open(emit)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    await settle()
    gate.release("a")
    await settle()
    assert plain(emitted) == ["a"]
    assert gate.cancelled == ["b"]
    await asyncio.gather(*closing)


# ---------------------------------------------------------------- statistics


@pytest.mark.looptime
async def test_statistics_count_what_happened(out: list[StreamElement]) -> None:
    attempts: dict[str, int] = {}

    class Mixed(AsyncFunction[str, str]):
        async def async_invoke(self, value: str) -> list[str]:
            attempts[value] = attempts.get(value, 0) + 1
            if value == "flaky" and attempts[value] < 3:
                raise ConnectionError("flaky")
            if value == "slow":
                await asyncio.sleep(10)
            if value == "bad":
                raise KeyError(value)
            return [value]

        def timeout(self, value: str) -> list[str]:
            return ["fallback"]

    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        Mixed(),
        mode=OutputMode.UNORDERED,
        capacity=4,
        timeout=1.0,
        retry=fixed_delay(5, 0.1, on_exception=lambda exc: isinstance(exc, ConnectionError)),
    )
    await op.open(out.append)
    initial = op.statistics()
    assert initial == OperatorStatistics(
        in_flight=0, queued=0, capacity=4, emitted=0, retries=0, timeouts=0, failures=0
    )
    for value in ["flaky", "slow", "ok"]:
        await op.process_element(Record(value))
    await op.process_watermark(Watermark(1))
    await settle()
    stats = op.statistics()
    assert (stats.in_flight, stats.queued, stats.emitted) == (2, 3, 1)  # ok went out
    await op.end_input()
    stats = op.statistics()
    assert stats == OperatorStatistics(
        in_flight=0, queued=0, capacity=4, emitted=4, retries=2, timeouts=1, failures=0
    )
    await op.process_element(Record("bad"))
    await settle()
    assert op.statistics().failures == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.emitted = 0  # type: ignore[misc]
    assert plain(out) == ["ok", "flaky", "fallback", ("W", 1)]
    await op.close()


async def test_repr_shows_live_state(gate: Gate, out: list[StreamElement]) -> None:
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(gate, capacity=8, name="enrich")
    await op.open(out.append)
    await op.process_element(Record("a"))
    await op.process_element(Record("b"))
    text = repr(op)
    assert "enrich" in text
    assert "2/8" in text
    await op.close()
