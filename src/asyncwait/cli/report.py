"""``--report FILE``: one self-contained HTML page showing how a run went (private).

While the job runs, :class:`RunRecorder` keeps the progress snapshots the live display
reads (``env.progress()``, every poll), at most ``_MAX_POINTS`` of them: past that it
drops every other one and keeps one poll in two from then on, so a ten-hour job's report
is as small as a minute's. At the end :func:`write_report` draws them (inline SVG, no
script, no stylesheet or font to fetch) with the summary's numbers, each operator's
latency histogram and the errors file's entries counted by reason, and writes the page
atomically (a temporary file beside it, then a rename): a reader never sees half a page.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Final

from .. import jobfile
from .._paths import Access, PathUse, check_no_alias, check_outputs
from .charts import Series, bar_chart, column_chart, line_chart
from .views import fmt_ms, fmt_ratio

__all__ = ("RunRecorder", "check_report", "count_reasons", "render_report", "write_report")

_MAX_POINTS: Final = 1000  # samples kept over the whole run
_MAX_ERROR_LINES: Final = 1_000_000  # errors file entries counted, at most
_MAX_ERROR_BYTES: Final = 256 << 20  # ... and bytes read of it
_TOP_REASONS: Final = 20  # reasons shown; the rest are added up as one bar
_MAX_REASONS: Final = 10_000  # distinct reasons counted; later new ones count as one
_REASON_CHARS: Final = 300  # of a reason: the rest is the event it quotes
_OTHERS: Final = "(other reasons)"


@dataclass(frozen=True, slots=True)
class _Operator:
    """An operator with a capacity (an async operator), at one sample."""

    in_flight: int
    capacity: int
    limit: int | None  # the adaptive concurrency limit, when the lookup has one
    hits: int
    misses: int


@dataclass(frozen=True, slots=True)
class _Sample:
    elapsed: float
    events_in: int
    events_out: int
    errors: int
    operators: Mapping[str, _Operator]

    @classmethod
    def of(cls, snapshot: Any) -> _Sample:
        """Read a runtime ``JobProgress`` (``elapsed``) or ``JobResult`` (``duration``)."""
        elapsed: Any = getattr(snapshot, "elapsed", None)
        if elapsed is None:
            elapsed = getattr(snapshot, "duration", 0.0)
        operators: dict[str, _Operator] = {}
        for op in getattr(snapshot, "operators", ()):
            if not op.capacity:
                continue  # map/filter: nothing in flight to draw
            counters = op.counters or {}
            limit = counters.get("concurrency_limit")
            operators[op.name] = _Operator(
                op.in_flight,
                op.capacity,
                None if limit is None else int(limit),
                int(counters.get("cache_hits", 0)),
                int(counters.get("cache_misses", 0)),
            )
        return cls(
            float(elapsed),
            int(snapshot.events_in),
            int(snapshot.events_out),
            int(snapshot.errors),
            operators,
        )


class RunRecorder:
    """Progress samples of one run, at most ``limit`` (+ the final one) whatever its length.

    >>> from types import SimpleNamespace as NS
    >>> rec = RunRecorder(limit=4)
    >>> for t in range(10):
    ...     rec.sample(NS(elapsed=float(t), events_in=t, events_out=t, errors=0))
    >>> [s.elapsed for s in rec.samples]  # the start, then polls 0, 4 and 8
    [0.0, 0.0, 4.0, 8.0]
    >>> rec.finish(NS(duration=9.5, events_in=10, events_out=10, errors=0))
    >>> [s.elapsed for s in rec.samples]
    [0.0, 0.0, 4.0, 8.0, 9.5]
    """

    def __init__(self, limit: int = _MAX_POINTS) -> None:
        self._limit = max(2, limit)
        self._stride = 1
        self._polls = 0
        self._samples: list[_Sample] = []
        self._final: _Sample | None = None

    def sample(self, progress: Any) -> None:
        """Keep ``progress`` when its poll is on the current stride."""
        self._polls += 1
        if (self._polls - 1) % self._stride:
            return
        self._samples.append(_Sample.of(progress))
        if len(self._samples) > self._limit:
            # Every other one: what is left is exactly the polls on the doubled stride.
            del self._samples[1::2]
            self._stride *= 2

    def finish(self, final: Any) -> None:
        """The job's last numbers (its result, or its progress when it failed)."""
        self._final = _Sample.of(final)

    @property
    def samples(self) -> list[_Sample]:
        """The samples kept, oldest first, from the job's start (all zero) to its end."""
        samples = [_Sample(0.0, 0, 0, 0, {}), *self._samples]
        if self._final is not None:
            if samples and samples[-1].elapsed >= self._final.elapsed:
                samples.pop()  # a poll at the very end: the final numbers replace it
            samples.append(self._final)
        return samples


def check_report(report: Path, spec: jobfile.JobSpec, *, json_summary: Path | None) -> None:
    """Refuse a ``--report`` path the job could not write or that is one of its files.

    Raises:
        ConfigError: its folder is missing or not writable, it is a folder, or it is an
            input or another output of the job (the job file, the source, ``--json-summary``
            ...), however spelled.
    """
    use = PathUse("--report", report, Access.WRITE)
    check_outputs([use], owner="")
    check_no_alias([*jobfile.job_paths(spec, json_summary=json_summary), use], owner=str(spec.file))


