"""`asyncwait run` and SIGINT/SIGTERM: the first signal stops after a checkpoint (exit 0), a
second one exits at once; either way the next run completes the output exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asyncwait import OutputMode
from asyncwait.cli import demo

EVENTS = 200_000


def asyncwait(*args: str, cwd: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "asyncwait", *args]
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo job's output from one uninterrupted run without checkpoints."""
    folder = tmp_path_factory.mktemp("reference")
    data = demo.generate(folder, events=EVENTS, users=5_000, seed=11)
    job = demo.write_job(data, mode=OutputMode.ORDERED)
    code, err = finish(asyncwait("run", "--quiet", str(job), cwd=folder))
    assert code == 0, err
    return (folder / "enriched.jsonl").read_text()


def checkpointed_job(folder: Path) -> Path:
    data = demo.generate(folder, events=EVENTS, users=5_000, seed=11)
    job = demo.write_job(data, mode=OutputMode.ORDERED)
    with job.open("a") as file:
        file.write('\n[checkpoint]\ninterval = 0.2\ndir = "cp"\n')
    return job


def wait_for_a_checkpoint(folder: Path, process: subprocess.Popen[str]) -> None:
    # Polling a folder for a file another process writes: the one wait these tests need.
    for _ in range(3000):
        if list(folder.glob("cp/*/chk-*.ckpt")):
            return
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.01)
    raise AssertionError("no checkpoint was written")


def test_sigterm_stops_after_a_checkpoint_and_the_next_run_resumes(
    tmp_path: Path, expected: str
) -> None:
    job = checkpointed_job(tmp_path)
    process = asyncwait("run", "--quiet", str(job), cwd=tmp_path)
    wait_for_a_checkpoint(tmp_path, process)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code == 0, err
    assert "SIGTERM: taking a checkpoint, then stopping" in err
    assert "run it again to resume from there" in err
    partial = (tmp_path / "enriched.jsonl").read_text()
    assert len(partial) < len(expected)
    assert expected.startswith(partial)  # committed output only, in order

    summary = tmp_path / "summary.json"
    code, err = finish(
        asyncwait("run", "--quiet", "--json-summary", str(summary), str(job), cwd=tmp_path)
    )
    assert code == 0, err
    assert (tmp_path / "enriched.jsonl").read_text() == expected
    report = json.loads(summary.read_text())
    assert report["checkpoints"]["restored_from"] is not None
    # This run's numbers, and the totals over both runs: each event counted once.
    assert report["counted"] == "this run"
    assert report["events_in"] < EVENTS
    written = len(expected.splitlines())
    assert report["job_totals"] == {
        "runs": 2,
        "events_in": EVENTS,
        "events_out": written,
        "errors": EVENTS - written,  # the demo's malformed lines, each counted once
        "skipped": 0,
        "dead_letters": 0,
    }


def test_a_second_signal_exits_at_once_and_loses_nothing(tmp_path: Path, expected: str) -> None:
    job = checkpointed_job(tmp_path)
    process = asyncwait("run", "--quiet", str(job), cwd=tmp_path)
    wait_for_a_checkpoint(tmp_path, process)
    # Two different signals (the kernel merges a repeated one not handled yet); they may be
    # handled in either order.
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code in (128 + signal.SIGINT, 128 + signal.SIGTERM), err
    assert ": a second signal, exiting now" in err
    assert "stopped:" not in err
    assert expected.startswith((tmp_path / "enriched.jsonl").read_text())

    code, err = finish(asyncwait("run", "--quiet", str(job), cwd=tmp_path))
    assert code == 0, err
    assert (tmp_path / "enriched.jsonl").read_text() == expected
