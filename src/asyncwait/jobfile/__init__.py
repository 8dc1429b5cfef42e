"""The TOML job file run by ``asyncwait run``: parsed and validated into frozen specs.

:func:`load` reads a job file and checks every field before anything runs; a bad file raises
:class:`~asyncwait.ConfigError` naming the file, the field as a dotted path
(``lookup[0].mode``) and what is allowed. Relative paths resolve against the job file's
directory. :func:`check` then checks what can be checked without running (connection
strings, that the outputs can be written and that none is an input or another output);
``validate`` and ``run`` both call it. :func:`build` turns a :class:`JobSpec` into a
ready-to-run ``StreamEnvironment``.

The layout (every table but ``[source]`` and ``[sink]`` is optional)::

    [job]                 name
    [source]              type = jsonl | csv | stdin, path
    [source.watermarks]   timestamp_field, timestamp_format, max_out_of_orderness_ms
    [[lookup]]            type, path | dsn | url, table, key, on, columns, how, mode,
                          capacity, timeout, cache = {...}, retry = {...},
                          max_batch_size, max_batch_wait, max_queries,
                          schema, pool_size, key_prefix, value, method (by type)
    [sink]                type = jsonl | csv | stdout, path
    [checkpoint]          interval, dir
    [errors]              path, max_errors
    [metrics]             port, host (Prometheus /metrics while the job runs)

See ``docs/job-file.md`` for every field.
"""

from ._build import build as build
from ._build import describe as describe
from ._build import timestamp_extractor as timestamp_extractor
from ._build import unavailable as unavailable
from ._parse import load as load
from ._parse import parse as parse
from ._preflight import check as check
from ._preflight import job_paths as job_paths
from ._spec import CacheSpec as CacheSpec
from ._spec import CheckpointSpec as CheckpointSpec
from ._spec import ErrorsSpec as ErrorsSpec
from ._spec import JobSpec as JobSpec
from ._spec import LookupSpec as LookupSpec
from ._spec import MetricsSpec as MetricsSpec
from ._spec import RetrySpec as RetrySpec
from ._spec import SinkSpec as SinkSpec
from ._spec import SourceSpec as SourceSpec
from ._spec import WatermarkSpec as WatermarkSpec

__all__ = (
    "CacheSpec",
    "CheckpointSpec",
    "ErrorsSpec",
    "JobSpec",
    "LookupSpec",
    "MetricsSpec",
    "RetrySpec",
    "SinkSpec",
    "SourceSpec",
    "WatermarkSpec",
    "build",
    "check",
    "describe",
    "job_paths",
    "load",
    "parse",
    "timestamp_extractor",
    "unavailable",
)
