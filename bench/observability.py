"""The observability suite (``python -m bench observability``): what a Prometheus scrape costs.

The demo job (``asyncwait demo``'s data, 1,000,000 events and 100,000 users, generated once
with a fixed seed) is run as a user runs it, ``asyncwait run job.toml --quiet
--json-summary F`` in a fresh interpreter, without and with ``--metrics-port P``; while the
endpoint is on, a thread of this process scrapes ``/metrics`` every 0.5 s (30 times
Prometheus' default rate). The two are alternated and the best run of each kept; the median
ratio of the back-to-back pairs is printed too. Target: the job with the endpoint on is at
most 3 % slower (events/s from the summary, start-up excluded). Every scrape is checked to
parse, and the output of both runs to hold the same number of lines.

``--quick`` runs 20,000 events once each: a smoke run, the numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from asyncwait.cli import demo

from ._util import Column, Options, Row, SuiteResult, fmt, print_table, verdict

__all__ = ("main", "run")

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261208
TARGET = 0.03  # the endpoint on costs <= 3 % of the events/s
SCRAPE_EVERY_S = 0.5
SECTION = "metrics endpoint"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Scraper(threading.Thread):
    """Scrapes ``/metrics`` every :data:`SCRAPE_EVERY_S` until stopped; counts the answers."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.done = threading.Event()
        self.scrapes = 0

    def run(self) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        while not self.done.wait(SCRAPE_EVERY_S):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as reply:
                    text = reply.read().decode()
            except OSError:
                continue  # not listening yet, or the job just ended
            list(text_string_to_metric_families(text))  # raises on a malformed page
            self.scrapes += 1


def _run_job(job: Path, metrics: bool) -> tuple[float, int, int]:
    """One run: (events/s from the summary, output lines, scrapes answered)."""
    directory = job.parent
    summary_path = directory / "summary.json"
    output = directory / demo.OUTPUT_FILE
    output.unlink(missing_ok=True)
    command = [sys.executable, "-m", "asyncwait", "run", str(job), "--quiet"]
    command += ["--json-summary", str(summary_path)]
    scraper = None
    if metrics:
        port = _free_port()
        command += ["--metrics-port", str(port)]
        scraper = _Scraper(port)
        scraper.start()
    try:
        done = subprocess.run(
            command, env=_child_env(), capture_output=True, text=True, check=False
        )
    finally:
        if scraper is not None:
            scraper.done.set()
            scraper.join()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr}")
    summary = json.loads(summary_path.read_text())
    with open(output, "rb") as file:
        lines = sum(1 for _ in file)
    return float(summary["throughput_eps"]), lines, 0 if scraper is None else scraper.scrapes


def run(options: Options) -> SuiteResult:
    events, users, pairs = (20_000, 2_000, 1) if options.quick else (1_000_000, 100_000, 3)
    started = time.perf_counter()
    result = SuiteResult("observability")
    with tempfile.TemporaryDirectory(prefix="asyncwait-bench-obs-") as tmp:
        data = demo.generate(Path(tmp), events=events, users=users, seed=SEED)
        job = demo.write_job(data)
        off: list[float] = []
        on: list[float] = []
        ratios: list[float] = []
        scrapes = 0
        for _ in range(pairs):
            eps_off, lines_off, _ = _run_job(job, metrics=False)
            eps_on, lines_on, answered = _run_job(job, metrics=True)
            if lines_on != lines_off:
                raise RuntimeError(f"outputs differ: {lines_off} lines off, {lines_on} on")
            off.append(eps_off)
            on.append(eps_on)
            ratios.append(eps_on / eps_off)
            scrapes += answered
    best_off, best_on = max(off), max(on)
    ratio = best_on / best_off
    result.rows.append(Row(SECTION, "auto", "demo job", "endpoint off", events, {"eps": best_off}))
    result.rows.append(
        Row(
            SECTION,
            "auto",
            "demo job",
            f"on, scraped every {SCRAPE_EVERY_S:g} s",
            events,
            {
                "eps": best_on,
                "ratio": ratio,
                "median_pair_ratio": statistics.median(ratios),
                "scrapes": scrapes,
            },
            target=f"on >= {1 - TARGET:.2f} x off",
            met=ratio >= 1 - TARGET,
        )
    )
    result.notes.append(
        f"{events:,} demo events, {users:,} users; `asyncwait run job.toml --quiet` in a fresh "
        f"interpreter; best of {pairs} alternated runs each; events/s from the summary"
    )
    result.seconds = time.perf_counter() - started
    _print(result)
    return result


def _print(result: SuiteResult) -> None:
    columns = [
        Column("run", lambda r: r.impl, right=False),
        Column("events/s", lambda r: fmt(r.values.get("eps"), ",.0f")),
        Column("on/off (best)", lambda r: fmt(r.values.get("ratio"), ".3f")),
        Column("on/off (median pair)", lambda r: fmt(r.values.get("median_pair_ratio"), ".3f")),
        Column("scrapes", lambda r: fmt(r.values.get("scrapes"), ".0f")),
        Column("target", lambda r: r.target, right=False),
        Column("", verdict, right=False),
    ]
    print_table("Prometheus endpoint cost (demo job)", columns, result.rows)
    for note in result.notes:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.observability")
    parser.add_argument("--quick", action="store_true", help="a smoke run; numbers mean nothing")
    args = parser.parse_args(argv)
    run(Options(quick=args.quick))


if __name__ == "__main__":
    main()
