"""The Prometheus collector and registry of a job, without HTTP; the Grafana dashboard."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from asyncwait import (
    ConfigError,
    MetricsEndpoint,
    PrometheusCollector,
    StreamEnvironment,
    metrics_registry,
    sinks,
)
from asyncwait.metrics import Histogram

ROOT = Path(__file__).resolve().parents[2]


def families(env: StreamEnvironment) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    text = generate_latest(metrics_registry(env)).decode()
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


async def test_a_finished_job_reports_its_result() -> None:
    env = StreamEnvironment(name="small")

    async def twice(value: int) -> int:
        return value * 2

    env.from_collection(range(40)).ordered_wait(twice, capacity=4, name="double").sink_to(
        sinks.collect()
    )
    before = families(env)  # nothing ran yet: zeros, no operator
    assert before["asyncwait_events_in"] == [("asyncwait_events_in_total", {"job": "small"}, 0)]
    assert before["asyncwait_operator_in_flight"] == []
    result = await env.execute_async()
    found = families(env)
    assert found["asyncwait_events_in"][0][2] == result.events_in == 40
    assert found["asyncwait_events_out"][0][2] == result.events_out == 40
    emitted = found["asyncwait_operator_emitted"]
    assert emitted == [
        (
            "asyncwait_operator_emitted_total",
            {"job": "small", "operator": "double"},
            result.operators[0].emitted,
        )
    ]
    capacity = found["asyncwait_operator_capacity"]
    assert capacity == [("asyncwait_operator_capacity", {"job": "small", "operator": "double"}, 4)]
    buckets = [s for s in found["asyncwait_operator_latency_seconds"] if s[0].endswith("_bucket")]
    counts = [value for _, _, value in buckets]
    assert counts == sorted(counts)  # cumulative
    assert buckets[-1][1]["le"] == "+Inf"
    assert counts[-1] == result.operators[0].latency.count > 0


def test_histogram_snapshot_buckets_are_cumulative_and_exact() -> None:
    h = Histogram()
    values = [0.00002, 0.0005, 0.0005, 0.003, 0.2, 7.0, 500.0]
    for v in values:
        h.observe(v)
    snap = h.snapshot()
    assert snap.count == len(values)
    assert snap.total == pytest.approx(sum(values))
    for bound, count in snap.buckets:
        assert count == sum(1 for v in values if v <= bound)
    assert snap.buckets[-1] == (math.inf, len(values))


def test_the_collector_wants_an_environment() -> None:
    with pytest.raises(TypeError, match="StreamEnvironment"):
        PrometheusCollector("job")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"port must be an int in 0\.\.65535"):
        MetricsEndpoint(metrics_registry(), port=70000)


def test_the_grafana_dashboard_uses_only_exported_families() -> None:
    env = StreamEnvironment(name="d")
    exported = set(families(env))
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    used = {m for e in exprs for m in re.findall(r"\basyncwait_\w+", e)}
    assert used
    for name in used:
        family = re.sub(r"(_total|_bucket|_count|_sum)$", "", name)
        assert family in exported, name
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("throughput", "latency", "in flight", "cache hit", "errors", "checkpoint"):
        assert topic in titles, topic
