"""Polish found while trying the CLI as a new user: messages, help, refusals, quiet exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncwait import AsyncWaitOperator, OutputMode, StreamEnvironment, lookups, sinks, sources
from asyncwait.cli import demo, main

ROOT = Path(__file__).resolve().parents[2]


def test_demo_sizes_below_one_get_one_message(capsys: pytest.CaptureFixture[str]) -> None:
    messages = []
    for option, value in (("--events", "-5"), ("--events", "0"), ("--users", "0")):
        assert main(["demo", option, value]) == 2
        messages.append(capsys.readouterr().err.splitlines()[-1])
    assert messages == [
        "asyncwait demo: error: argument --events: must be an integer >= 1, got '-5'",
        "asyncwait demo: error: argument --events: must be an integer >= 1, got '0'",
        "asyncwait demo: error: argument --users: must be an integer >= 1, got '0'",
    ]


def test_every_demo_option_has_help_and_shows_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--help"]) == 0
    text = capsys.readouterr().out
    options = text[text.index("options:") :]
    for option in ("--events", "--users", "--dir", "--mode", "--capacity", "--latency-ms"):
        entry = options[options.index(option) :].split("\n  -", 1)[0]
        assert "(default: " in " ".join(entry.split()), option
    for option in ("--no-cache", "--seed", "--quiet", "--json-summary", "--loop"):
        entry = options[options.index(option) :].split("\n  -", 1)[0]
        assert len(" ".join(entry.split())) > len(option) + 12, option  # has help text


def test_demo_never_replaces_files_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "events.jsonl").write_text("mine\n")
    assert main(["demo", "--dir", str(tmp_path), "--events", "100", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds events.jsonl, which the demo did not write" in err
    assert (tmp_path / "events.jsonl").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]


def test_demo_replaces_its_own_files(tmp_path: Path) -> None:
    for seed in ("1", "2"):
        argv = ["demo", "--dir", str(tmp_path), "--events", "200", "--users", "20"]
        assert main([*argv, "--seed", seed, "--quiet"]) == 0
    assert len((tmp_path / "enriched.jsonl").read_text().splitlines()) > 150


def test_demo_reports_its_progress_while_writing(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    data = demo.generate(
        tmp_path, events=120_000, users=120_000, seed=3, progress=lambda *a: seen.append(a)
    )
    events = [(done, total) for what, done, total in seen if what == "events.jsonl"]
    users = [(done, total) for what, done, total in seen if what == "dim_user.db"]
    assert len(events) > 1
    assert len(users) > 1
    assert events[-1] == (120_000, 120_000)
    assert users[-1] == (data.rows, data.rows)
    assert [d for d, _ in events] == sorted(d for d, _ in events)


def test_the_operator_takes_the_mode_names_the_job_file_uses() -> None:
    async def same(value: int) -> int:
        return value

    modes = [AsyncWaitOperator(same, mode=m, key=abs)._mode for m in ("ordered", "UNORDERED")]
    assert modes == [OutputMode.ORDERED, OutputMode.UNORDERED]
    assert AsyncWaitOperator(same, mode="key_ordered", key=abs)._mode is OutputMode.KEY_ORDERED
    with pytest.raises(ValueError, match=r"one of 'ordered', 'unordered', 'key_ordered', got"):
        AsyncWaitOperator(same, mode="sorted")


async def test_a_json_true_key_never_matches_the_integer_key_1(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "dim.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        con.execute("INSERT INTO t VALUES (1, 'one')")
    con.close()
    for mode in OutputMode:
        env = StreamEnvironment()
        table = lookups.sqlite(db, table="t", key="k")
        events = [{"k": 1}, {"k": True}]
        out = (
            env.from_collection(events)
            .lookup_join(table, on="k", mode=mode, cache=None)
            .sink_to(sinks.collect())
        )
        result = await env.execute_async()
        assert out.values == [{"k": 1, "v": "one"}], mode
        assert result.errors == 1
        assert "a boolean, which matches no key" in result.error_samples[0]["reason"]


async def test_a_source_path_that_is_a_folder_says_so(tmp_path: Path) -> None:
    env = StreamEnvironment()
    env.from_source(sources.jsonl(tmp_path)).sink_to(sinks.collect())
    with pytest.raises(ValueError, match=r"is a folder, not a file"):
        await env.execute_async()


def test_a_closed_stdout_ends_the_job_quietly(tmp_path: Path) -> None:
    data = demo.generate(tmp_path, events=20_000, users=500, seed=5)
    job = demo.write_job(data)
    text = job.read_text().replace('type = "jsonl"\npath = "enriched.jsonl"', 'type = "stdout"')
    job.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    pipeline = subprocess.run(
        [sys.executable, "-c", _HEAD_TWO, str(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    report = json.loads(pipeline.stdout)
    assert report["lines"] == 2
    assert report["status"] == 141  # 128 + SIGPIPE, as a filter killed by it
    assert report["stderr"] == ""  # no "failed", no traceback


# Runs `asyncwait run JOB | head -2` without a shell: reads two lines, closes the pipe.
_HEAD_TWO = """
import json, subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "asyncwait", "run", sys.argv[1]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
lines = [child.stdout.readline() for _ in range(2)]
child.stdout.close()
stderr = child.stderr.read().decode()
status = child.wait(timeout=100)
print(json.dumps({"lines": sum(1 for line in lines if line), "status": status, "stderr": stderr}))
"""
