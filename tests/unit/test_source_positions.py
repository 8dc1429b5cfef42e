"""Source positions for checkpoints: where to resume, and whether the input is still the one
read (identity and a fingerprint of the bytes before the offset)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asyncwait import CheckpointWarning, ConfigError, Record, StreamElement, sources
from asyncwait.sources._fingerprint import WINDOW

from .test_sources import Rejects, read_all

LINES = 20_000  # about 300 KiB: the read position is past both fingerprint windows


def write_events(path: Path, n: int = LINES, start: int = 0) -> str:
    text = "".join(json.dumps({"i": i, "pad": "x" * 4}) + "\n" for i in range(start, start + n))
    with path.open("a") as file:
        file.write(text)
    return text


async def position_after(path: Path, records: int) -> dict[str, Any]:
    """The position of a JSONL source over ``path`` after ``records`` records."""
    source = sources.jsonl(path)
    await source.open(Rejects())
    try:
        read = await source.read(records)
        assert read is not None
        assert len(read) == records
        return source.position()
    finally:
        await source.close()


async def resume(path: Path, position: dict[str, Any]) -> list[StreamElement]:
    source = sources.jsonl(path)
    source.check_position(position)
    out, _ = await read_all(
        source, start_offset=position["offset"], start_line=position["line"] + 1
    )
    return out


def replace_shorter(path: Path) -> None:
    temp = path.with_name("new.jsonl")
    write_events(temp, 10)
    temp.replace(path)


def replace_same_bytes(path: Path) -> None:
    temp = path.with_name("copy.jsonl")
    temp.write_bytes(path.read_bytes())
    temp.replace(path)  # another file (inode), the same name and bytes


def truncate(path: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(1000)


def flip(at: Callable[[int], int]) -> Callable[[Path, int], None]:
    def change(path: Path, offset: int) -> None:
        with path.open("r+b") as file:
            file.seek(at(offset))
            byte = file.read(1)
            file.seek(at(offset))
            file.write(b"Y" if byte != b"Y" else b"Z")

    return change


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p, _: replace_shorter(p), "another file than the one the checkpoint read"),
        (lambda p, _: replace_same_bytes(p), "another file than the one the checkpoint read"),
        (lambda p, _: truncate(p), "it has 1,000 bytes, fewer than the"),
        (flip(lambda _: 10), "its first 65,536 bytes changed"),
        (flip(lambda offset: offset - 10), "bytes .* to .* changed since the checkpoint"),
    ],
    ids=["shorter file", "same name and bytes", "truncated", "start changed", "end changed"],
)
async def test_another_input_is_refused(
    tmp_path: Path, change: Callable[[Path, int], None], reason: str
) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path)
    position = await position_after(path, 12_000)
    assert position["offset"] > 2 * WINDOW
    change(path, position["offset"])
    with pytest.raises(ConfigError, match=reason) as caught:
        await resume(path, position)
    message = str(caught.value)
    assert f"jsonl source: {str(path)!r} is not the input the checkpoint read" in message
    assert "--fresh" in message
    assert f"byte {position['offset']:,}" in message


async def test_an_input_that_only_grew_resumes(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path)
    position = await position_after(path, 12_000)
    write_events(path, 500, start=LINES)  # appended after the offset
    flip(lambda offset: offset + 100)(path, position["offset"])  # unread yet: no matter
    out = await resume(path, position)
    records = [e for e in out if isinstance(e, Record)]
    assert records[0].value == {"i": 12_000, "pad": "xxxx"}
    assert [getattr(r, "line", None) for r in records] == list(range(12_001, LINES + 501))
    assert len(records) == LINES + 500 - 12_000


async def test_only_the_two_windows_are_compared(tmp_path: Path) -> None:
    # The price of not rereading the input: a change between the windows goes unseen.
    path = tmp_path / "events.jsonl"
    write_events(path)
    position = await position_after(path, 12_000)
    flip(lambda offset: offset // 2)(path, position["offset"])
    assert WINDOW < position["offset"] // 2 < position["offset"] - WINDOW
    assert len(await resume(path, position)) == LINES - 12_000


async def test_a_small_offset_hashes_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 3)
    position = await position_after(path, 1)
    fingerprint = position["input"]
    assert fingerprint["head"] == fingerprint["tail"]
    assert position["offset"] == len(path.read_text().splitlines()[0]) + 1
    flip(lambda _: 2)(path, position["offset"])
    with pytest.raises(ConfigError, match=f"its first {position['offset']} bytes changed"):
        await resume(path, position)


async def test_a_file_replaced_after_the_check_is_refused_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path)
    position = await position_after(path, 100)
    source = sources.jsonl(path)
    source.check_position(position)
    replace_same_bytes(path)
    with pytest.raises(ConfigError, match="replaced while the job opened it"):
        await source.open(Rejects(), start_offset=position["offset"])


async def test_a_position_without_a_fingerprint_resumes_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 10)
    position = await position_after(path, 4)
    del position["input"]
    with pytest.warns(CheckpointWarning, match="cannot tell whether this is the input it read"):
        out = await resume(path, position)
    assert [e.value["i"] for e in out if isinstance(e, Record)] == list(range(4, 10))


async def test_a_collection_position_is_its_count(tmp_path: Path) -> None:
    source = sources.collection(range(10))
    await source.open(Rejects())
    await source.read(3)
    assert source.position() == {"offset": 3, "line": 3}
    source.check_position(source.position())  # nothing to check


async def test_a_csv_position_never_falls_inside_a_row(tmp_path: Path) -> None:
    # A quoted field spanning lines across the 1 MiB read boundary: a batch ends before the
    # row does. Resuming at the source's offset would read the row's second half as rows.
    path = tmp_path / "rows.csv"
    head = "id,text\n"
    rows = 80_000
    filler = "".join(f"{i},plain\n" for i in range(rows))
    first_line = ',"first half\n'
    # The first read (1 MiB) ends 5 bytes into the row's second line.
    wide = (1 << 20) - 5 - len(head) - len(filler) - len(first_line)
    assert wide > 0
    path.write_text(head + filler + "x" * wide + first_line + 'second half"\nlast,row\n')
    source = sources.csv(path)
    await source.open(Rejects())
    first = await source.read(1_000_000)
    assert first is not None
    assert len(first) == rows  # the batch ended with the open quoted field
    position = source.position()
    assert position["offset"] == len(head) + len(filler)
    assert position["line"] == rows + 1
    await source.close()
    again = sources.csv(path)
    again.check_position(position)
    rest, rejects = await read_all(
        again, start_offset=position["offset"], start_line=position["line"] + 1
    )
    assert rejects.errors == []
    assert [(getattr(e, "line", None), e.value) for e in rest if isinstance(e, Record)] == [
        (rows + 2, {"id": "x" * wide, "text": "first half\nsecond half"}),
        (rows + 4, {"id": "last", "text": "row"}),
    ]
