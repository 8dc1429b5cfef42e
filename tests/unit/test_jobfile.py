from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from asyncwait import BadInputError, ConfigError, OutputMode
from asyncwait.jobfile import (
    CacheSpec,
    JobSpec,
    RetrySpec,
    WatermarkSpec,
    build,
    describe,
    load,
    parse,
    timestamp_extractor,
)
from asyncwait.retry import ExponentialBackoff, FixedDelay

EVENTS = [
    {"userID": "user_1", "eventTime": "2016-06-06 07:03:42", "eventType": "browse", "productID": 2},
    {"userID": "user_2", "eventTime": "2016-06-06 07:03:41", "eventType": "click", "productID": 3},
    {"userID": "user_9", "eventTime": "2016-06-06 07:03:45", "eventType": "buy", "productID": 4},
    {"userID": "user_1", "eventTime": "2016-06-06 07:03:46", "eventType": "cart", "productID": 2},
]

LOOKUP = """
[[lookup]]
type = "sqlite"
path = "dim.db"
table = "dim_user"
key = "user_id"
on = "userID"
columns = ["age"]
how = "left"
mode = "unordered"
capacity = 10
timeout = 1.0
cache = { type = "lru", max_size = 100, ttl = 300, miss_ttl = 30 }
retry = { type = "exponential", max_retries = 3, initial_delay = 0.1, max_delay = 2.0 }
"""

JOB = (
    """
[job]
name = "enrich"

[source]
type = "jsonl"
path = "events.jsonl"

[source.watermarks]
timestamp_field = "eventTime"
timestamp_format = "%Y-%m-%d %H:%M:%S"
max_out_of_orderness_ms = 5000
"""
    + LOOKUP
    + """
[sink]
type = "jsonl"
path = "out.jsonl"

[errors]
path = "errors.jsonl"
max_errors = 10
"""
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_data(tmp_path)


def make_data(tmp_path: Path) -> Path:
    """Write events.jsonl (line 3 is not JSON) and dim.db (dim_user: user_1 and user_2)."""
    lines = [json.dumps(e) for e in EVENTS]
    lines.insert(2, '{"userID": "user_3", "eventTi')  # a malformed line
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    con = sqlite3.connect(tmp_path / "dim.db")
    con.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER, city TEXT)")
    con.executemany(
        "INSERT INTO dim_user VALUES (?, ?, ?)", [("user_1", 22, "Hangzhou"), ("user_2", 35, None)]
    )
    con.commit()
    con.close()
    return tmp_path


def write_job(directory: Path, text: str = JOB) -> Path:
    path = directory / "job.toml"
    path.write_text(text)
    return path


