"""Benchmarks for asyncwait.

Run one suite, or all of them, with::

    python -m bench operator            # the core operator (bench/core.py)
    python -m bench runtime             # the demo job end to end via the CLI (bench/runtime.py)
    python -m bench lookups             # LookupJoin vs synchronous sqlite3 (bench/lookups.py)
    python -m bench compare --baseline REV  # a git worktree of REV vs this tree (bench/compare.py)
    python -m bench all --json out.json # every suite; results saved as JSON
    python -m bench operator --quick    # small N: a smoke run, numbers are not meaningful

Every figure is printed next to baselines measured in the same run, as ratios, so results
from different machines can be compared by their ratios rather than by their raw values.
A new suite is a module with a ``run(options) -> SuiteResult`` function, registered in
``bench/__main__.py``'s ``SUITES``.
"""
