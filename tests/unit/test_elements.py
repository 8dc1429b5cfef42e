import dataclasses
import typing

import pytest

from asyncwait import AsyncWaitOperator, Record, StreamElement, Watermark
from asyncwait.function import AsyncFunction


def test_record_timestamp_defaults_to_none() -> None:
    assert Record("a").timestamp is None
    assert Record("a", 5).timestamp == 5
    assert Record("a", timestamp=5) == Record("a", 5)


def test_elements_are_frozen_slotted_values() -> None:
    record = Record([1], 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.value = [2]  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Watermark(3).timestamp = 4  # type: ignore[misc]
    assert not hasattr(record, "__dict__")
    assert not hasattr(Watermark(3), "__dict__")
    assert Record("a", 1) == Record("a", 1) != Record("a", 2)
    assert Watermark(1) == Watermark(1) != Watermark(2)
    assert len({Record("a", 1), Record("a", 1), Watermark(1), Watermark(1)}) == 2


def test_stream_element_is_record_or_watermark() -> None:
    assert set(typing.get_args(StreamElement)) == {Record[typing.Any], Watermark}


class _Fanout(AsyncFunction[str, str]):
    async def async_invoke(self, value: str) -> list[str]:
        return [value + "1", value + "2"]


async def test_outputs_carry_the_input_timestamp(out: list[StreamElement]) -> None:
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(_Fanout())
    await op.open(out.append)
    await op.process_element(Record("a", 10))
    await op.process_element(Record("b"))
    await op.process_element(Record("c", 0))
    await op.end_input()
    await op.close()
    assert out == [
        Record("a1", 10),
        Record("a2", 10),
        Record("b1"),
        Record("b2"),
        Record("c1", 0),
        Record("c2", 0),
    ]
