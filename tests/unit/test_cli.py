from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from asyncwait.cli import main
from asyncwait.cli.progress import LineDisplay, LiveDisplay
from asyncwait.cli.summary import print_summary, summarize, write_json_summary
from asyncwait.cli.views import OperatorView, ProgressView

from .test_jobfile import JOB, LOOKUP, make_data, write_job


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_data(tmp_path)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ exit status 2


def test_bad_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert main(["demo", "--events", "-3"]) == 2
    assert "argument --events: must be an integer >= 1, got '-3'" in capsys.readouterr().err
    assert main(["demo", "--mode", "sorted"]) == 2
    assert main(["--help"]) == 0
    assert "validate" in capsys.readouterr().out


def test_bad_job_file_exits_2(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(data_dir, JOB.replace('mode = "unordered"', 'mode = "sorted"'))
    for command in ("run", "validate"):
        assert main([command, str(job)]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"error: {job}: lookup[0].mode: 'sorted' is not one of ordered, unordered, "
            "key_ordered\n"
        )
    assert main(["run", str(data_dir / "nope.toml")]) == 2
    assert "nope.toml: cannot read job file" in capsys.readouterr().err


def test_a_lookup_without_its_driver_exits_2_when_run(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncwait.jobfile import _build

    monkeypatch.setitem(_build._DRIVERS, "postgres", "no_such_driver_module")
    lookup = '[[lookup]]\ntype = "postgres"\ndsn = "postgresql://u:secret@db/app"\n'
    lookup += 'table = "dim_user"\nkey = "user_id"\non = "userID"\n'
    job = write_job(data_dir, JOB.replace(LOOKUP, lookup))
    assert main(["validate", str(job)]) == 0
    out = capsys.readouterr().out
    needs = "lookup[0].type: lookup type 'postgres' needs its driver no_such_driver_module"
    assert f"note: {needs}" in out
    assert "pip install 'asyncwait[postgres]'" in out
    assert main(["run", str(job)]) == 2
    err = capsys.readouterr().err
    assert needs in err
    assert "Traceback" not in err
    assert "secret" not in out + err


def test_validate_describes_the_pipeline(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(data_dir)
    assert main(["validate", str(job)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"job 'enrich' ({job})\n")
    assert "lookup[0]  sqlite" in out
    assert "unordered; capacity 10; timeout 1 s; lru cache of 100" in out
    assert out.endswith(f"{job}: ok\n")


def test_validate_describes_a_lookups_resilience_policy(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = "\n".join(
        [
            'on_error = "dead_letter"',
            "attempt_timeout = 0.25",
            "rate_limit = 500.0",
            "burst = 50",
            "adaptive = { min = 2, max = 10 }",
            "circuit_breaker = { failure_ratio = 0.5, min_calls = 20, open_for = 5.0 }",
        ]
    )
    job = write_job(data_dir, JOB.replace("timeout = 1.0\n", "timeout = 1.0\n" + policy + "\n"))
    assert main(["validate", str(job)]) == 0
    out = capsys.readouterr().out
    assert (
        "on_error dead_letter; attempt_timeout 0.25 s; rate_limit 500/s burst 50; adaptive 2..10; "
        "circuit_breaker 0.5 of 20 calls, open 5 s"
    ) in out


def test_missing_rich_names_the_extra(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)
    assert main(["run", str(write_job(data_dir))]) == 1
    assert "pip install 'asyncwait[cli]'" in capsys.readouterr().err


# ------------------------------------------------------------------ running jobs


def test_run_succeeds_and_writes_the_summary(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(data_dir)
    summary_path = data_dir / "summary.json"
    assert main(["run", str(job), "--json-summary", str(summary_path)]) == 0
    err = capsys.readouterr().err
    assert "job enrich" in err
    assert "events in" in err
    out = read_jsonl(data_dir / "out.jsonl")
    assert sorted((e["userID"], e.get("age"), e["productID"]) for e in out) == [
        ("user_1", 22, 2),
        ("user_1", 22, 2),
        ("user_2", 35, 3),
        ("user_9", None, 4),
    ]
    (error,) = read_jsonl(data_dir / "errors.jsonl")
    assert error["line"] == 3
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "succeeded"
    # The unreadable line is bad input: an event in, and an error.
    assert (summary["events_in"], summary["events_out"], summary["errors"]) == (5, 4, 1)
    assert summary["errors_path"] == str(data_dir / "errors.jsonl")
    (operator,) = [op for op in summary["operators"] if op["name"].startswith("lookup[0]")]
    assert operator["cache_hits"] + operator["cache_misses"] == 4


def test_run_quiet_prints_nothing(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--quiet", str(write_job(data_dir))]) == 0
    assert capsys.readouterr() == ("", "")


def test_failed_job_exits_1_without_traceback(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(data_dir)
    summary_path = data_dir / "summary.json"
    assert main(["run", str(job), "--max-errors", "0", "--json-summary", str(summary_path)]) == 1
    err = capsys.readouterr().err
    assert "error: job 'enrich' failed: " in err
    assert "Traceback" not in err
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "failed"
    assert summary["error"] in err
    assert main(["run", str(job), "--max-errors", "0", "--quiet", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_checkpoint_settings_are_used(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(data_dir, JOB + '\n[checkpoint]\ninterval = 5.0\ndir = "cp"\n')
    assert main(["validate", str(job)]) == 0
    assert "checkpoint every 5 s into" in capsys.readouterr().out
    summary_path = data_dir / "summary.json"
    assert main(["run", "--quiet", "--json-summary", str(summary_path), str(job)]) == 0
    first = (data_dir / "out.jsonl").read_text()
    checkpoints = json.loads(summary_path.read_text())["checkpoints"]
    assert checkpoints == {
        "dir": str(data_dir / "cp"),
        "restored_from": None,
        "completed": 1,
        "last": 1,
    }
    # The last run finished: running again starts over and writes the same output.
    assert main(["run", "--quiet", "--json-summary", str(summary_path), str(job)]) == 0
    assert (data_dir / "out.jsonl").read_text() == first
    assert json.loads(summary_path.read_text())["checkpoints"]["last"] == 2
    assert main(["run", "--quiet", "--fresh", str(job)]) == 0
    assert sorted(p.name for p in (data_dir / "cp" / "enrich").iterdir()) == [
        "KEY",  # the job's key stays
        "MANIFEST.json",
        "chk-000001.ckpt",  # --fresh deleted the earlier ones
    ]


def test_demo_subprocess_summary_adds_up(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    out_dir = tmp_path / "demo"
    command = [sys.executable, "-m", "asyncwait", "demo", "--events", "2000", "--users", "100"]
    command += ["--quiet", "--json-summary", str(summary_path), "--dir", str(out_dir)]
    command += ["--seed", "7"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""
    summary = json.loads(summary_path.read_text())
    malformed = 2  # 0.1 % of 2000 lines
    assert summary["status"] == "succeeded"
    assert summary["errors"] == malformed
    # Left join: every line read is an event in, and either an output or an error.
    assert summary["events_in"] == 2000
    assert summary["events_in"] == summary["events_out"] + summary["errors"]
    enriched = read_jsonl(out_dir / "enriched.jsonl")
    assert len(enriched) == 2000 - malformed
    assert len(read_jsonl(out_dir / "errors.jsonl")) == malformed
    with_age = [e for e in enriched if "age" in e]
    assert 0 < len(with_age) < len(enriched)  # user_50 and user_100 have no row
    assert all(int(str(e["userID"]).removeprefix("user_")) % 50 != 0 for e in with_age)
    assert (out_dir / "job.toml").is_file()


def test_demo_in_process_with_latency_and_no_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "demo"
    argv = ["demo", "--events", "300", "--users", "20", "--dir", str(out_dir), "--seed", "1"]
    argv += ["--latency-ms", "1", "--no-cache", "--mode", "ordered", "--capacity", "50"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "generated 300 events (1 malformed) and dim_user (20 of 20 users)" in err
    assert f"enriched events: {out_dir / 'enriched.jsonl'}" in err
    job = (out_dir / "job.toml").read_text()
    assert 'mode = "ordered"' in job
    assert "capacity = 50" in job
    assert "cache" not in job
    assert len(read_jsonl(out_dir / "enriched.jsonl")) == 299
    with_age = read_jsonl(out_dir / "enriched.jsonl")
    assert all("age" in e for e in with_age)  # fewer than 50 users: every one has a row


# ------------------------------------------------------------------ displays and summaries


def view(elapsed: float, events_in: int, *, hits: int = 0) -> ProgressView:
    lookup = OperatorView(
        "lookup[0]:dim_user",
        in_flight=7,
        capacity=100,
        emitted=events_in,
        latency_p50=0.0005,
        latency_p99=0.004,
        counters={
            "cache_hits": hits,
            "cache_misses": events_in - hits,
            "matched": events_in - 10,
            "missed": 10,
            "dropped": 0,
            "lookup_failed": 0,
        },
    )
    return ProgressView(elapsed, events_in, events_in - 1, 1, (lookup, OperatorView("map")))


def test_line_display_writes_at_most_every_few_seconds() -> None:
    stream = io.StringIO()
    display = LineDisplay(stream, every=5.0)
    for second in range(1, 12):
        display.update(view(second, second * 1000, hits=second * 900))
    display.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        "[    5.0 s] in 5,000 (1,000/s), out 4,999 (1,000/s), errors 1 | "
        "lookup[0]:dim_user: in-flight 7/100, cache hits 90.0%, matched 4,990 (99.8%), "
        "missed 10, dropped 0, failed 0, p99 4.00 ms"
    )
    assert lines[1].startswith("[   10.0 s] in 10,000 (1,000/s)")


def test_live_display_and_summary_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    display = LiveDisplay(console, "enrich")
    display.update(view(1.0, 1000, hits=500))
    display.update(view(2.0, 3000, hits=2000))
    display.close()
    display.close()
    shown = buffer.getvalue()
    assert "in 3,000 (2,000/s)" in shown
    assert "7/100" in shown
    assert "66.7%" in shown
    assert "2,990 (99.7%)" in shown  # the join's matched lookups
    summary = summarize(view(2.0, 3000, hits=2000), job="enrich", errors_path=Path("e.jsonl"))
    print_summary(summary, console)
    table = buffer.getvalue()[len(shown) :]
    assert "job enrich" in table
    assert "1 (see e.jsonl)" in table
    assert "1,500 events/s" in table
    assert "lookup[0]:dim_user" in table


def test_plain_summary_and_json(tmp_path: Path) -> None:
    summary = summarize(
        view(4.0, 2000, hits=1000), job="enrich", status="failed", error="job 'enrich' failed: x"
    )
    assert summary["throughput_eps"] == 500.0
    assert summary["cache_hit_ratio"] == 0.5
    (lookup, mapped) = summary["operators"]
    assert (lookup["latency_p50_ms"], lookup["latency_p99_ms"]) == (0.5, 4.0)
    assert (mapped["latency_p50_ms"], mapped["cache_hit_ratio"], mapped["capacity"]) == (
        None,
        None,
        None,
    )
    buffer = io.StringIO()
    print_summary(summary, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert text.splitlines()[:4] == [
        "job enrich",
        "  status            failed",
        "  events in         2,000",
        "  events out        1,999",
    ]
    assert "  cache hit ratio   50.0%" in text
    assert "  lookup[0]:dim_user    2,000  0.50 ms  4.00 ms       50.0%          0/0/0" in text
    assert "  lookup join         matched  missed  dropped  failed  match ratio" in text
    assert "  lookup[0]:dim_user    1,990      10        0       0        99.5%" in text
    assert "  map " not in text.split("lookup join")[1]  # no join: no row of join results
    assert (lookup["matched"], lookup["missed"], lookup["dropped"], lookup["failed"]) == (
        1990,
        10,
        0,
        0,
    )
    assert lookup["match_ratio"] == 0.995
    assert (mapped["matched"], mapped["missed"], mapped["failed"], mapped["match_ratio"]) == (
        None,
        None,
        None,
        None,
    )
    path = tmp_path / "s.json"
    write_json_summary(summary, path)
    assert json.loads(path.read_text()) == summary


def test_summary_shows_bad_input_without_an_errors_file(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(data_dir, JOB.replace('[errors]\npath = "errors.jsonl"\n', "[errors]\n"))
    assert main(["run", str(job)]) == 0
    err = capsys.readouterr().err
    assert f"bad input at {data_dir / 'events.jsonl'}:3: invalid JSON" in err
    assert not (data_dir / "errors.jsonl").exists()


def test_a_missing_column_found_at_open_exits_2(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(data_dir, JOB.replace('columns = ["age"]', 'columns = ["agee"]'))
    assert main(["run", str(job)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {job}: lookup sqlite:")
    assert "no column 'agee'; columns: user_id, age, city" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------ join results


def write_events(directory: Path, events: list[dict[str, object]]) -> None:
    (directory / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def browse(user: str, n: int, **more: object) -> dict[str, object]:
    return {"userID": user, "eventTime": "2016-06-06 07:03:42", "productID": n, **more}


def test_a_join_that_matches_nothing_warns_once_and_shows_matched_0(data_dir: Path) -> None:
    # A wrong key column that exists: every lookup misses, the left join passes them all.
    events = [browse(f"user_{1 + i % 2}", i) for i in range(1200)]
    write_events(data_dir, events)
    job = write_job(data_dir, JOB.replace('key = "user_id"', 'key = "city"'))
    summary_path = data_dir / "summary.json"
    command = [sys.executable, "-m", "asyncwait", "run", str(job)]
    command += ["--json-summary", str(summary_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line.lower()]
    assert warnings == [
        f"warning: lookup[0]:dim_user: lookup join on sqlite:{data_dir / 'dim.db'}/dim_user: "
        "none of the first 1,000 lookups found a row (event field 'userID' is looked up in "
        "key column 'city'); check the key column, the event field and the table"
    ]
    summary = json.loads(summary_path.read_text())
    (op,) = summary["operators"]
    assert (op["matched"], op["missed"], op["dropped"], op["failed"]) == (0, 1200, 0, 0)
    assert op["match_ratio"] == 0.0
    assert (op["counters"]["matched"], op["counters"]["lookup_failed"]) == (0, 0)
    lines = done.stderr.splitlines()
    at = lines.index("  lookup join         matched  missed  dropped  failed  match ratio")
    assert lines[at + 1].split() == ["lookup[0]:dim_user", "0", "1,200", "0", "0", "0.0%"]


@pytest.mark.parametrize(("ratio", "code"), [(0.8, 1), (0.75, 0)])
def test_min_match_ratio_fails_the_run_below_it(
    data_dir: Path, capsys: pytest.CaptureFixture[str], ratio: float, code: int
) -> None:
    # make_data: 3 of the 4 readable events find a row (user_9 has none): a ratio of 0.75.
    text = JOB.replace("capacity = 10\n", f"capacity = 10\nmin_match_ratio = {ratio}\n")
    job = write_job(data_dir, text)
    summary_path = data_dir / "summary.json"
    assert main(["run", str(job), "--json-summary", str(summary_path)]) == code
    err = capsys.readouterr().err
    summary = json.loads(summary_path.read_text())
    if code == 0:
        assert summary["status"] == "succeeded"
        return
    message = (
        f"job 'enrich' failed: lookup[0]:dim_user: lookup join on "
        f"sqlite:{data_dir / 'dim.db'}/dim_user: matched 3 of 4 events (75.0%), "
        "below min_match_ratio 0.8"
    )
    assert f"error: {message}\n" in err
    assert "Traceback" not in err
    assert (summary["status"], summary["error"]) == ("failed", message)
    assert summary["operators"][0]["matched"] == 3


def test_a_csv_left_join_writes_empty_cells_and_rejects_an_extra_field(data_dir: Path) -> None:
    events = [
        browse("user_9", 1),  # no row, and first: the header still has "age"
        browse("user_1", 2),
        browse("user_2", 3, coupon="X5"),  # a field the header does not have
        browse("user_7", 4),
    ]
    write_events(data_dir, events)
    text = JOB.replace('type = "jsonl"\npath = "out.jsonl"', 'type = "csv"\npath = "out.csv"')
    job = write_job(data_dir, text)
    summary_path = data_dir / "summary.json"
    assert main(["run", "--quiet", str(job), "--json-summary", str(summary_path)]) == 0
    assert (data_dir / "out.csv").read_text().splitlines() == [
        "userID,eventTime,productID,age",
        "user_9,2016-06-06 07:03:42,1,",
        "user_1,2016-06-06 07:03:42,2,22",
        "user_7,2016-06-06 07:03:42,4,",
    ]
    (error,) = read_jsonl(data_dir / "errors.jsonl")
    assert '"coupon": "X5"' in str(error["raw"])
    assert error["reason"] == (
        "field 'coupon' is not in the CSV header ['userID', 'eventTime', 'productID', 'age']"
    )
    summary = json.loads(summary_path.read_text())
    assert (summary["events_in"], summary["events_out"], summary["errors"]) == (4, 3, 1)
    assert summary["operators"][0]["missed"] == 2


def test_the_displays_show_a_lookups_flow_control_and_its_set_aside_events() -> None:
    lookup = OperatorView(
        "lookup[0]:users",
        in_flight=3,
        capacity=50,
        emitted=900,
        counters={
            "matched": 900,
            "missed": 0,
            "dropped": 0,
            "lookup_failed": 140,
            "concurrency_limit": 12,
            "breaker_open": 1,
            "breaker_openings": 2,
            "rate_limit_waits": 31,
        },
        dead_letters=100,
    )
    progress = ProgressView(3.0, 1000, 900, 0, (lookup,), dead_letters=100)
    stream = io.StringIO()
    line = LineDisplay(stream, every=0.0)
    line.update(progress)
    assert (
        "limit 12, breaker OPEN (2 openings), rate waits 31, skipped 0, dead letters 100"
        in stream.getvalue()
    )
    buffer = io.StringIO()
    live = LiveDisplay(Console(file=buffer, force_terminal=True, width=140), "enrich")
    live.update(progress)
    live.close()
    shown = buffer.getvalue()
    assert "OPEN (2 openings)" in shown
    assert "resilience" in shown
    summary = summarize(progress, job="enrich", errors_path=Path("e.jsonl"))
    assert (summary["dead_letters"], summary["skipped"]) == (100, 0)
    assert summary["operators"][0]["dead_letters"] == 100
    printed = io.StringIO()
    print_summary(summary, Console(file=printed, width=200))
    assert "dead letters      100 (in e.jsonl, kind lookup_failed)" in printed.getvalue()