def config_error(directory: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(write_job(directory, text))
    return str(info.value)


# ------------------------------------------------------------------ a valid file


def test_load_parses_every_field(data_dir: Path) -> None:
    spec = load(write_job(data_dir))
    assert spec.name == "enrich"
    assert spec.source.type == "jsonl"
    assert spec.source.path == data_dir / "events.jsonl"
    assert spec.source.watermarks == WatermarkSpec("eventTime", "%Y-%m-%d %H:%M:%S", 5000)
    (lookup,) = spec.lookups
    assert lookup.type == "sqlite"
    assert lookup.path == data_dir / "dim.db"
    assert (lookup.table, lookup.key, lookup.on) == ("dim_user", "user_id", "userID")
    assert lookup.columns == ("age",)
    assert lookup.how == "left"
    assert lookup.mode is OutputMode.UNORDERED
    assert (lookup.capacity, lookup.timeout) == (10, 1.0)
    assert lookup.cache == CacheSpec("lru", max_size=100, ttl=300.0, miss_ttl=30.0)
    assert lookup.retry == RetrySpec("exponential", 3, initial_delay=0.1, max_delay=2.0)
    assert isinstance(lookup.retry.strategy, ExponentialBackoff)
    assert spec.sink.path == data_dir / "out.jsonl"
    assert spec.errors is not None
    assert spec.errors.path == data_dir / "errors.jsonl"
    assert spec.errors.max_errors == 10
    assert spec.checkpoint is None
    assert spec.with_max_errors(3).errors == type(spec.errors)(data_dir / "errors.jsonl", 3)


def test_checkpoints_need_a_replayable_source(tmp_path: Path) -> None:
    text = '[source]\ntype = "stdin"\n[sink]\ntype = "stdout"\n[checkpoint]\ninterval = 1.0\n'
    with pytest.raises(ConfigError, match=r"m\.toml: checkpoint: needs a source that can be read"):
        parse(text, file=tmp_path / "m.toml")


def test_minimal_file_takes_defaults(tmp_path: Path) -> None:
    spec = parse('[source]\ntype = "stdin"\n[sink]\ntype = "stdout"\n', file=tmp_path / "m.toml")
    assert spec == JobSpec(
        file=tmp_path / "m.toml",
        name="m",
        source=spec.source,
        sink=spec.sink,
    )
    assert spec.source.path is None
    assert spec.sink.path is None


def test_lookup_defaults_and_other_shapes(data_dir: Path) -> None:
    text = JOB.replace(LOOKUP, "").replace(
        "[sink]",
        """[[lookup]]
type = "sqlite"
path = "dim.db"
table = "dim_user"
key = "user_id"
on = "userID"
cache = { type = "full" }
retry = { type = "fixed", max_retries = 2, delay = 0.5 }

[[lookup]]
type = "postgres"
dsn = "postgresql://u:secret@db/app"
table = "dim_city"
key = "city"
on = "city"
mode = "key_ordered"
how = "inner"

[sink]""",
    )
    text += "\n[checkpoint]\ninterval = 5\n"
    spec = load(write_job(data_dir, text))
    first, second = spec.lookups
    assert first.mode is OutputMode.UNORDERED
    assert (first.how, first.capacity, first.timeout, first.columns) == ("left", 100, None, None)
    assert first.cache == CacheSpec("full")
    assert first.retry is not None
    assert isinstance(first.retry.strategy, FixedDelay)
    assert (second.type, second.how, second.mode) == ("postgres", "inner", OutputMode.KEY_ORDERED)
    assert spec.checkpoint is not None
    assert spec.checkpoint.interval == 5.0
    assert spec.checkpoint.dir == data_dir / ".asyncwait" / "checkpoints"
    text = describe(spec)
    assert "lookup[1]  postgres <dsn>" in text
    assert "secret" not in text


def test_relative_paths_resolve_against_the_job_file(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(elsewhere)
    (data_dir / "sub").mkdir()
    text = JOB.replace('path = "out.jsonl"', 'path = "sub/out.jsonl"')
    text = text.replace('path = "errors.jsonl"', f'path = "{elsewhere / "errors.jsonl"}"')
    text += '[checkpoint]\ninterval = 1.5\ndir = "state"\n'
    write_job(data_dir, text)
    spec = load(Path("..") / data_dir.name / "job.toml")
    assert spec.source.path is not None
    assert spec.source.path.samefile(data_dir / "events.jsonl")
    assert spec.lookups[0].path is not None
    assert spec.lookups[0].path.samefile(data_dir / "dim.db")
    assert spec.sink.path is not None
    assert spec.sink.path.parent.samefile(data_dir / "sub")
    assert spec.errors is not None
    assert spec.errors.path == elsewhere / "errors.jsonl"  # absolute paths stay as they are
    assert spec.checkpoint is not None
    assert spec.checkpoint.dir.parent.samefile(data_dir)
    assert spec.checkpoint.dir.name == "state"
    assert all(p.is_absolute() for p in (spec.source.path, spec.sink.path))


# ------------------------------------------------------------------ one test per error class


def test_unknown_key_suggests_the_closest(data_dir: Path) -> None:
    message = config_error(data_dir, JOB.replace('table = "dim_user"', 'tabel = "dim_user"'))
    assert message.startswith(f"{data_dir / 'job.toml'}: lookup[0].tabel: unknown key;")
    assert "did you mean 'table'?" in message
    message = config_error(data_dir, JOB.replace("[errors]", "[errros]"))
    assert "errros: unknown key; did you mean 'errors'?" in message
    message = config_error(data_dir, JOB.replace("ttl = 300", "tll = 300"))
    assert "lookup[0].cache.tll: unknown key; did you mean 'ttl'?" in message
    message = config_error(data_dir, JOB.replace("max_out_of_orderness_ms", "max_lateness_ms"))
    assert "source.watermarks.max_lateness_ms: unknown key" in message
    # A key of another lookup type is named as such.
    message = config_error(data_dir, JOB.replace('path = "dim.db"', 'dsn = "dim.db"'))
    assert "lookup[0].dsn: not used by lookup type 'sqlite' (it takes path, table, key)" in message


def test_wrong_type(data_dir: Path) -> None:
    message = config_error(data_dir, JOB.replace("capacity = 10", 'capacity = "ten"'))
    assert message == (
        f"{data_dir / 'job.toml'}: lookup[0].capacity: expected an integer, got string 'ten'"
    )
    message = config_error(data_dir, JOB.replace("capacity = 10", "capacity = true"))
    assert "lookup[0].capacity: expected an integer, got boolean True" in message
    message = config_error(data_dir, JOB.replace("timeout = 1.0", 'timeout = "1s"'))
    assert "lookup[0].timeout: expected a number, got string '1s'" in message
    message = config_error(data_dir, JOB.replace('columns = ["age"]', 'columns = "age"'))
    assert "lookup[0].columns: expected an array of non-empty strings" in message
    message = config_error(data_dir, JOB.replace("[[lookup]]", "[lookup]"))
    assert "lookup: expected an array of tables ([[lookup]])" in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1.5", "must be within [0, 1], got 1.5"),
        ("-0.5", "must be >= 0, got -0.5"),
        ('"half"', "expected a number, got string 'half'"),
        ("true", "expected a number, got boolean True"),
        ("nan", "must be a finite number, got nan"),
    ],
)
def test_min_match_ratio_is_a_number_in_0_1(data_dir: Path, value: str, problem: str) -> None:
    text = JOB.replace("capacity = 10\n", f"capacity = 10\nmin_match_ratio = {value}\n")
    assert config_error(data_dir, text) == (
        f"{data_dir / 'job.toml'}: lookup[0].min_match_ratio: {problem}"
    )


