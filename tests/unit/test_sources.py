"""Sources: JSONL, CSV, stdin and collections; positions, offsets, bad input, missing files."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import pytest

from asyncwait import BadInputError, ConfigError, Record, StreamElement, Watermark, sinks, sources
from asyncwait.runtime import StreamEnvironment


def open_text(path: Path) -> IO[str]:
    """A text file to stand in for sys.stdin."""
    return open(path, encoding="utf-8")


class Rejects:
    """A reject function that keeps what it was given."""

    def __init__(self) -> None:
        self.errors: list[BadInputError] = []

    def __call__(self, error: BadInputError, record: Record[Any] | None = None, /) -> None:
        self.errors.append(error)

    def where(self) -> list[tuple[str | None, int | None, str | None]]:
        return [(e.source, e.line, e.raw) for e in self.errors]


async def read_all(
    source: sources.Source, *, batch: int = 1024, **start: int
) -> tuple[list[StreamElement], Rejects]:
    rejects = Rejects()
    await source.open(rejects, **start)
    out: list[StreamElement] = []
    try:
        while (elements := await source.read(batch)) is not None:
            assert len(elements) <= batch
            out.extend(elements)
    finally:
        await source.close()
    return out, rejects


def lines_of(elements: list[StreamElement]) -> list[int | None]:
    return [getattr(e, "line", None) for e in elements]


def values(elements: list[StreamElement]) -> list[Any]:
    return [e.value for e in elements if isinstance(e, Record)]


# --------------------------------------------------------------------------- JSONL


async def test_jsonl_reads_objects_with_their_lines_and_rejects_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b'{"a": 1}\n'
        b"\n"  # blank: skipped
        b'{"a": 2}  \r\n'  # CRLF and trailing spaces are fine
        b"{broken\n"
        b"[1, 2]\n"
        b'"text"\n'
        b'{"a": "\xff"}\n'  # invalid UTF-8
        b"null\n"
        b'{"a": 3}'  # no final newline
    )
    source = sources.jsonl(path)
    elements, rejects = await read_all(source, batch=2)
    assert values(elements) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert lines_of(elements) == [1, 3, 9]
    assert elements[0] == Record({"a": 1})  # compares like a plain record
    assert repr(elements[0]) == "Record(value={'a': 1}, timestamp=None)"
    assert [(e.line, str(e)) for e in rejects.errors] == [
        (4, "invalid JSON: Expecting property name enclosed in double quotes (column 2)"),
        (5, "expected a JSON object, got an array"),
        (6, "expected a JSON object, got a string"),
        (7, "invalid UTF-8: invalid start byte at byte 7"),
        (8, "expected a JSON object, got null"),
    ]
    assert rejects.errors[0].source == str(path)
    assert rejects.errors[0].raw == "{broken"
    assert rejects.errors[3].raw == '{"a": "\ufffd"}'
    assert (source.line, source.offset) == (9, path.stat().st_size)


async def test_jsonl_handles_a_byte_order_mark_and_unicode(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_text('\ufeff{"name": "Zoë"}\n{"name": "天"}\n', encoding="utf-8")
    elements, rejects = await read_all(sources.jsonl(path))
    assert values(elements) == [{"name": "Zoë"}, {"name": "天"}]
    assert rejects.errors == []


async def test_jsonl_resumes_from_a_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(f'{{"n": {n}, "é": 1}}\n' for n in range(10)), encoding="utf-8")
    source = sources.jsonl(path)
    await source.open(Rejects())
    first = await source.read(4)
    offset, line = source.offset, source.line
    await source.close()
    assert first is not None
    assert [v["n"] for v in values(first)] == [0, 1, 2, 3]
    assert offset == len("".join(f'{{"n": {n}, "é": 1}}\n' for n in range(4)).encode())
    rest, _ = await read_all(sources.jsonl(path), start_offset=offset, start_line=line + 1)
    assert [v["n"] for v in values(rest)] == [4, 5, 6, 7, 8, 9]
    assert lines_of(rest) == [5, 6, 7, 8, 9, 10]


async def test_jsonl_reads_files_larger_than_one_chunk(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    line = '{"pad": "' + "x" * 1000 + '", "n": %d}\n'
    path.write_text("".join(line % n for n in range(2500)))  # ~2.5 MB: three chunks
    elements, rejects = await read_all(sources.jsonl(path), batch=1000)
    assert [v["n"] for v in values(elements)] == list(range(2500))
    assert lines_of(elements)[-1] == 2500
    assert rejects.errors == []


async def test_a_run_of_bad_lines_still_returns_batches(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("x\n" * 10 + '{"ok": 1}\n')
    source = sources.jsonl(path)
    rejects = Rejects()
    await source.open(rejects)
    assert await source.read(4) == []  # four bad lines: nothing to return, but not the end
    assert len(rejects.errors) == 4
    await source.close()


async def test_opening_a_missing_or_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"jsonl source: no such file: '.*missing\.jsonl'"):
        await sources.jsonl(tmp_path / "missing.jsonl").open(Rejects())
    with pytest.raises(ConfigError, match=r"csv source: cannot open '.*'"):
        await sources.csv(tmp_path).open(Rejects())  # a directory
    with pytest.raises(ConfigError, match="start_offset"):
        await sources.jsonl(tmp_path / "x").open(Rejects(), start_offset=-1)


# --------------------------------------------------------------------------- CSV


async def test_csv_reads_rows_as_dicts_with_multiline_fields(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(
        "id,name,note\n"
        '1,Ann,"likes, commas"\n'
        '2,Bo,"two\nlines"\n'
        "\n"
        "3,Cy\n"  # one field short
        '4,Di,"say ""hi"""\n'
        '5,"Ed" jr,ok\n'  # a quote inside a field that is not quoted
        "6,Fy,a,b\n",  # one field too many
        encoding="utf-8",
    )
    elements, rejects = await read_all(sources.csv(path), batch=2)
    assert values(elements) == [
        {"id": "1", "name": "Ann", "note": "likes, commas"},
        {"id": "2", "name": "Bo", "note": "two\nlines"},
        {"id": "4", "name": "Di", "note": 'say "hi"'},
        {"id": "5", "name": "Ed jr", "note": "ok"},
    ]
    assert lines_of(elements) == [2, 3, 7, 8]
    assert [(e.line, e.raw, str(e)) for e in rejects.errors] == [
        (6, "3,Cy", "expected 3 fields (the header's), got 2"),
        (9, "6,Fy,a,b", "expected 3 fields (the header's), got 4"),
    ]