def count_reasons(
    errors_path: Path | None, samples: Sequence[Mapping[str, Any]]
) -> tuple[Counter[str], str]:
    """The errors by reason, and a note on where they were counted from.

    Reads the errors file (its first ``_MAX_ERROR_LINES`` entries or ``_MAX_ERROR_BYTES``
    at most) when there is one, else the result's first few samples. A reason is
    ``kind: reason``, cut at ``_REASON_CHARS``; past ``_MAX_REASONS`` distinct ones, new
    reasons are counted as one, so memory stays bounded however varied they are.
    """
    found: Counter[str] = Counter()
    if errors_path is None:
        for sample in samples:
            found[_reason(sample)] += 1
        note = "no errors file: only the first bad elements are known"
        return found, note if samples else "no errors file"
    entries = read = 0
    try:
        with errors_path.open("rb") as lines:
            for line in lines:
                read += len(line)
                if entries >= _MAX_ERROR_LINES or read > _MAX_ERROR_BYTES:
                    return found, f"{errors_path}: its first {entries:,} entries"
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict):
                        reason = _reason(entry)
                        if reason not in found and len(found) >= _MAX_REASONS:
                            reason = _OTHERS
                        found[reason] += 1
                        entries += 1
    except FileNotFoundError:
        return found, f"{errors_path}: not written"
    except OSError as exc:
        return found, f"{errors_path}: cannot be read ({exc.strerror or exc})"
    return found, f"{errors_path}: every entry"


