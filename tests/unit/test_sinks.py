"""Sinks: JSONL, CSV, stdout and collect; round trips through jobs; values a sink cannot write."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from asyncwait import BadInputError, ClosedError, ConfigError, Record, Watermark, sinks, sources
from asyncwait.runtime import StreamEnvironment


def read_errors(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_jsonl_round_trip(tmp_path: Path) -> None:
    events = [{"id": n, "name": f"user {n}", "tags": ["a", "é"], "score": n / 2} for n in range(50)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    env = StreamEnvironment(buffer_size=16)
    sink = env.from_source(sources.jsonl(src)).sink_to(sinks.jsonl(out))
    result = await env.execute_async()
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events
    assert lines[1] == '{"id":1,"name":"user 1","tags":["a","é"],"score":0.5}'  # compact UTF-8
    assert result.events_out == 50
    assert "written 50" in repr(sink)


async def test_jsonl_routes_values_json_cannot_represent_to_the_errors_file(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    errors = tmp_path / "errors.jsonl"
    when = dt.datetime(2016, 6, 6, 7, 3, 42, tzinfo=dt.UTC)
    values: list[Any] = [{"ok": 1}, {"at": when}, {"x": float("nan")}, {1, 2}, "plain", 7]
    env = StreamEnvironment(errors_path=errors)
    env.from_collection(values).sink_to(sinks.jsonl(out))
    result = await env.execute_async()
    assert out.read_text() == '{"ok":1}\n"plain"\n7\n'
    assert (result.events_out, result.errors) == (3, 3)
    entries = read_errors(errors)
    assert [(e["line"], e["operator"]) for e in entries] == [
        (2, str(out)),
        (3, str(out)),
        (4, str(out)),
    ]
    assert entries[0]["reason"] == (
        "cannot write it as JSON: Object of type datetime is not JSON serializable"
    )
    assert (
        entries[0]["raw"]
        == '{"at": "datetime.datetime(2016, 6, 6, 7, 3, 42, tzinfo=datetime.timezone.utc)"}'
    )
    assert "Out of range float values" in entries[1]["reason"]


async def test_csv_round_trip_with_a_header_from_the_first_record(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text('id,name,age\n1,"Ann, Jr",30\n2,Bo,\n3,"two\nlines",5\n', encoding="utf-8")
    out = tmp_path / "out.csv"
    env = StreamEnvironment()
    env.from_source(sources.csv(src, types={"age": int})).sink_to(sinks.csv(out))
    await env.execute_async()
    assert out.read_text(encoding="utf-8") == (
        'id,name,age\n1,"Ann, Jr",30\n2,Bo,\n3,"two\nlines",5\n'
    )
    text = out.read_text(encoding="utf-8")
    assert list(csv.DictReader(text.splitlines(keepends=True)))[2] == {
        "id": "3",
        "name": "two\nlines",
        "age": "5",
    }


async def test_csv_routes_rows_that_do_not_fit_the_header(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    rows: list[Any] = [
        {"a": 1, "b": 2},
        {"b": 3, "a": 4},
        {"a": 5},
        [6],
        {"a": 7, "b": None},
        {"a": 8, "c": 9},
        {"d": 1, "a": 2, "b": 3, "e": 4},
    ]
    env = StreamEnvironment()
    env.from_collection(rows).sink_to(sinks.csv(out, delimiter=";"))
    result = await env.execute_async()
    # A missing field is an empty cell; a field outside the header is bad input, named.
    assert out.read_text() == "a;b\n1;2\n4;3\n5;\n7;\n"
    assert [(s["line"], s["reason"]) for s in result.error_samples] == [
        (4, "a CSV row must be a dict, got list"),
        (6, "field 'c' is not in the CSV header ['a', 'b']"),
        (7, "fields 'd', 'e' are not in the CSV header ['a', 'b']"),
    ]
    assert (result.events_out, result.errors) == (4, 3)


async def test_csv_header_takes_the_declared_columns_after_the_first_record(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.csv"
    rows: list[Any] = [{"user": "u1"}, {"user": "u2", "age": 22}, {"age": 3, "user": "u3"}]
    env = StreamEnvironment()
    env.from_collection(rows).sink_to(sinks.csv(out, columns=["user", "age", "city"]))
    await env.execute_async()
    # "user" is the first record's own field already: declared columns are not repeated.
    assert out.read_text() == "user,age,city\nu1,,\nu2,22,\nu3,3,\n"
    for bad in ("age", ["age", "age"], [""], [1]):
        with pytest.raises(ConfigError, match="columns must be a list of distinct column names"):
            sinks.csv(out, columns=bad)  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(ConfigError, match="columns is an option of format 'csv'"):
        sinks.stdout(columns=["age"])


async def test_stdout_writes_each_batch(capsys: pytest.CaptureFixture[str]) -> None:
    env = StreamEnvironment()
    env.from_collection([{"a": 1}, {"a": 2}]).sink_to(sinks.stdout())
    await env.execute_async()
    env2 = StreamEnvironment()
    env2.from_collection([{"a": 3}]).sink_to(sinks.stdout("csv"))
    await env2.execute_async()
    assert capsys.readouterr().out == '{"a":1}\n{"a":2}\na\n3\n'
    with pytest.raises(ConfigError, match="format must be"):
        sinks.stdout("xml")
    with pytest.raises(ConfigError, match="delimiter"):
        sinks.csv("out.csv", delimiter="")


async def test_collect_keeps_values_and_elements_and_resets_per_run() -> None:
    sink = sinks.collect()
    env = StreamEnvironment()
    env.from_collection([Record("a", 1), Watermark(1), "b"]).sink_to(sink)
    await env.execute_async()
    await env.execute_async()
    assert sink.values == ["a", "b"]
    assert sink.elements[:3] == [Record("a", 1), Watermark(1), Record("b")]
    assert sink.result() is sink.values
    assert repr(sink) == "<CollectSink 'collect' values 2>"


async def test_a_file_sink_used_before_open_or_outside_a_job(tmp_path: Path) -> None:
    sink = sinks.jsonl(tmp_path / "out.jsonl")
    with pytest.raises(ClosedError, match="before open"):
        sink.write([Record(1)])
    await sink.open(lambda error, record=None: None)
    sink.write([Record(1), Watermark(3)])
    await sink.close()
    await sink.close()  # idempotent
    assert (tmp_path / "out.jsonl").read_text() == "1\n"
    bare = sinks.jsonl(tmp_path / "bare.jsonl")
    assert bare.result() is None
    with pytest.raises(ClosedError):
        bare.write([Record(float("inf"))])


async def test_the_default_reject_of_a_sink_raises(tmp_path: Path) -> None:
    class Strict(sinks.Sink):
        def write(self, elements: list[Any]) -> None:
            self._reject(BadInputError("nope"))

    with pytest.raises(BadInputError, match="nope"):
        Strict("strict").write([])