async def test_csv_converts_types_and_empty_fields(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("\ufeffid;age\n1;30\n2;\n3;old\n", encoding="utf-8")
    source = sources.csv(path, delimiter=";", types={"age": int})
    elements, rejects = await read_all(source)
    assert values(elements) == [{"id": "1", "age": 30}, {"id": "2", "age": None}]
    assert [(e.line, str(e)) for e in rejects.errors] == [
        (4, "field 'age': cannot convert 'old': invalid literal for int() with base 10: 'old'")
    ]
    assert source.header == ("id", "age")  # type: ignore[attr-defined]


async def test_csv_reads_other_encodings(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("name\nJosé\nJosé,extra\n".encode("latin-1"))
    elements, rejects = await read_all(sources.csv(path, encoding="latin-1"))
    assert values(elements) == [{"name": "José"}]
    assert rejects.where() == [(str(path), 3, "José,extra")]


async def test_csv_reports_an_unterminated_quote_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "open.csv"
    path.write_text('a,b\n1,2\n3,"never\nclosed\n')
    elements, rejects = await read_all(sources.csv(path))
    assert values(elements) == [{"a": "1", "b": "2"}]
    assert [(e.line, e.raw, str(e)) for e in rejects.errors] == [
        (3, '3,"never\nclosed', "unterminated quoted field")
    ]


async def test_csv_header_problems_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(ConfigError, match="repeats a field name"):
        await sources.csv(path).open(Rejects())
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match=r"types names fields the header lacks: \['c'\]"):
        await sources.csv(path, types={"c": int}).open(Rejects())
    with pytest.raises(ConfigError, match="delimiter must be one ASCII character"):
        sources.csv(path, delimiter=";;")
    with pytest.raises(ConfigError, match="types must map"):
        sources.csv(path, types={"a": 3})  # type: ignore[dict-item]


async def test_csv_of_an_empty_file_has_no_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    elements, _ = await read_all(sources.csv(path))
    assert elements == []


async def test_csv_resumes_from_an_offset_after_reading_its_header(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("n\n" + "".join(f"{n}\n" for n in range(6)))
    source = sources.csv(path, types={"n": int})
    await source.open(Rejects())
    await source.read(3)
    offset, line = source.offset, source.line
    await source.close()
    rest, _ = await read_all(source, start_offset=offset, start_line=line + 1)
    assert values(rest) == [{"n": 3}, {"n": 4}, {"n": 5}]
    assert lines_of(rest) == [5, 6, 7]


# --------------------------------------------------------------------------- stdin


async def test_stdin_reads_a_redirected_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    with open_text(path) as file:
        monkeypatch.setattr(sys, "stdin", file)
        elements, _ = await read_all(sources.stdin())
        assert not file.closed  # the source closes its own duplicate only
    assert values(elements) == [{"a": 1}, {"a": 2}]


async def test_stdin_reads_a_pipe_without_blocking_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "r") as pipe:
        monkeypatch.setattr(sys, "stdin", pipe)
        source = sources.stdin("csv", types={"n": int})
        rejects = Rejects()
        os.write(write_end, b"n\n1\n")
        await source.open(rejects)  # waits for the header
        first = await source.read(10)
        assert first is not None
        os.write(write_end, b"2\nx\n")
        os.close(write_end)
        rest: list[StreamElement] = []
        while (batch := await source.read(10)) is not None:
            rest.extend(batch)
        await source.close()
        assert os.get_blocking(pipe.fileno())  # given back as it was
    assert values(first) + values(rest) == [{"n": 1}, {"n": 2}]
    assert [(e.source, e.line) for e in rejects.errors] == [("<stdin>", 4)]


async def test_stdin_cannot_resume_or_read_unknown_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="format must be"):
        sources.stdin("xml")
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(ConfigError, match="no standard input"):
        await sources.stdin().open(Rejects())
    path = tmp_path / "in.jsonl"
    path.write_text("{}\n")
    with open_text(path) as file:
        monkeypatch.setattr(sys, "stdin", file)
        with pytest.raises(ConfigError, match="cannot be resumed"):
            await sources.stdin().open(Rejects(), start_offset=3)