def _reason(entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind", "bad_input")
    return f"{kind}: {entry.get('reason', '?')}"[:_REASON_CHARS]


def _rates(samples: Sequence[_Sample], field: str) -> list[tuple[float, float]]:
    """Per-second rates of a cumulative counter between consecutive samples."""
    points = []
    for before, after in itertools.pairwise(samples):
        span = after.elapsed - before.elapsed
        if span > 0:
            points.append((after.elapsed, (getattr(after, field) - getattr(before, field)) / span))
    return points


def _histogram(latency: Any) -> list[tuple[str, float]]:
    """An operator's latency histogram as columns (count per bucket), empty ends cut off."""
    columns: list[tuple[str, float]] = []
    below = 0
    for bound, cumulative in getattr(latency, "buckets", ()):
        label = "> 100 s" if math.isinf(bound) else f"≤ {fmt_ms(bound)}"
        columns.append((label, cumulative - below))
        below = cumulative
    used = [i for i, (_, n) in enumerate(columns) if n]
    return columns[used[0] : used[-1] + 1] if used else []


def _charts_of(samples: Sequence[_Sample], final: Any) -> list[tuple[str, str, str]]:
    """``(section, title, svg or a note)`` for every chart of the page."""
    charts = [
        (
            "throughput",
            "Throughput (events per second)",
            line_chart(
                "throughput",
                [
                    Series("events in/s", _rates(samples, "events_in")),
                    Series("events out/s", _rates(samples, "events_out")),
                    Series("errors/s", _rates(samples, "errors")),
                ],
                y_unit="/s",
            ),
        )
    ]
    names = list(dict.fromkeys(name for s in samples for name in s.operators))
    for op in getattr(final, "operators", ()):
        if not op.capacity:
            continue  # map/filter: no latency of their own
        columns = _histogram(getattr(op, "latency", None))
        body = column_chart(f"latency of {op.name}", columns) if columns else ""
        charts.append(("latency", f"Latency distribution: {op.name}", body))
    for name in names:
        at = _at(samples, name)
        lines = [
            Series("in flight", [(t, o.in_flight) for t, o in at]),
            Series("capacity", [(t, o.capacity) for t, o in at], dashed=True),
        ]
        limits = [(t, o.limit) for t, o in at if o.limit is not None]
        if limits:
            lines.append(Series("concurrency limit", limits, dashed=True))
        charts.append(("in-flight", f"In flight vs capacity: {name}", line_chart(name, lines)))
    for name in names:
        ratio = []
        at = _at(samples, name)
        for (t0, a), (t1, b) in itertools.pairwise(at):
            looked = (b.hits + b.misses) - (a.hits + a.misses)
            if looked > 0 and t1 > t0:
                ratio.append((t1, 100 * (b.hits - a.hits) / looked))
        if ratio:
            svg = line_chart(name, [Series("hit ratio", ratio)], y_unit="%", y_max=100)
            charts.append(("cache", f"Cache hit ratio: {name}", svg))
    return charts


def _at(samples: Sequence[_Sample], name: str) -> list[tuple[float, _Operator]]:
    return [(s.elapsed, s.operators[name]) for s in samples if name in s.operators]


_STYLE: Final = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}h3{font-size:14px}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
.status-failed{color:#b00}.status-stopped{color:#a60}.status-succeeded{color:#070}
.note{color:#666;font-size:12px}svg.chart{max-width:100%;height:auto}
"""


def _summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("events in", f"{summary['events_in']:,}"),
        ("events out", f"{summary['events_out']:,}"),
        ("errors", f"{summary['errors']:,}"),
        ("skipped", f"{summary['skipped']:,}"),
        ("dead letters", f"{summary['dead_letters']:,}"),
        ("duration", f"{summary['duration_s']:,.3f} s"),
        ("throughput", _or_dash(summary.get("throughput_eps"), "{:,.1f} events/s")),
        ("cache hit ratio", fmt_ratio(summary.get("cache_hit_ratio"))),
    ]
    checkpoints = summary.get("checkpoints")
    if checkpoints:
        rows.append(("checkpoints", f"{checkpoints['completed']:,}"))
        rows.append(("last checkpoint", _or_dash(checkpoints.get("last"), "#{}")))
        rows.append(("restored from", _or_dash(checkpoints.get("restored_from"), "#{}")))
    else:
        rows.append(("checkpoints", "none (the job does not checkpoint)"))
    totals = summary.get("job_totals")
    if totals and totals.get("runs", 1) > 1:
        rows.append(
            (
                f"over all {totals['runs']} runs",
                f"in {totals['events_in']:,}, out {totals['events_out']:,}, "
                f"errors {totals['errors']:,}",
            )
        )
    return rows


def _or_dash(value: Any, form: str) -> str:
    return "-" if value is None else form.format(value)


def _operators_table(summary: Mapping[str, Any]) -> str:
    head = ("operator", "capacity", "emitted", "p50", "p99", "cache hits", "retries", "failures")
    rows = []
    for op in summary.get("operators", ()):
        p50, p99 = op.get("latency_p50_ms"), op.get("latency_p99_ms")
        cells = (
            op["name"],
            _or_dash(op.get("capacity"), "{:,}"),
            f"{op['emitted']:,}",
            "-" if p50 is None else fmt_ms(p50 / 1000),
            "-" if p99 is None else fmt_ms(p99 / 1000),
            fmt_ratio(op.get("cache_hit_ratio")),
            f"{op['retries']:,}",
            f"{op['failures']:,}",
        )
        rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    header = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    return f"<h2>Operators</h2><table>{header}{''.join(rows)}</table>"


def render_report(
    summary: Mapping[str, Any],
    samples: Sequence[_Sample],
    final: Any,
    reasons: Counter[str],
    reasons_note: str,
) -> str:
    """The report page: the summary, the charts and the errors by reason.

    Args:
        summary: the job summary (:func:`~asyncwait.cli.summary.summarize`).
        samples: the run's progress samples (:attr:`RunRecorder.samples`).
        final: the job's result (or last progress): its operators' latency histograms.
        reasons: errors counted by reason (:func:`count_reasons`).
        reasons_note: where they were counted.
    """
    job = escape(str(summary["job"]))
    status = str(summary["status"])
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>asyncwait run report: {job}</title><style>{_STYLE}</style></head><body>",
        f'<h1>Run report: {job} <span class="status-{escape(status)}">',
        f"{escape(status)}</span></h1>",
    ]
    if summary.get("error"):
        out.append(f'<p class="status-failed">{escape(str(summary["error"]))}</p>')
    out.append("<h2>Summary</h2><table>")
    out += [f"<tr><th>{k}</th><td>{escape(v)}</td></tr>" for k, v in _summary_rows(summary)]
    out.append("</table>")
    out.append(_operators_table(summary))
    out.append(f'<p class="note">progress samples drawn: {len(samples):,}</p>')
    section = ""
    for name, title, svg in _charts_of(samples, final):
        if name != section:
            section = name
            out.append(f'<h2 id="{name}">{escape(_SECTIONS[name])}</h2>')
        body = svg or '<p class="note">no completed elements</p>'
        out.append(f'<section class="chart-box" data-chart="{name}"><h3>{escape(title)}</h3>')
        out.append(f"{body}</section>")
    out.append('<h2 id="errors">Errors by reason</h2>')
    out.append(f'<p class="note">{escape(reasons_note)}</p>')
    if reasons:
        top = reasons.most_common(_TOP_REASONS)
        rest = sum(reasons.values()) - sum(n for _, n in top)
        bars = [(reason, float(n)) for reason, n in top]
        if rest:
            bars.append((f"{len(reasons) - len(top):,} other reasons", float(rest)))
        out.append('<section class="chart-box" data-chart="errors">')
        out.append(bar_chart("errors by reason", bars) + "</section>")
    else:
        out.append("<p>no errors</p>")
    out.append("</body></html>\n")
    return "".join(out)


_SECTIONS: Final = {
    "throughput": "Throughput",
    "latency": "Latency distribution per operator",
    "in-flight": "In flight vs capacity",
    "cache": "Cache hit ratio",
}


def write_report(path: Path, page: str) -> None:
    """Write ``page`` to ``path`` atomically: a temporary file beside it, then a rename.

    Raises:
        OSError: it could not be written; no temporary file is left behind.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(page)
            out.flush()
            os.fsync(out.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temp, 0o666 & ~mask)  # as an ordinary new file, not mkstemp's 0600
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
