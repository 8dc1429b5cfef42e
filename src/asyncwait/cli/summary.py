"""The summary ``asyncwait run`` prints at the end, and writes with ``--json-summary``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..runtime import JobTotals
from .views import OperatorView, ProgressView, fmt_ms, fmt_ratio

__all__ = ("print_summary", "summarize", "write_json_summary")

_SHOWN_SAMPLES: Final = 3  # bad elements a summary shows when there is no errors file


def summarize(
    result: ProgressView,
    *,
    job: str,
    status: str = "succeeded",
    errors_path: Path | None = None,
    error: str | None = None,
    error_samples: Sequence[Mapping[str, Any]] = (),
    checkpoints: Mapping[str, Any] | None = None,
    totals: JobTotals | None = None,
) -> dict[str, Any]:
    """Return the job summary as JSON-ready data (what ``--json-summary`` writes).

    Args:
        result: the final numbers.
        job: the job's name.
        status: ``"succeeded"``, ``"stopped"`` or ``"failed"``.
        errors_path: the errors file, when bad input is written to one.
        error: the error that ended the job, when it failed.
        error_samples: the first few bad input elements (``source``, ``line``, ``raw``,
            ``reason``), shown when there is no errors file to look at.
        checkpoints: when the job checkpoints: ``restored_from``, ``completed``, ``last``
            and ``dir``.
        totals: the job's numbers over all its runs. The summary's ``events_in``,
            ``events_out`` and ``errors`` are this run's (``"counted": "this run"``);
            ``job_totals`` holds these (``runs`` > 1 after a resume).

    >>> s = summarize(ProgressView(2.0, 10, 9, 1), job="j")
    >>> s["events_in"], s["events_out"], s["errors"], s["throughput_eps"]
    (10, 9, 1, 5.0)
    """
    duration = result.elapsed

    def maybe_ms(seconds: float) -> float | None:
        return None if math.isnan(seconds) else round(seconds * 1000, 3)

    return {
        "job": job,
        "status": status,
        "error": error,
        "counted": "this run",
        "events_in": result.events_in,
        "events_out": result.events_out,
        "errors": result.errors,
        "skipped": result.skipped,
        "dead_letters": result.dead_letters,
        "job_totals": None if totals is None else _totals_of(totals),
        "errors_path": None if errors_path is None else str(errors_path),
        "error_samples": [dict(sample) for sample in error_samples],
        "duration_s": round(duration, 3),
        "throughput_eps": round(result.events_in / duration, 1) if duration > 0 else None,
        "cache_hit_ratio": _round(result.cache_hit_ratio),
        "checkpoints": None if checkpoints is None else dict(checkpoints),
        "operators": [
            {
                "name": op.name,
                "capacity": op.capacity or None,
                "emitted": op.emitted,
                "retries": op.retries,
                "timeouts": op.timeouts,
                "failures": op.failures,
                "latency_p50_ms": maybe_ms(op.latency_p50),
                "latency_p99_ms": maybe_ms(op.latency_p99),
                "cache_hits": op.cache_hits,
                "cache_misses": op.cache_misses,
                "cache_hit_ratio": _round(op.cache_hit_ratio),
                "skipped": op.skipped,
                "dead_letters": op.dead_letters,
                "defaulted": op.defaulted,
                "attempt_timeouts": op.attempt_timeouts,
                "result_retries": op.result_retries,
                **_join_results(op),
                "counters": dict(op.counters),
            }
            for op in result.operators
        ],
    }


def _totals_of(totals: JobTotals) -> dict[str, int]:
    return {
        "runs": totals.runs,
        "events_in": totals.events_in,
        "events_out": totals.events_out,
        "errors": totals.errors,
        "skipped": totals.skipped,
        "dead_letters": totals.dead_letters,
    }


def _join_results(op: OperatorView) -> dict[str, Any]:
    """What a lookup join's lookups came to (``None`` for another operator)."""
    join = op.is_join
    return {
        "matched": op.join_count("matched") if join else None,
        "missed": op.join_count("missed") if join else None,
        "dropped": op.join_count("dropped") if join else None,
        "failed": op.join_count("lookup_failed") if join else None,
        "match_ratio": _round(op.match_ratio),
        "retry_after_waits": int(op.counters.get("retry_after_waits", 0)),
    }


def _round(ratio: float | None) -> float | None:
    return None if ratio is None else round(ratio, 4)


def write_json_summary(summary: Mapping[str, Any], path: Path) -> None:
    """Write ``summary`` to ``path`` as indented JSON."""
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def print_summary(summary: Mapping[str, Any], console: Console) -> None:
    """Print ``summary``: a rich table on a terminal, plain aligned text otherwise."""
    if console.is_terminal:
        console.print(_summary_table(summary))
    else:
        console.print(_summary_text(summary), markup=False, highlight=False, soft_wrap=True)


