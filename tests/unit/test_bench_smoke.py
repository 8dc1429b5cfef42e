"""Smoke tests: ``python -m bench SUITE --quick`` runs and reports every result row.

They check the shape of the results only; timings on a shared CI machine mean nothing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    *(
        ("push zero latency", mode, impl)
        for mode in ("ORDERED", "UNORDERED")
        for impl in ("push API", "helper", "naive+timeout", "naive")
    ),
    ("push fixed latency", "ORDERED", "push API"),
    ("push fixed latency", "UNORDERED", "push API"),
    ("push fixed latency", "ORDERED", "helper"),
    ("push fixed latency", "UNORDERED", "helper"),
    ("push fixed latency", "KEY_ORDERED", "helper"),
    ("push fixed latency", "none", "ceiling"),
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

    by_key = {(row["loop"], row["section"], row["case"], row["impl"]): row for row in rows}
    for loop in loops:
        for mode in ("ORDERED", "UNORDERED"):
            pushed = by_key[loop, "push zero latency", mode, "push API"]
            assert pushed["target"]  # the push API's target is printed next to it
            for name in ("vs_naive_timeout", "vs_naive", "vs_helper"):
                assert pushed["values"][name] > 0, (pushed, name)
            fixed = by_key[loop, "push fixed latency", mode, "push API"]
            assert fixed["values"]["of_ceiling"] > 0, fixed
            assert fixed["target"]

    titles = ("1. zero latency", "2. fixed 10 ms", "3. exponential", "4. memory", "5. peak")
    for title in (*titles, "6. push API", "7. fixed 10 ms latency, capacity 100: push API"):
        assert title in done.stdout
    assert "done in" in done.stdout


def _loops(stdout: str) -> list[str]:
    loops = ["asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append("uvloop")
    else:
        assert "uvloop is not importable" in stdout
    return loops


def _run_quick(suite: str, out: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", suite, "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    return done


def _check_values(rows: list[dict[str, object]]) -> None:
    for row in rows:
        values = row["values"]
        assert isinstance(values, dict)
        assert values, row
        for name, value in values.items():
            assert isinstance(value, int | float), (row, name)
            assert math.isfinite(value), (row, name)
        if row["target"]:
            assert isinstance(row["met"], bool), row


RUNTIME_STAGES = (
    "jsonl -> jsonl",
    "jsonl -> map -> jsonl",
    "jsonl -> map -> unordered_wait -> jsonl",
    "jsonl -> lookup_join(sqlite, lru) -> jsonl",
)


def test_runtime_suite_quick_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = _run_quick("runtime", out)
    loops = _loops(done.stdout)

    rows = json.loads(out.read_text(encoding="utf-8"))["suites"]["runtime"]["rows"]
    found = [(row["section"], row["loop"], row["case"], row["impl"]) for row in rows]
    expected = [("demo end to end", "sync", "naive loop", "naive")]
    expected += [
        ("demo end to end", loop, case, "asyncwait")
        for loop in loops
        for case in ("cache on", "cache off")
    ]
    expected += [("memory streaming", loops[-1], run, "asyncwait") for run in ("N", "10N")]
    expected += [("stages", loop, case, "asyncwait") for loop in loops for case in RUNTIME_STAGES]
    assert sorted(found) == sorted(expected)  # every row, exactly once
    _check_values(rows)
    by_key = {(row["section"], row["loop"], row["case"]): row for row in rows}
    assert by_key["demo end to end", "asyncio", "cache on"]["n"] == 20_000
    assert by_key["memory streaming", loops[-1], "10N"]["n"] == 200_000
    assert "vs_naive" in by_key["demo end to end", "asyncio", "cache off"]["values"]
    assert "vs_n" in by_key["memory streaming", loops[-1], "10N"]["values"]

    for title in ("1. the demo job end to end", "2. peak RSS", "3. where the time goes"):
        assert title in done.stdout
    assert "done in" in done.stdout


def test_lookups_suite_quick_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = _run_quick("lookups", out)

    rows = json.loads(out.read_text(encoding="utf-8"))["suites"]["lookups"]["rows"]
    assert rows[0]["impl"] == "sync"
    assert len(rows) >= 6
    assert all(row["impl"] == "asyncwait" for row in rows[1:])
    assert all("vs_sync" in row["values"] for row in rows[1:])
    _check_values(rows)
    assert "LookupJoin" in done.stdout


def test_checkpoints_suite_quick_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = _run_quick("checkpoints", out)

    rows = json.loads(out.read_text(encoding="utf-8"))["suites"]["checkpoints"]["rows"]
    found = [(row["section"], row["case"], row["impl"]) for row in rows]
    expected = [
        ("checkpoint overhead", job, variant)
        for job in ("UNORDERED (demo)", "ORDERED")
        for variant in ("off", "every 1 s")
    ]
    expected += [
        ("recovery", mode, kind)
        for mode in ("ORDERED", "UNORDERED")
        for kind in ("in-process", "fresh interpreter")
    ]
    assert sorted(found) == sorted(expected)  # every row, exactly once
    _check_values(rows)
    by_key = {(row["section"], row["case"], row["impl"]): row for row in rows}
    with_checkpoints = by_key["checkpoint overhead", "ORDERED", "every 1 s"]
    assert with_checkpoints["n"] == 20_000
    assert with_checkpoints["values"]["checkpoints"] >= 1  # at least the final one
    for name in ("ratio", "overhead_pct", "byte_identical", "same_records"):
        assert name in with_checkpoints["values"]
    for mode in ("ORDERED", "UNORDERED"):
        fresh = by_key["recovery", mode, "fresh interpreter"]["values"]
        assert fresh["saved_records"] >= 1_000  # the checkpoint holds what was in flight
        assert "startup_s" in fresh
        assert "first_output_s" in by_key["recovery", mode, "in-process"]["values"]

    for title in ("1. checkpointing every 1 s", "2. recovery from a checkpoint"):
        assert title in done.stdout
    assert "done in" in done.stdout


COMPARE_WORKLOADS = (
    "demo job (CLI)",
    "push-ordered",
    "push-unordered",
    "ordered_wait",
    "unordered_wait",
    "key_ordered_wait",
    "lookup-join",
)


def test_compare_suite_quick_against_head_reports_every_row(tmp_path: Path) -> None:
    # --no-callgrind: the same runs against both trees, timed instead of counted (callgrind
    # needs ~20 s to start the interpreter alone); the counting is tested below.
    out = tmp_path / "results.json"
    args = ["compare", "--quick", "--no-callgrind", "--baseline", "HEAD", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loops = _loops(done.stdout)

    rows = json.loads(out.read_text(encoding="utf-8"))["suites"]["compare"]["rows"]
    found = [(row["section"], row["loop"], row["case"], row["impl"]) for row in rows]
    expected = [("demo end to end", loop, tree, "cli") for loop in loops for tree in ("old", "new")]
    expected += [("instructions", "asyncio", name, "wall") for name in COMPARE_WORKLOADS]
    assert sorted(found) == sorted(expected)  # every row, exactly once
    _check_values(rows)
    for row in rows:
        if row["case"] == "new" or row["section"] == "instructions":
            assert row["values"]["ratio"] > 0, row
        if row["case"] == "new":
            assert row["target"] == ">= 1.3x old", row
    assert "old: " in done.stdout
    assert "(HEAD)" in done.stdout
    for title in ("1. the demo job end to end", "2. wall-clock µs per element"):
        assert title in done.stdout
    worktrees = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    )
    assert "asyncwait-compare-" not in worktrees.stdout  # the old tree was removed


def test_callgrind_totals_reads_every_dump_in_order(tmp_path: Path) -> None:
    from bench.compare import callgrind_totals

    out = tmp_path / "callgrind.out"
    # Dumps out.1 .. out.11 (numeric order, not 1, 10, 11, 2), then out, the rest to the exit.
    for part in range(1, 12):
        (tmp_path / f"callgrind.out.{part}").write_text(f"events: Ir\nsummary: {part}\n")
    out.write_text("events: Ir\ntotals: 1000\n")
    assert callgrind_totals(out) == [*range(1, 12), 1000]


def test_resilience_suite_quick_reports_every_row(tmp_path: Path) -> None:
    # Sections whose lookup_join keywords are not there yet report "not run" rows, with no
    # values and no verdict; the rest must have run.
    from bench import resilience

    out = tmp_path / "results.json"
    args = ["resilience", "--quick", "--baseline", "HEAD", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))["suites"]["resilience"]["rows"]
    by_section: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_section.setdefault(row["section"], []).append(row)
    assert sorted(by_section) == [
        "0. store alone",
        "1. adaptive vs fixed",
        "2. outage",
        "3. rate limit",
        "4. no-policy overhead",
    ]
    ran = [row for row in rows if not row["note"].startswith("not run")]
    _check_values(ran)
    assert len(by_section["0. store alone"]) == 3
    for row in by_section["0. store alone"]:
        assert row["values"]["value"] > 0, row
    fixed = [row for row in by_section["1. adaptive vs fixed"] if row["case"].startswith("cap")]
    assert [row["case"] for row in fixed] == [
        f"capacity {c}" for c in (*resilience.QUICK.capacities, 1000)
    ]
    assert max(row["values"]["ratio"] for row in fixed) == 1.0  # the best is the baseline
    scenarios = {"1. adaptive vs fixed": "adaptive", "2. outage": "outage", "3. rate limit": "rate"}
    for section, scenario in scenarios.items():
        targets = [row for row in by_section[section] if row["target"]]
        if resilience.missing(scenario):
            assert not targets
            (skipped,) = [row for row in by_section[section] if row["note"].startswith("not")]
            assert skipped["values"] == {}
            assert skipped["met"] is None
        else:
            assert targets
            assert all(isinstance(row["met"], bool) for row in targets)
    overhead = {row["case"]: row for row in by_section["4. no-policy overhead"]}
    assert sorted(overhead) == ["demo job, new tree", "demo job, old tree"]
    assert overhead["demo job, new tree"]["values"]["ratio"] > 0
    assert "resilience (issue 10)" in done.stdout
    worktrees = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    )
    assert "asyncwait-bench-resilience-" not in worktrees.stdout  # the old tree was removed


def test_observability_suite_quick_reports_both_runs(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "observability", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))["suites"]["observability"]["rows"]
    assert [row["impl"].split(",")[0] for row in rows] == ["endpoint off", "on"]
    off, on = rows
    assert off["values"]["eps"] > 0
    assert on["values"]["ratio"] == on["values"]["eps"] / off["values"]["eps"]
    assert isinstance(on["met"], bool)
    assert "on/off (best)" in done.stdout
