"""The errors file under SIGKILL: a checkpointed job with bad lines and rejected events,
killed at random moments and inside the errors file's commit, ends with each bad line and
each rejected event in the errors file exactly once, with its line, and each good event in
the output exactly once.

Real processes killed after real, random delays (the seed is in the failure message); the
assertions are not timing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def write_input(path: Path, n: int, rng: random.Random) -> tuple[dict[int, str], list[int]]:
    """About 1% bad lines and 1% events the lookup rejects; returns the bad input by line
    (raw text, or the event as JSON) and the good events' ``i``."""
    lines: list[str] = []
    bad: dict[int, str] = {}
    good: list[int] = []
    for i in range(n):
        draw = rng.random()
        if draw < 0.01:
            line = f"not json {i}"
            bad[len(lines) + 1] = line
        elif draw < 0.02:
            line = json.dumps({"i": i, "reject": True})
            bad[len(lines) + 1] = line
        else:
            line = json.dumps({"i": i})
            good.append(i)
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return bad, good


def start(folder: Path, crash_at: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ASYNCWAIT_CRASH_AT": crash_at}
    command = [sys.executable, "-m", "tests.recovery.errorsjob", str(folder)]
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
    _, err = process.communicate()
    assert process.returncode == 0, err
    return False


@pytest.mark.timeout(600)
def test_each_bad_line_is_in_the_errors_file_once_with_its_line(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    bad, good = write_input(tmp_path / "in.jsonl", 60_000, rng)
    plan = [("", rng.uniform(0.7, 2.0)) for _ in range(4)]
    plan += [("errors-commit", 60.0), ("errors-commit", 60.0), ("checkpoint-written", 60.0)]
    rng.shuffle(plan)
    killed = 0
    for crash_at, delay in plan:
        process = start(tmp_path, crash_at)
        if crash_at:
            _, err = process.communicate(timeout=120)
            # The crash point is reached: each run commits bad input of its own.
            assert process.returncode == -signal.SIGKILL, (seed, crash_at, err)
            killed += 1
        else:
            killed += kill_after(process, delay)
    assert killed >= 5, f"seed {seed}: only {killed} runs were killed mid-way"

    final = start(tmp_path)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert "restored_from=None" not in out, f"seed {seed}: the last run did not resume"

    entries = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    counts = Counter(entry["line"] for entry in entries)
    assert [line for line, count in counts.items() if count > 1] == [], f"seed {seed}: twice"
    assert sorted(counts) == sorted(bad), f"seed {seed}: lost or made-up entries"
    for entry in entries:
        assert entry["raw"] == bad[entry["line"]], (seed, entry)
        assert entry["source"] == str(tmp_path / "in.jsonl")
    written = [json.loads(line)["i"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written == good, f"seed {seed}"
    leftovers = [p.name for p in tmp_path.iterdir() if ".part-" in p.name]
    assert leftovers == []
