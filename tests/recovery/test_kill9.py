"""Exactly-once under SIGKILL: a job killed at random moments (and inside checkpoint writes
and commits) and restarted each time ends with exactly the expected output.

These tests run real processes and kill them after real, random delays: the moments are
random on purpose (the seed is in the failure message), the assertions are not timing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRASH_POINTS = ("checkpoint-partial", "checkpoint-renamed", "checkpoint-written", "commit")


def expected_lines(n: int) -> list[str]:
    return [json.dumps({"i": i, "sq": i * i}, separators=(",", ":")) for i in range(n)]


def start(folder: Path, mode: str, capacity: int, crash_at: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "ASYNCWAIT_CRASH_AT": crash_at}
    command = [sys.executable, "-m", "tests.recovery.crashjob", str(folder), mode, str(capacity)]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def kill_after(process: subprocess.Popen[str], delay: float) -> bool:
    """SIGKILL ``process`` after ``delay`` seconds; False if it had ended by itself."""
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.communicate()
        return True
    process.communicate()
    return False


def run_to_end(folder: Path, mode: str, capacity: int) -> str:
    process = start(folder, mode, capacity)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out


@pytest.mark.timeout(600)
def test_ordered_job_killed_20_times_writes_everything_exactly_once(tmp_path: Path) -> None:
    n = 200_000
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(n)))
    expected = "".join(line + "\n" for line in expected_lines(n))
    plan = [("", rng.uniform(0.4, 1.6)) for _ in range(16)]
    plan += [(point, 60.0) for point in CRASH_POINTS]  # the process kills itself there
    rng.shuffle(plan)
    killed = 0
    for crash_at, delay in plan:
        process = start(tmp_path, "ordered", 20, crash_at)
        if crash_at:
            process.communicate(timeout=120)
            assert process.returncode == -signal.SIGKILL, (seed, crash_at, process.returncode)
            killed += 1
        else:
            killed += kill_after(process, delay)
        out = tmp_path / "out.jsonl"
        # ORDERED: at every instant the output is a prefix of the expected output (a cut
        # commit leaves a prefix too; the next run cuts it back to the last checkpoint).
        text = out.read_text() if out.exists() else ""
        assert expected.startswith(text), f"seed {seed}: output is not a prefix after a kill"
    assert killed >= 18, f"seed {seed}: only {killed} runs were killed mid-way"
    final = run_to_end(tmp_path, "ordered", 20)
    assert "restored_from=None" not in final, f"seed {seed}: the last run did not resume"
    assert (tmp_path / "out.jsonl").read_text() == expected, f"seed {seed}"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.jsonl.part")]
    assert leftovers == []


@pytest.mark.timeout(300)
def test_unordered_job_killed_and_resumed_with_less_capacity(tmp_path: Path) -> None:
    n = 50_000
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(n)))
    for _ in range(4):
        kill_after(start(tmp_path, "unordered", 200), rng.uniform(0.5, 1.2))
    # Restore with more elements in flight in the checkpoint than the new capacity.
    run_to_end(tmp_path, "unordered", 3)
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert sorted(lines) == sorted(expected_lines(n)), f"seed {seed}"