def test_min_match_ratio_is_read_and_described(data_dir: Path) -> None:
    text = JOB.replace("capacity = 10\n", "capacity = 10\nmin_match_ratio = 1\n")
    spec = load(write_job(data_dir, text))
    assert spec.lookups[0].min_match_ratio == 1.0
    assert "; min_match_ratio 1" in describe(spec)
    assert load(write_job(data_dir)).lookups[0].min_match_ratio is None


def test_bad_enum_value(data_dir: Path) -> None:
    message = config_error(data_dir, JOB.replace('mode = "unordered"', 'mode = "sorted"'))
    assert message == (
        f"{data_dir / 'job.toml'}: lookup[0].mode: "
        "'sorted' is not one of ordered, unordered, key_ordered"
    )
    message = config_error(data_dir, JOB.replace('how = "left"', 'how = "outer"'))
    assert "lookup[0].how: 'outer' is not one of left, inner" in message
    message = config_error(
        data_dir, JOB.replace('type = "jsonl"\npath = "events', 'type = "kafka"\npath = "events')
    )
    assert "source.type: 'kafka' is not one of jsonl, csv, stdin" in message
    message = config_error(data_dir, JOB.replace('type = "lru"', 'type = "lfu"'))
    assert "lookup[0].cache.type: 'lfu' is not one of lru, full" in message


def test_out_of_range_values(data_dir: Path) -> None:
    message = config_error(data_dir, JOB.replace("capacity = 10", "capacity = -5"))
    assert message.endswith("lookup[0].capacity: must be >= 1, got -5")
    message = config_error(data_dir, JOB.replace("timeout = 1.0", "timeout = 0"))
    assert "lookup[0].timeout: must be > 0, got 0" in message
    message = config_error(data_dir, JOB.replace("max_errors = 10", "max_errors = -1"))
    assert "errors.max_errors: must be >= 0, got -1" in message
    message = config_error(data_dir, JOB.replace("max_delay = 2.0", "max_delay = 0.01"))
    assert "lookup[0].retry: max_delay (0.01) must not be smaller than initial_delay" in message
    message = config_error(data_dir, JOB.replace("initial_delay", "jitter = 2, initial_delay"))
    assert "lookup[0].retry.jitter: must be within [0, 1], got 2.0" in message
    message = config_error(data_dir, JOB.replace('"%Y-%m-%d %H:%M:%S"', '"YYYY-MM-DD"'))
    assert "source.watermarks.timestamp_format: 'YYYY-MM-DD' is not a strptime format" in message


