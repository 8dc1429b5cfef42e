"""The JSON codec: orjson where it gives the standard library's bytes, never anything else."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncwait import OutputMode, _codec
from asyncwait.cli import demo


def test_the_suite_runs_with_orjson() -> None:
    # orjson is a test dependency: without it the comparisons below would compare the
    # standard library with itself.
    assert _codec.FAST


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except (TypeError, ValueError, RecursionError) as exc:
        return "error", type(exc).__name__


floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-5, 6.26703014325946e-05, 2.35e-09, 1e16, 1e-4, -0.0, 5e-324, 1.7976931348623157e308]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | floats
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=values)
def test_dumps_gives_the_standard_librarys_bytes_or_its_error(value: Any) -> None:
    assert outcome(_codec.dumps, value) == outcome(_codec.dumps_stdlib, value)


@settings(max_examples=400, deadline=None)
@given(value=values)
def test_loads_reads_what_the_standard_library_reads(value: Any) -> None:
    try:
        text = json.dumps(value, ensure_ascii=False)  # NaN and Infinity included, as json does
    except ValueError:
        return
    data = text.encode("utf-8", "surrogatepass")
    expected = json.loads(text)
    got = _codec.loads(data)
    assert repr(got) == repr(expected)  # repr: NaN != NaN, and -0.0 == 0.0
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    "text",
    [
        b'{"id": 123456789012345678901234567890}',  # orjson would read a float
        b'{"id": -9223372036854775809}',
        b'{"x": 1e400}',  # orjson refuses; json reads inf
        b'{"x": NaN}',
        b'{"x": "\\ud800"}',  # a lone surrogate
        b"\xef\xbb\xbf{}",  # a byte order mark
    ],
)
def test_the_standard_library_decides_what_orjson_would_read_otherwise(text: bytes) -> None:
    assert repr(_codec.loads(text)) == repr(json.loads(text))


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


def test_values_beyond_json_are_refused_or_written_alike() -> None:
    same = uuid.UUID(int=7)
    assert _codec.dumps({"u": same, "c": Color.RED}) == _codec.dumps_stdlib(
        {"u": same, "c": Color.RED}
    )
    assert _codec.dumps({"u": same}) == b'{"u":"00000000-0000-0000-0000-000000000007"}'
    for refused in (
        datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        {1, 2},
        Point(1),
        math.nan,
        [math.inf],
    ):
        assert outcome(_codec.dumps, refused) == outcome(_codec.dumps_stdlib, refused)
        assert outcome(_codec.dumps, refused)[0] == "error"


def test_the_demo_job_writes_the_same_bytes_with_either_codec(tmp_path: Path) -> None:
    data = demo.generate(tmp_path / "data", events=3_000, users=400, seed=7)
    job = demo.write_job(data, mode=OutputMode.ORDERED, capacity=50, cache=True)
    outputs = []
    for codec in ("orjson", "stdlib"):
        env = {**os.environ, "ASYNCWAIT_JSON": codec}
        for name in ("enriched.jsonl", "errors.jsonl"):
            (job.parent / name).unlink(missing_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "asyncwait", "run", "--quiet", str(job)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(
            (
                (job.parent / "enriched.jsonl").read_bytes(),
                (job.parent / "errors.jsonl").read_bytes(),
            )
        )
    (out_fast, errors_fast), (out_std, errors_std) = outputs
    assert out_fast == out_std
    assert errors_fast == errors_std
    assert out_fast.count(b"\n") > 2_000  # the job really ran
    assert errors_fast.count(b"\n") > 0  # and met bad lines
