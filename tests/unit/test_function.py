import asyncio
import functools
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from asyncwait import (
    AsyncFunction,
    AsyncFunctionError,
    AsyncTimeoutError,
    AsyncWaitOperator,
    ClosedError,
    Record,
    RuntimeContext,
    StreamElement,
    threaded,
)
from tests.helpers import Gate, GatedFunction, settle


async def _run(function: Any, values: Iterable[Any], **options: Any) -> list[StreamElement]:
    out: list[StreamElement] = []
    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(function, **options)
    await op.open(out.append)
    try:
        for value in values:
            await op.process_element(Record(value))
        await op.end_input()
    finally:
        await op.close()
    return out


# ---------------------------------------------------------------- AsyncFunction defaults


async def test_async_function_defaults() -> None:
    class OnlyInvoke(AsyncFunction[int, int]):
        async def async_invoke(self, value: int) -> list[int]:
            return [value]

    fn = OnlyInvoke()
    await fn.open(RuntimeContext("op"))
    await fn.close()
    with pytest.raises(AsyncTimeoutError, match="42"):
        fn.timeout(42)
    with pytest.raises(NotImplementedError):
        await AsyncFunction[int, int]().async_invoke(1)


async def test_open_gets_the_runtime_context_before_the_first_call() -> None:
    events: list[Any] = []

    class Recording(AsyncFunction[int, int]):
        async def open(self, context: RuntimeContext) -> None:
            events.append(("open", context))

        async def async_invoke(self, value: int) -> list[int]:
            events.append(("invoke", value))
            return [value]

        async def close(self) -> None:
            events.append(("close", None))

    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(Recording(), name="enrich", capacity=7)
    await op.open(lambda element: None)
    await op.process_element(Record(1))
    await op.end_input()
    await op.close()
    await op.close()
    assert [kind for kind, _ in events] == ["open", "invoke", "close"]
    context = events[0][1]
    assert isinstance(context, RuntimeContext)
    assert context.name == "enrich"
    assert context.metrics is op.metrics
    assert context.capacity == 7


def test_runtime_context_defaults() -> None:
    context = RuntimeContext("lookup")
    assert context.name == "lookup"
    assert context.metrics.counter("anything") == 0


# ---------------------------------------------------------------- plain async callables


@pytest.mark.parametrize(
    ("result", "expected"),
    [(None, None), ([1, 2], [1, 2]), ((), ()), ("ab", "ab"), ({"k": 1}, {"k": 1})],
    ids=["none", "list", "empty-tuple", "str", "dict"],
)
async def test_a_plain_async_callable_yields_exactly_one_output(result: Any, expected: Any) -> None:
    async def fn(value: int) -> Any:
        return result

    assert await _run(fn, [7]) == [Record(expected)]


async def test_partials_and_async_call_instances_are_plain_callables() -> None:
    async def add(offset: int, value: int) -> int:
        return value + offset

    class Adder:
        async def __call__(self, value: int) -> int:
            return value + 100

    assert await _run(functools.partial(add, 10), [1]) == [Record(11)]
    assert await _run(Adder(), [1]) == [Record(101)]


@pytest.mark.parametrize("function", [lambda v: v, 42, None], ids=["sync", "int", "none"])
def test_a_function_that_is_not_async_is_rejected(function: Any) -> None:
    with pytest.raises(TypeError):
        AsyncWaitOperator(function)


# ---------------------------------------------------------------- async_invoke results


class _Returns(AsyncFunction[Any, Any]):
    def __init__(self, result: Any) -> None:
        self.result = result

    async def async_invoke(self, value: Any) -> Any:
        return self.result


async def test_async_invoke_outputs_are_emitted_together_in_iteration_order() -> None:
    class Generated(AsyncFunction[int, str]):
        async def async_invoke(self, value: int) -> Iterator[str]:
            return (f"{value}-{i}" for i in range(3))

    assert await _run(Generated(), [1, 2]) == [
        Record(out) for out in ["1-0", "1-1", "1-2", "2-0", "2-1", "2-2"]
    ]


@pytest.mark.parametrize("result", [None, 42, object()], ids=["none", "int", "object"])
async def test_async_invoke_returning_a_non_iterable_fails_the_element(result: Any) -> None:
    with pytest.raises(AsyncFunctionError) as info:
        await _run(_Returns(result), ["v"])
    assert info.value.record == Record("v")
    assert isinstance(info.value.__cause__, TypeError)
    assert "iterable" in str(info.value)


async def test_an_empty_iterable_emits_nothing_and_frees_the_slot(out: list[StreamElement]) -> None:
    gate = Gate()
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(GatedFunction(gate), capacity=1)
    await op.open(out.append)
    await op.process_element(Record("a"))
    blocked = asyncio.create_task(op.process_element(Record("b")))
    await settle()
    assert not blocked.done()
    gate.release("a", [])
    await settle()
    assert blocked.done()
    assert out == []
    assert op.statistics().queued == 1
    gate.release("b", ["b1"])
    await op.end_input()
    await op.close()
    assert out == [Record("b1")]
    assert gate.calls == ["a", "b"]


# ---------------------------------------------------------------- threaded


async def test_threaded_runs_a_blocking_function_in_a_thread_while_the_loop_runs() -> None:
    loop = asyncio.get_running_loop()
    started: asyncio.Future[str] = loop.create_future()
    unblock = threading.Event()

    def blocking(value: int) -> int:
        loop.call_soon_threadsafe(started.set_result, threading.current_thread().name)
        if not unblock.wait(timeout=30):
            raise AssertionError("never unblocked")
        return value * 2

    out: list[StreamElement] = []
    op: AsyncWaitOperator[int, int] = AsyncWaitOperator(threaded(blocking), name="blocky")
    await op.open(out.append)
    await op.process_element(Record(21))
    thread_name = await started  # the loop is free while the call blocks its thread
    assert thread_name.startswith("asyncwait-blocky")
    assert thread_name != threading.current_thread().name
    assert out == []
    unblock.set()
    await op.end_input()
    await op.close()
    assert out == [Record(42)]


async def test_threaded_pool_is_created_in_open_and_shut_in_close() -> None:
    def increment(value: int) -> int:
        return value + 1

    fn = threaded(increment)
    with pytest.raises(ClosedError):
        await fn.async_invoke(1)
    await fn.open(RuntimeContext("op", capacity=2))
    assert list(await fn.async_invoke(1)) == [2]
    await fn.close()
    with pytest.raises(ClosedError):
        await fn.async_invoke(1)
    await fn.close()  # idempotent


async def test_threaded_through_the_operator_yields_one_output_per_value() -> None:
    threads: set[int] = set()

    def work(value: int) -> list[int]:
        threads.add(threading.get_ident())
        return [value, value]

    out = await _run(threaded(work, max_workers=1), range(5), capacity=5)
    assert out == [Record([v, v]) for v in range(5)]
    assert len(threads) == 1
    assert threading.get_ident() not in threads


def test_threaded_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError):
        threaded(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_workers"):
        threaded(lambda v: v, max_workers=0)


async def test_threaded_failure_fails_the_element() -> None:
    def boom(value: int) -> int:
        raise LookupError(value)

    with pytest.raises(AsyncFunctionError) as info:
        await _run(threaded(boom), [3])
    assert isinstance(info.value.__cause__, LookupError)
    assert info.value.record == Record(3)
