"""``python -m bench {suite|all} [--quick] [--json FILE] [--baseline REV]``: run benchmark suites.

To add a suite, write a module with ``run(options: Options) -> SuiteResult`` and register it
in :data:`SUITES`; ``all`` runs every registered suite in order, except ``compare``.

A suite's module is imported only when it runs: while the package's internals move, a suite
still importing a module that moved fails alone, and the others (``compare`` and
``operator`` use public API only) keep running against the new tree.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import compare
from ._util import CpuSample, Options, SuiteResult, machine_info

Suite = Callable[[Options], SuiteResult]

SUITES: dict[str, str] = {  # suite -> its module in this package, which has run(options)
    "operator": "core",  # the core operator vs baselines, ~2.5 minutes
    "runtime": "runtime",  # the demo job end to end via the CLI, ~6 minutes
    "lookups": "lookups",  # LookupJoin vs synchronous sqlite3, ~1 minute
    "sql": "sql",  # PostgreSQL lookups: batched vs per-key vs blocking drivers, ~1 minute
    "kv": "kv",  # Redis (batched vs per-key vs sync redis-py) and HTTP lookups
    "mysql": "mysql",  # MariaDB lookups: batched vs per-key vs sync PyMySQL, ~1 minute
    "checkpoints": "checkpoints",  # checkpoint overhead on the demo job, recovery time
    "resilience": "resilience",  # a misbehaving store: adaptive, outage, rate limit, overhead
    "observability": "observability",  # the Prometheus endpoint's cost on the demo job
    "compare": "compare",  # old tree (git worktree of --baseline) vs this one, ~10 minutes
}
# Not in `all`: compare measures two trees against each other rather than this one, needs a
# git checkout, and takes as long as the other suites together.
NOT_IN_ALL = frozenset({"compare"})


def _suite(name: str) -> Suite:
    """The ``run`` function of suite ``name``, importing its module now."""
    run: Suite = importlib.import_module(f"{__package__}.{SUITES[name]}").run
    return run


def _load() -> str:
    """The 1/5/15-minute load averages, or "n/a" where the platform has none."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run asyncwait's benchmark suites."
    )
    parser.add_argument("suite", choices=[*SUITES, "all"], help="the suite to run, or all")
    parser.add_argument(
        "--quick", action="store_true", help="tiny workloads: a smoke run, not a measurement"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save results as JSON")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help=f"compare: the old tree's git revision (default {compare.BASELINE_REV[:7]})",
    )
    parser.add_argument(
        "--new",
        metavar="REV",
        help="compare: measure REV's tree as the new one (default: this checkout)",
    )
    parser.add_argument(
        "--no-callgrind",
        dest="callgrind",
        action="store_false",
        help="compare: time the per-element workloads instead of counting instructions "
        "(fast; for the smoke test)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = Options(
        quick=args.quick, baseline=args.baseline, new=args.new, callgrind=args.callgrind
    )
    names = (
        [name for name in SUITES if name not in NOT_IN_ALL] if args.suite == "all" else [args.suite]
    )
    info = machine_info()
    print(
        f"machine: {info['cores']} cores, {info['cpu']}; "
        f"{info['implementation']} {info['python']}; loops: {', '.join(info['loops'])}"
    )
    load_before = _load()
    print(f"load average before: {load_before}")
    started = time.perf_counter()
    cpu_start = CpuSample.now()
    results: list[SuiteResult] = []
    for name in names:
        print(f"\n=== suite: {name}{' (--quick)' if args.quick else ''} ===")
        results.append(_suite(name)(options))
    elapsed = time.perf_counter() - started
    others = CpuSample.now().others_since(cpu_start)
    load_after = _load()
    print(f"\ndone in {elapsed:.1f} s; load average after: {load_after}")
    if others is not None:
        print(
            f"other processes used {others:.2f} of {os.cpu_count()} cores on average during "
            "the run" + (" (noisy: rerun on an idle machine)" if others > 0.25 else "")
        )
    if args.json is not None:
        document: dict[str, Any] = {
            "machine": info,
            "quick": args.quick,
            "seconds": elapsed,
            "load_average": {"before": load_before, "after": load_after},
            "other_processes_cores": others,
            "suites": {result.name: result.as_dict() for result in results},
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"results saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
