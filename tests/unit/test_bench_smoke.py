"""Smoke test: ``python -m bench operator --quick`` runs and reports every result row.

It checks the shape of the results only; timings on a shared CI machine mean nothing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_PER_LOOP = {
    ("zero latency", "ORDERED", "asyncwait"),
    ("zero latency", "ORDERED", "naive"),
    ("zero latency", "ORDERED", "aiostream"),
    ("zero latency", "UNORDERED", "asyncwait"),
    ("zero latency", "UNORDERED", "naive"),
    ("zero latency", "UNORDERED", "aiostream"),
    ("fixed latency", "C=100", "asyncwait"),
    ("fixed latency", "C=100", "naive"),
    ("fixed latency", "C=100", "ceiling"),
    ("fixed latency", "C=1000", "asyncwait"),
    ("fixed latency", "C=1000", "naive"),
    ("fixed latency", "C=1000", "ceiling"),
    ("exponential latency", "ORDERED", "asyncwait"),
    ("exponential latency", "UNORDERED", "asyncwait"),
    ("exponential latency", "KEY_ORDERED", "asyncwait"),
    ("memory in flight", "C=1000", "asyncwait"),
    ("memory in flight", "C=1000", "naive"),
    ("memory streaming", "N", "asyncwait"),
    ("memory streaming", "10N", "asyncwait"),
}


def test_operator_suite_quick_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "operator", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr

    loops = ["asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append("uvloop")
    else:
        assert "uvloop is not importable" in done.stdout

    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["quick"] is True
    assert document["machine"]["cores"] >= 1
    rows = document["suites"]["operator"]["rows"]
    found = [(row["loop"], row["section"], row["case"], row["impl"]) for row in rows]
    expected = {(loop, *key) for loop in loops for key in EXPECTED_PER_LOOP}
    assert sorted(found) == sorted(expected)  # every row, exactly once
    for row in rows:
        assert row["values"], row
        for name, value in row["values"].items():
            assert isinstance(value, int | float), (row, name)
            assert math.isfinite(value), (row, name)
        if row["target"]:
            assert isinstance(row["met"], bool), row

    for title in ("1. zero latency", "2. fixed 10 ms", "3. exponential", "4. memory", "5. peak"):
        assert title in done.stdout
    assert "done in" in done.stdout
