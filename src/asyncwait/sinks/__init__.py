"""Sinks: where a job's records end up (JSONL and CSV files, stdout, an in-memory list).

A sink receives batches of elements (:meth:`Sink.write`), in stream order; watermarks come
along so that a sink can see event-time progress, and the file sinks ignore them. Writing
uses large buffered file I/O, flushed when the job ends (or fails) and closes the sink.

With checkpointing on, the file sinks are *transactional*: what they receive between two
checkpoints goes to a hidden part file next to the output (``.out.jsonl.part-000004``) and is
appended to the output only when the checkpoint completes; a job resuming from a checkpoint
first puts the output back to exactly what that checkpoint committed. So the output file
only ever holds committed records, each once. ``stdout`` and ``collect`` cannot take back
what they wrote: with checkpoints their output is at-least-once.

A value a sink cannot write is *bad input*, not a failure: a value JSON cannot represent (a
``datetime``, a ``set``, ``NaN``...), or for CSV a value that is not a dict or that has a
field outside the header (the first record's keys plus the declared ``columns``; a field
a record lacks is an empty cell). The sink routes it to the job's errors file, naming the
element (and the field), and goes on.

A sink declares the files it writes with ``paths()`` (:class:`PathUse` values): the job
refuses to start when one of them is an input or another output, and locks each against a
second run while it runs.
"""

from .._paths import Access as Access
from .._paths import PathUse as PathUse
from .._rejects import Reject as Reject
from ._base import Sink as Sink
from ._collect import CollectSink as CollectSink
from ._collect import collect as collect
from ._files import csv as csv
from ._files import jsonl as jsonl
from ._text import stdout as stdout

__all__ = (
    "Access",
    "CollectSink",
    "PathUse",
    "Reject",
    "Sink",
    "collect",
    "csv",
    "jsonl",
    "stdout",
)