def test_missing_required_field(data_dir: Path) -> None:
    message = config_error(data_dir, JOB.replace('on = "userID"\n', ""))
    assert message == f"{data_dir / 'job.toml'}: lookup[0].on: missing required field"
    message = config_error(data_dir, JOB.replace('type = "sqlite"\n', ""))
    assert "lookup[0].type: missing required field" in message
    message = config_error(data_dir, JOB.replace("max_size = 100, ", ""))
    assert "lookup[0].cache.max_size: missing required field" in message
    message = config_error(data_dir, JOB.replace('[sink]\ntype = "jsonl"\npath = "out.jsonl"', ""))
    assert message.endswith("sink: missing required field")
    message = config_error(data_dir, JOB.replace('timestamp_field = "eventTime"\n', ""))
    assert "source.watermarks.timestamp_field: missing required field" in message


def test_missing_input_file(data_dir: Path) -> None:
    (data_dir / "events.jsonl").unlink()
    message = config_error(data_dir, JOB)
    assert message == (
        f"{data_dir / 'job.toml'}: source.path: no such file: {data_dir / 'events.jsonl'}"
    )
    message = config_error(
        data_dir,
        JOB.replace('path = "events.jsonl"', 'path = "dim.db"').replace(
            'path = "dim.db"\ntable', 'path = "nope.db"\ntable'
        ),
    )
    assert f"lookup[0].path: no such file: {data_dir / 'nope.db'}" in message
    message = config_error(
        data_dir,
        JOB.replace('"events.jsonl"', '"dim.db"').replace('"out.jsonl"', '"no/such/dir/out.jsonl"'),
    )
    assert f"sink.path: directory does not exist: {data_dir / 'no' / 'such' / 'dir'}" in message


def test_unreadable_or_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read job file"):
        load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"bad\.toml: not a valid TOML file: .*line 1"):
        parse("[source\n", file="bad.toml")


# ------------------------------------------------------------------ event time


def test_timestamp_extractor_strptime_is_utc() -> None:
    ts = timestamp_extractor(WatermarkSpec("eventTime", "%Y-%m-%d %H:%M:%S"))
    assert ts({"eventTime": "2016-06-06 07:03:42"}) == 1_465_196_622_000
    assert ts({"eventTime": "2016-06-06 07:03:42"}) == 1_465_196_622_000  # cached path
    assert ts({"eventTime": "2016-6-6 7:03:42"}) == 1_465_196_622_000  # strptime fallback
    other = timestamp_extractor(WatermarkSpec("t", "%d/%m/%Y %H:%M%z"))
    assert other({"t": "06/06/2016 09:03+0200"}) == 1_465_196_580_000


def test_timestamp_extractor_epochs() -> None:
    ms = timestamp_extractor(WatermarkSpec("t", "epoch_ms"))
    assert ms({"t": 1_465_196_622_000}) == 1_465_196_622_000
    assert ms({"t": "1465196622000"}) == 1_465_196_622_000
    seconds = timestamp_extractor(WatermarkSpec("t", "epoch_s"))
    assert seconds({"t": 1_465_196_622}) == 1_465_196_622_000
    assert seconds({"t": 1_465_196_622.5}) == 1_465_196_622_500
    assert seconds({"t": "1465196622.25"}) == 1_465_196_622_250
    with pytest.raises(BadInputError, match=r"timestamp field 't': True is not a number"):
        seconds({"t": True})


