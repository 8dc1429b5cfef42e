"""The standard-input source, JSONL or CSV (private)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ._base import Source
from ._csv import csv_source
from ._inputs import StdinInput
from ._jsonl import jsonl_source

__all__ = ("stdin",)


def stdin(
    format: str = "jsonl",
    *,
    delimiter: str = ",",
    quotechar: str = '"',
    types: Mapping[str, Callable[[str], Any]] | None = None,
) -> Source:
    """A source reading the process's standard input as ``"jsonl"`` or ``"csv"``.

    Behaves like :func:`jsonl` or :func:`csv`, named ``<stdin>``. A pipe or terminal is read
    without blocking the event loop; it cannot be resumed from an offset.

    Raises:
        ConfigError: an unknown ``format``.

    >>> stdin().name
    '<stdin>'
    """
    if format == "jsonl":
        return jsonl_source("<stdin>", StdinInput())
    if format == "csv":
        return csv_source(
            "<stdin>",
            StdinInput(),
            delimiter=delimiter,
            quotechar=quotechar,
            types=types,
            encoding="utf-8",
        )
    msg = f"stdin source: format must be 'jsonl' or 'csv', got {format!r}"
    raise ConfigError(msg)
