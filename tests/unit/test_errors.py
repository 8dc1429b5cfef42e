import pytest

import asyncwait
from asyncwait import (
    AsyncFunctionError,
    AsyncTimeoutError,
    AsyncWaitError,
    AsyncWaitOperator,
    ClosedError,
    ConfigError,
    InternalError,
    Record,
    StreamElement,
)


@pytest.mark.parametrize(
    "error", [AsyncTimeoutError, AsyncFunctionError, ConfigError, ClosedError, InternalError]
)
def test_every_error_is_an_async_wait_error(error: type[Exception]) -> None:
    assert issubclass(error, AsyncWaitError)
    assert issubclass(AsyncWaitError, Exception)


def test_timeout_error_is_a_timeout_error_and_config_error_a_value_error() -> None:
    assert issubclass(AsyncTimeoutError, TimeoutError)
    assert issubclass(ConfigError, ValueError)
    assert not issubclass(AsyncFunctionError, TimeoutError)
    with pytest.raises(TimeoutError):
        raise AsyncTimeoutError("late")
    with pytest.raises(ValueError, match="capacity"):
        raise ConfigError("capacity: bad")


def test_function_error_carries_the_record() -> None:
    record = Record({"user": 1}, 5)
    error = AsyncFunctionError("failed", record)
    assert error.record is record
    assert str(error) == "failed"
    assert AsyncFunctionError("no element").record is None


def test_errors_are_reexported_from_the_errors_module() -> None:
    for name in asyncwait.errors.__all__:
        assert getattr(asyncwait, name) is getattr(asyncwait.errors, name)


async def test_messages_name_the_element_and_the_operator(out: list[StreamElement]) -> None:
    async def lookup(value: str) -> str:
        raise KeyError(value)

    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(lookup, name="enrich-users")
    await op.open(out.append)
    await op.process_element(Record("user-42", 7))
    with pytest.raises(AsyncFunctionError) as info:
        await op.end_input()
    await op.close()
    message = str(info.value)
    assert "enrich-users" in message
    assert "user-42" in message
    assert "KeyError" in message
    assert info.value.record == Record("user-42", 7)