@pytest.mark.parametrize(
    ("spec", "event", "match"),
    [
        (
            WatermarkSpec("eventTime", "%Y-%m-%d %H:%M:%S"),
            {"x": 1},
            "no timestamp field 'eventTime'",
        ),
        (WatermarkSpec("eventTime", "%Y-%m-%d %H:%M:%S"), [1, 2], "no timestamp field 'eventTime'"),
        (
            WatermarkSpec("eventTime", "%Y-%m-%d %H:%M:%S"),
            {"eventTime": "20l6-06-06 07:03:42"},
            "timestamp field 'eventTime': '20l6-06-06 07:03:42' does not match the format",
        ),
        (
            WatermarkSpec("eventTime", "%Y-%m-%d %H:%M:%S"),
            {"eventTime": 17},
            "timestamp field 'eventTime': 17 is not a string",
        ),
        (WatermarkSpec("t", "epoch_ms"), {"t": "soon"}, "'soon' is not a number"),
    ],
)
def test_timestamp_extractor_bad_input(spec: WatermarkSpec, event: object, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        timestamp_extractor(spec)(event)


# ------------------------------------------------------------------ building


def test_a_lookup_without_its_driver_fails_when_built(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncwait.jobfile import _build

    monkeypatch.setitem(_build._DRIVERS, "redis", "no_such_driver_module")
    text = JOB.replace(
        LOOKUP, '[[lookup]]\ntype = "redis"\nurl = "redis://localhost"\non = "userID"\n'
    )
    spec = load(write_job(data_dir, text))
    with pytest.raises(
        ConfigError,
        match=r"lookup\[0\]\.type: lookup type 'redis' needs its driver no_such_driver_module, "
        r"which is not installed: pip install 'asyncwait\[redis\]'",
    ):
        build(spec)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_build_runs_the_job_end_to_end(data_dir: Path) -> None:
    wrapped: list[str] = []

    def wrap(table: object) -> object:
        wrapped.append(str(getattr(table, "name", "")))
        return table

    env = build(load(write_job(data_dir)), wrap_lookup=wrap)
    result = await env.execute_async()
    assert wrapped == [f"sqlite:{data_dir / 'dim.db'}/dim_user"]
    assert (result.events_in, result.events_out, result.errors) == (5, 4, 1)
    out = read_jsonl(data_dir / "out.jsonl")
    assert sorted((str(e["userID"]), e.get("age"), e["eventType"]) for e in out) == [
        ("user_1", 22, "browse"),
        ("user_1", 22, "cart"),
        ("user_2", 35, "click"),
        ("user_9", None, "buy"),  # left join: no row, the event unchanged
    ]
    assert all("city" not in e for e in out)  # columns = ["age"]
    (error,) = read_jsonl(data_dir / "errors.jsonl")
    assert (error["line"], error["source"]) == (3, str(data_dir / "events.jsonl"))
    (operator,) = result.operators
    assert operator.name == "lookup[0]:dim_user"
    assert operator.capacity == 10


async def test_build_csv_inner_key_ordered_full_cache(data_dir: Path) -> None:
    (data_dir / "events.csv").write_text(
        "userID,ts,productID\nuser_1,1465196622,2\nuser_9,1465196623,3\n"
        "user_2,1465196621,4\n,1465196624,5\nuser_2,soon,6\n"
    )
    text = f"""
[source]
type = "csv"
path = "events.csv"
[source.watermarks]
timestamp_field = "ts"
timestamp_format = "epoch_s"
[[lookup]]
type = "sqlite"
path = "{data_dir / "dim.db"}"
table = "dim_user"
key = "user_id"
on = "userID"
how = "inner"
mode = "key_ordered"
cache = {{ type = "full" }}
[sink]
type = "csv"
path = "out.csv"
[errors]
path = "errors.jsonl"
"""
    spec = load(write_job(data_dir, text))
    result = await build(spec).execute_async()
    lines = (data_dir / "out.csv").read_text().splitlines()
    assert lines[0] == "userID,ts,productID,user_id,age,city"  # all columns by default
    assert sorted(lines[1:]) == [
        "user_1,1465196622,2,user_1,22,Hangzhou",
        "user_2,1465196621,4,user_2,35,",
    ]
    assert result.errors == 1  # the unparsable "soon"; the empty key is just not found
    (error,) = read_jsonl(data_dir / "errors.jsonl")
    assert "timestamp field 'ts': 'soon' is not a number (epoch_s)" in str(error["reason"])


# ------------------------------------------------------------------ max_queries, pool_size, schema

PG_LOOKUP = """[[lookup]]
type = "postgres"
dsn = "postgresql://u:secret@db/app"
table = "dim_user"
key = "user_id"
on = "userID"
"""
MYSQL_LOOKUP = PG_LOOKUP.replace('"postgres"', '"mysql"').replace("postgresql:", "mysql:")
REDIS_LOOKUP = '[[lookup]]\ntype = "redis"\nurl = "redis://localhost"\non = "userID"\n'
HTTP_LOOKUP = '[[lookup]]\ntype = "http"\nurl = "http://localhost/u/{key}"\non = "userID"\n'

SERVER_LOOKUPS = """
[[lookup]]
type = "postgres"
dsn = "postgresql://u:secret@db/app"
table = "dim_user"
key = "user_id"
on = "userID"
schema = "public"
pool_size = 4
max_queries = 3

[[lookup]]
type = "mysql"
dsn = "mysql://u:secret@db/app"
table = "dim_user"
key = "user_id"
on = "userID"
pool_size = 7

[[lookup]]
type = "redis"
url = "redis://localhost:6379/0"
on = "userID"
pool_size = 500

[[lookup]]
type = "http"
url = "http://localhost/users/{key}"
on = "userID"
max_queries = 1
"""


class RecordingTable:
    """A lookup table passing everything to ``table``; records what the join expects of it."""

    def __init__(self, table: object) -> None:
        self._table = table
        self.name = str(getattr(table, "name", ""))
        self.expected: list[int] = []

    def expect_queries(self, queries: int) -> None:
        self.expected.append(queries)

    def __getattr__(self, name: str) -> object:
        return getattr(self._table, name)


def test_pool_size_schema_and_max_queries_reach_the_built_tables(data_dir: Path) -> None:
    spec = load(write_job(data_dir, JOB.replace(LOOKUP, SERVER_LOOKUPS)))
    pg, my, rd, http = spec.lookups
    assert (pg.schema, pg.pool_size, pg.max_queries) == ("public", 4, 3)
    assert (my.schema, my.pool_size, my.max_queries) == (None, 7, None)
    assert (rd.pool_size, rd.max_queries) == (500, None)  # no bound but >= 1 for redis
    assert (http.pool_size, http.max_queries) == (None, 1)
    tables: list[Any] = []

    def keep(table: object) -> object:
        tables.append(table)
        return table

    build(spec, wrap_lookup=keep)  # nothing connects
    assert tables[0].pool_size == 4
    assert tables[0].name == "postgres://u@db:5432/app/public.dim_user"
    assert tables[1].statistics().pool_size == 7
    assert tables[2].statistics().pool_size == 500
    text = describe(spec)
    assert "table public.dim_user key user_id" in text
    assert "; max_queries 3; pool_size 4" in text
    assert "lookup[1]  mysql <dsn> table dim_user key user_id;" in text
    assert "; pool_size 7" in text
    assert "; max_queries 1" in text
    assert "secret" not in text


async def test_max_queries_reaches_the_lookup_join(data_dir: Path) -> None:
    recorders: list[RecordingTable] = []

    def record(table: object) -> RecordingTable:
        recorders.append(RecordingTable(table))
        return recorders[-1]

    text = JOB.replace("capacity = 10", "capacity = 10\nmax_queries = 3")
    result = await build(load(write_job(data_dir, text)), wrap_lookup=record).execute_async()
    assert (result.events_in, result.events_out, result.errors) == (5, 4, 1)
    assert recorders[0].expected == [3]  # what the join sizes a connection pool from
    await build(load(write_job(data_dir)), wrap_lookup=record).execute_async()
    assert recorders[1].expected == [2]  # the join's default when batching


@pytest.mark.parametrize("lookup", [LOOKUP, PG_LOOKUP, MYSQL_LOOKUP, REDIS_LOOKUP, HTTP_LOOKUP])
def test_every_lookup_type_takes_max_queries(data_dir: Path, lookup: str) -> None:
    spec = load(write_job(data_dir, JOB.replace(LOOKUP, f"{lookup}max_queries = 5\n")))
    assert spec.lookups[0].max_queries == 5
    assert f'type = "{spec.lookups[0].type}"' in lookup


@pytest.mark.parametrize(
    ("lookup", "line", "problem"),
    [
        (LOOKUP, "max_queries = 0", "max_queries: must be >= 1, got 0"),
        (PG_LOOKUP, "max_queries = -1", "max_queries: must be >= 1, got -1"),
        (PG_LOOKUP, 'max_queries = "3"', "max_queries: expected an integer, got string '3'"),
        (HTTP_LOOKUP, "max_queries = true", "max_queries: expected an integer, got boolean True"),
        (REDIS_LOOKUP, "max_queries = 2.5", "max_queries: expected an integer, got float 2.5"),
        (PG_LOOKUP, "pool_size = 0", "pool_size: must be within [1, 100], got 0"),
        (PG_LOOKUP, "pool_size = -1", "pool_size: must be within [1, 100], got -1"),
        (PG_LOOKUP, "pool_size = 101", "pool_size: must be within [1, 100], got 101"),
        (PG_LOOKUP, 'pool_size = "3"', "pool_size: expected an integer, got string '3'"),
        (PG_LOOKUP, "pool_size = true", "pool_size: expected an integer, got boolean True"),
        (PG_LOOKUP, "pool_size = 4.0", "pool_size: expected an integer, got float 4.0"),
        (MYSQL_LOOKUP, "pool_size = 0", "pool_size: must be >= 1, got 0"),
        (MYSQL_LOOKUP, "pool_size = 1.5", "pool_size: expected an integer, got float 1.5"),
        (REDIS_LOOKUP, "pool_size = -1", "pool_size: must be >= 1, got -1"),
        (REDIS_LOOKUP, "pool_size = false", "pool_size: expected an integer, got boolean False"),
        (PG_LOOKUP, 'schema = ""', "schema: must not be empty"),
        (PG_LOOKUP, "schema = 5", "schema: expected a string, got integer 5"),
        (PG_LOOKUP, 'schema = "a\\u0000b"', "schema: must not contain a NUL character"),
        (
            MYSQL_LOOKUP,
            'schema = "public"',
            "schema: not used by lookup type 'mysql' (it takes dsn, table, key, pool_size)",
        ),
        (
            REDIS_LOOKUP,
            'schema = "public"',
            "schema: not used by lookup type 'redis' (it takes url, key_prefix, value, pool_size)",
        ),
        (
            LOOKUP,
            "pool_size = 4",
            "pool_size: not used by lookup type 'sqlite' (it takes path, table, key)",
        ),
        (
            HTTP_LOOKUP,
            "pool_size = 4",
            "pool_size: not used by lookup type 'http' (it takes url, method)",
        ),
    ],
)
def test_bad_max_queries_pool_size_or_schema(
    data_dir: Path, lookup: str, line: str, problem: str
) -> None:
    message = config_error(data_dir, JOB.replace(LOOKUP, f"{lookup}{line}\n"))
    assert message == f"{data_dir / 'job.toml'}: lookup[0].{problem}"


@pytest.mark.parametrize(
    ("lookup", "pool_size"),
    [(PG_LOOKUP, 1), (PG_LOOKUP, 100), (PG_LOOKUP, 101), (MYSQL_LOOKUP, 1000), (REDIS_LOOKUP, 1)],
)
def test_pool_size_limits_are_the_factories(data_dir: Path, lookup: str, pool_size: int) -> None:
    """A pool_size passes validation exactly when its lookup factory takes it."""
    from asyncwait import lookups

    text = JOB.replace(LOOKUP, f"{lookup}pool_size = {pool_size}\n")
    try:
        spec = load(write_job(data_dir, text))
    except ConfigError:
        spec = None
    lk = parse(JOB.replace(LOOKUP, lookup), file=data_dir / "job.toml").lookups[0]
    target = lk.dsn if lk.type != "redis" else lk.url
    options = {"table": lk.table, "key": lk.key} if lk.type != "redis" else {}
    try:
        getattr(lookups, lk.type)(target, pool_size=pool_size, **options)
    except ConfigError:
        assert spec is None
    else:
        assert spec is not None
        assert spec.lookups[0].pool_size == pool_size
