"""asyncwait: Apache Flink's Async I/O for Python.

Enrich a stream from external systems with bounded concurrency, ordered, unordered or
key-ordered output, watermarks, per-element timeouts, retries and snapshots.
"""

from . import cache as cache
from . import lookups as lookups
from . import retry as retry
from . import sinks as sinks
from . import sources as sources
from . import watermarks as watermarks
from .elements import Record as Record
from .elements import StreamElement as StreamElement
from .elements import Watermark as Watermark
from .errors import AsyncFunctionError as AsyncFunctionError
from .errors import AsyncTimeoutError as AsyncTimeoutError
from .errors import AsyncWaitError as AsyncWaitError
from .errors import AttemptTimeoutError as AttemptTimeoutError
from .errors import BadInputError as BadInputError
from .errors import CheckpointWarning as CheckpointWarning
from .errors import CircuitOpenError as CircuitOpenError
from .errors import ClosedError as ClosedError
from .errors import ConfigError as ConfigError
from .errors import HttpStatusError as HttpStatusError
from .errors import InternalError as InternalError
from .errors import LookupFailedError as LookupFailedError
from .function import AsyncFunction as AsyncFunction
from .function import RuntimeContext as RuntimeContext
from .function import threaded as threaded
from .join import LookupJoin as LookupJoin
from .metrics import Metrics as Metrics
from .operator import AsyncWaitOperator as AsyncWaitOperator
from .operator import OnError as OnError
from .operator import OperatorStatistics as OperatorStatistics
from .operator import OutputMode as OutputMode
from .prometheus import MetricsEndpoint as MetricsEndpoint
from .prometheus import PrometheusCollector as PrometheusCollector
from .prometheus import metrics_registry as metrics_registry
from .retry import NO_RETRY as NO_RETRY
from .runtime import DataStream as DataStream
from .runtime import JobProgress as JobProgress
from .runtime import JobResult as JobResult
from .runtime import JobTotals as JobTotals
from .runtime import OperatorSummary as OperatorSummary
from .runtime import StreamEnvironment as StreamEnvironment
from .waits import key_ordered_wait as key_ordered_wait
from .waits import ordered_wait as ordered_wait
from .waits import unordered_wait as unordered_wait
from .watermarks import WatermarkStrategy as WatermarkStrategy

__version__ = "0.1.0"

__all__ = [
    "NO_RETRY",
    "AsyncFunction",
    "AsyncFunctionError",
    "AsyncTimeoutError",
    "AsyncWaitError",
    "AsyncWaitOperator",
    "AttemptTimeoutError",
    "BadInputError",
    "CheckpointWarning",
    "CircuitOpenError",
    "ClosedError",
    "ConfigError",
    "DataStream",
    "HttpStatusError",
    "InternalError",
    "JobProgress",
    "JobResult",
    "JobTotals",
    "LookupFailedError",
    "LookupJoin",
    "Metrics",
    "MetricsEndpoint",
    "OnError",
    "OperatorStatistics",
    "OperatorSummary",
    "OutputMode",
    "PrometheusCollector",
    "Record",
    "RuntimeContext",
    "StreamElement",
    "StreamEnvironment",
    "Watermark",
    "WatermarkStrategy",
    "cache",
    "key_ordered_wait",
    "lookups",
    "metrics_registry",
    "ordered_wait",
    "retry",
    "sinks",
    "sources",
    "threaded",
    "unordered_wait",
    "watermarks",
]