def _totals(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors = f"{summary['errors']:,}"
    if summary["errors_path"] and summary["errors"]:
        errors += f" (see {summary['errors_path']})"
    throughput = summary["throughput_eps"]
    rows = [
        ("status", str(summary["status"])),
        ("events in", f"{summary['events_in']:,}"),
        ("events out", f"{summary['events_out']:,}"),
        ("errors", errors),
    ]
    # Shown when a lookup's on_error set events aside: in = out + errors + these.
    if summary["skipped"]:
        rows.append(("skipped", f"{summary['skipped']:,} (on_error = skip)"))
    if summary["dead_letters"]:
        dead = f"{summary['dead_letters']:,}"
        if summary["errors_path"]:
            dead += f" (in {summary['errors_path']}, kind lookup_failed)"
        rows.append(("dead letters", dead))
    rows += [
        ("duration", f"{summary['duration_s']:.2f} s"),
        ("throughput", "-" if throughput is None else f"{throughput:,.0f} events/s"),
    ]
    if summary["cache_hit_ratio"] is not None:
        rows.append(("cache hit ratio", fmt_ratio(summary["cache_hit_ratio"])))
    cp = summary.get("checkpoints")
    if cp is not None:
        text = f"{cp['completed']:,} taken"
        if cp["last"] is not None:
            text += f", last #{cp['last']}"
        if cp["restored_from"] is not None:
            text += f"; resumed from #{cp['restored_from']}"
        rows.append(("checkpoints", f"{text} ({cp['dir']})"))
    totals = summary.get("job_totals")
    if totals is not None and totals["runs"] > 1:
        # After a resume the numbers above are this run's; these add up over the runs.
        rows.append(
            (
                f"all {totals['runs']} runs",
                f"{totals['events_in']:,} in, {totals['events_out']:,} out, "
                f"{totals['errors']:,} errors, {totals['skipped']:,} skipped, "
                f"{totals['dead_letters']:,} dead letters",
            )
        )
    return rows


def _sample_lines(summary: Mapping[str, Any]) -> list[str]:
    """The first bad elements, when no errors file holds them."""
    if summary["errors_path"] or not summary["errors"]:
        return []
    lines = []
    for sample in summary["error_samples"][:_SHOWN_SAMPLES]:
        at = sample.get("source", "?")
        if sample.get("line") is not None:
            at += f":{sample['line']}"
        lines.append(f"bad input at {at}: {sample.get('reason', '?')}")
    more = summary["errors"] - len(lines)
    if more > 0:
        lines.append(f"... and {more:,} more (set [errors] path to keep them all)")
    return lines


def _operator_cells(op: Mapping[str, Any]) -> list[str]:
    def ms(value: float | None) -> str:
        return "-" if value is None else fmt_ms(value / 1000)

    return [
        str(op["name"]),
        f"{op['emitted']:,}",
        ms(op["latency_p50_ms"]),
        ms(op["latency_p99_ms"]),
        fmt_ratio(op["cache_hit_ratio"]),
        f"{op['retries']}/{op['timeouts']}/{op['failures']}",
    ]


def _join_cells(op: Mapping[str, Any]) -> list[str]:
    return [
        str(op["name"]),
        f"{op['matched']:,}",
        f"{op['missed']:,}",
        f"{op['dropped']:,}",
        f"{op['failed']:,}",
        fmt_ratio(op["match_ratio"]),
    ]


_OPERATOR_HEADERS: Final = ("operator", "emitted", "p50", "p99", "cache hits", "retr/tmo/fail")
# What each lookup join's lookups came to: a table of its own, below the operators.
_JOIN_HEADERS: Final = ("lookup join", "matched", "missed", "dropped", "failed", "match ratio")


def _tables(summary: Mapping[str, Any]) -> list[tuple[tuple[str, ...], list[list[str]]]]:
    """The operator table and, when the job has lookup joins, the join results table."""
    operators = summary["operators"]
    tables: list[tuple[tuple[str, ...], list[list[str]]]] = []
    if operators:
        tables.append((_OPERATOR_HEADERS, [_operator_cells(op) for op in operators]))
    joins = [_join_cells(op) for op in operators if op.get("matched") is not None]
    if joins:
        tables.append((_JOIN_HEADERS, joins))
    return tables


def _summary_table(summary: Mapping[str, Any]) -> Group:
    totals = Table(
        title=f"job {summary['job']}", show_header=False, title_justify="left", box=box.SIMPLE
    )
    totals.add_column(style="bold")
    totals.add_column()
    for name, value in _totals(summary):
        totals.add_row(name, value)
    parts: list[Any] = [totals]
    for headers, rows in _tables(summary):
        table = Table(header_style="bold")
        for i, header in enumerate(headers):
            table.add_column(header, justify="right" if i else "left", no_wrap=not i)
        for row in rows:
            table.add_row(*row)
        parts.append(table)
    parts += [Text(line, style="yellow") for line in _sample_lines(summary)]
    return Group(*parts)


def _summary_text(summary: Mapping[str, Any]) -> str:
    lines = [f"job {summary['job']}"]
    lines += [f"  {name:<18}{value}" for name, value in _totals(summary)]
    for headers, body in _tables(summary):
        rows = [list(headers), *body]
        widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
        for row in rows:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
    lines += [f"  {line}" for line in _sample_lines(summary)]
    return "\n".join(lines)