# --------------------------------------------------------------------------- collections


async def test_a_collection_yields_values_records_and_watermarks() -> None:
    source = sources.collection(["a", Record("b", 5), Watermark(6), "c"])
    elements, _ = await read_all(source, batch=3)
    assert elements == [Record("a"), Record("b", 5), Watermark(6), Record("c")]
    assert lines_of(elements) == [1, 2, None, 4]
    rest, _ = await read_all(source, start_offset=2, start_line=3)
    assert rest == [Watermark(6), Record("c")]


async def test_an_async_collection_is_read_as_values_come_and_closed() -> None:
    closed = asyncio.Event()

    async def produce() -> AsyncIterator[int]:
        try:
            for n in range(5):
                yield n
        finally:
            closed.set()

    source = sources.collection(produce())
    rejects = Rejects()
    await source.open(rejects, start_offset=1)
    assert await source.read(10) == [Record(1)]
    await source.close()
    assert closed.is_set()
    with pytest.raises(TypeError, match="iterable"):
        sources.collection(42)  # type: ignore[arg-type]


async def test_a_jsonl_file_runs_through_a_job(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(f'{{"n": {n}}}\n' for n in range(100)))
    env = StreamEnvironment(buffer_size=7)
    out = env.from_source(sources.jsonl(path)).map(lambda e: e["n"]).sink_to(sinks.collect())
    result = await env.execute_async()
    assert out.values == list(range(100))
    assert result.events_in == 100
    assert repr(sources.jsonl(path)).startswith("<_JsonlSource")
