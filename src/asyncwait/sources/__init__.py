"""Sources: where a job's records come from (JSONL and CSV files, stdin, in-memory collections).

A source is read in batches (:meth:`Source.read`), never one element per await. Each record
remembers its position: the source's name and its 1-based line, which error messages and the
errors file show. File sources also track the byte offset after the last line read
(:attr:`Source.offset`) and can start from an offset (``open(start_offset=...)``), so a
later checkpoint can resume them.

Malformed input is *bad input*, not a failure: a line that is not JSON, a JSON value that is
not an object, invalid UTF-8, a CSV row with the wrong number of fields or a value its type
conversion rejects. The source hands it to the job's ``reject`` (the errors file: source,
line, raw text, reason) and goes on; the job fails only past ``max_errors``. A missing file
is a :class:`~asyncwait.ConfigError` naming the path, raised by ``open`` before anything runs.

Files are read in large chunks with plain blocking reads (short for local files); standard
input that is a pipe or a terminal is read without blocking the event loop.

A source declares the files it reads with ``paths()`` (:class:`PathUse` values), so that a
job never writes one of them.
"""

from .._paths import Access as Access
from .._paths import PathUse as PathUse
from .._rejects import Reject as Reject
from ._base import Source as Source
from ._collection import collection as collection
from ._csv import csv as csv
from ._jsonl import jsonl as jsonl
from ._stdin import stdin as stdin

__all__ = ("Access", "PathUse", "Reject", "Source", "collection", "csv", "jsonl", "stdin")
