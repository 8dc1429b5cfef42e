"""One writer per job: a second `asyncwait run` of a running job is refused at once, naming the
first run's process, and the first completes its output; a lock left by a SIGKILLed run does
not block the next one.

These tests run real processes. The first run is held (its lookups wait for a gate file,
see ``gatedrun.py``) until the test has tried the second, so no timing decides the outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asyncwait import OutputMode
from asyncwait._locks import FOLDER_LOCK, lock_outputs
from asyncwait._paths import Access, PathUse, resolve
from asyncwait.cli import demo

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 5_000


def asyncwait(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "asyncwait", *args]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def job_in(folder: Path, *, checkpoints: bool) -> Path:
    data = demo.generate(folder, events=EVENTS, users=300, seed=3)
    job = demo.write_job(data, mode=OutputMode.ORDERED)
    # No deadline per element: the held run waits as long as the test needs.
    text = job.read_text().replace("timeout = 5.0\n", "")
    if checkpoints:
        text += '\n[checkpoint]\ninterval = 0.1\ndir = "cp"\n'
    job.write_text(text)
    return job


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The job's output from one run alone, without checkpoints."""
    folder = tmp_path_factory.mktemp("reference")
    code, err = finish(asyncwait("run", "--quiet", str(job_in(folder, checkpoints=False))))
    assert code == 0, err
    return (folder / demo.OUTPUT_FILE).read_text()


def lock_holder(lock: Path, process: subprocess.Popen[str]) -> int:
    """The pid recorded in ``lock`` once it is there (``process`` must still be running)."""
    # Polling for a file another process writes: the one wait these tests need.
    for _ in range(6000):
        assert process.poll() is None, process.communicate()[1]
        try:
            return int(json.loads(lock.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.01)
    raise AssertionError(f"{lock} was never written")


def lock_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.lock"))


@pytest.mark.timeout(300)
def test_a_second_run_is_refused_naming_the_first_which_completes(
    tmp_path: Path, expected: str
) -> None:
    job = job_in(tmp_path, checkpoints=True)
    gate = tmp_path / "gate"
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.recovery.gatedrun", str(gate), "run", "--quiet", str(job)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sink_lock = tmp_path / f".{demo.OUTPUT_FILE}.lock"
        assert lock_holder(sink_lock, first) == first.pid
        (folder_lock,) = tmp_path.glob(f"cp/*/{FOLDER_LOCK}")
        assert lock_holder(folder_lock, first) == first.pid
        for extra in ([], ["--fresh"]):  # --fresh would delete the first run's checkpoints
            code, err = finish(asyncwait("run", "--quiet", *extra, str(job)))
            assert code == 2, err
            assert err.startswith(f"error: {job}: "), err
            assert f"is being written by another run: process {first.pid} on host" in err
            assert f"holds the lock {sink_lock}" in err
            assert err.count("\n") == 1, err
        assert first.poll() is None  # still held at the gate, untouched
    finally:
        gate.touch()
    code, err = finish(first)
    assert code == 0, err
    assert (tmp_path / demo.OUTPUT_FILE).read_text() == expected
    assert lock_files(tmp_path) == []  # the first run removed the lock files it made


@pytest.mark.timeout(300)
def test_a_lock_left_by_a_killed_run_does_not_block_the_next(tmp_path: Path, expected: str) -> None:
    job = job_in(tmp_path, checkpoints=True)
    # The run kills itself (SIGKILL) right after writing its first checkpoint: its locks
    # are held at that moment, and its lock files stay behind.
    code, err = finish(asyncwait("run", "--quiet", str(job), env=crash_at("checkpoint-written")))
    assert code == -signal.SIGKILL, err
    left = lock_files(tmp_path)
    assert f".{demo.OUTPUT_FILE}.lock" in left
    assert any(name.endswith(FOLDER_LOCK) for name in left)

    code, err = finish(asyncwait("run", "--quiet", str(job)))
    assert code == 0, err
    assert (tmp_path / demo.OUTPUT_FILE).read_text() == expected
    # Lock files this run did not create stay, free: anyone may take them.
    assert lock_files(tmp_path) == left
    output = resolve(PathUse("sink.path", tmp_path / demo.OUTPUT_FILE, Access.WRITE))
    lock_outputs([output], owner="test").release()


def crash_at(point: str) -> dict[str, str]:
    return {**os.environ, "ASYNCWAIT_CRASH_AT": point}
