"""MySQL's dialect as the mysql lookup table meets it.

How identifiers are quoted (:func:`quote`, :func:`quote_for_params`), how the server
compares a key with the key column under the column's collation and type, so that rows map
back to the keys asked for (:func:`normaliser`), which key types the driver binds as one
value (:data:`BINDABLE`), which column types come back as ``str`` when the driver cannot
convert a value (:data:`TEMPORAL`), and which errors are the server's verdict on a
statement rather than a lost connection (:func:`server_error`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import unicodedata
from collections.abc import Callable
from typing import Final

__all__ = (
    "BINDABLE",
    "TEMPORAL",
    "identity",
    "normaliser",
    "quote",
    "quote_for_params",
    "server_error",
)

# Key types the driver binds as one SQL value (it would expand a tuple into a row value).
BINDABLE: Final = (str, int, float, decimal.Decimal, bytes, dt.date, dt.time, dt.timedelta)
_NUMERIC: Final = frozenset(
    {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
     "float", "double", "real", "year"}
)  # fmt: skip
_TEXT: Final = frozenset(
    {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"}
)
# Temporal values the driver cannot convert (a zero date) come back as str: a malformed row.
TEMPORAL: Final = frozenset({"date", "datetime", "timestamp", "time"})
# Client-side error numbers (CR_*): the connection, not the statement, failed.
_CLIENT_ERRORS: Final = range(2000, 3000)


def identity(value: object) -> object:
    """The key as it is: for columns compared byte by byte (binary, dates)."""
    return value


def server_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an error the server reported for a statement (not a lost link)."""
    try:
        import pymysql
    except ModuleNotFoundError:  # pragma: no cover - aiomysql depends on it
        return False
    if not isinstance(exc, pymysql.err.MySQLError):
        return False
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return code is not None and code not in _CLIENT_ERRORS and code != 0


def quote(name: str) -> str:
    """Quote ``name`` as a MySQL identifier (backticks, inner backticks doubled)."""
    return "`" + name.replace("`", "``") + "`"


def quote_for_params(name: str) -> str:
    """Quote ``name`` for a statement the driver %-formats with its parameters."""
    return quote(name).replace("%", "%%")


def normaliser(data_type: str, collation: object) -> Callable[[object], object]:
    """Return how to normalise key values of a column so that equal keys compare equal.

    * numeric columns: numbers as they are (``2 == 2.0 == Decimal('2')`` in Python too);
      strings as the number they spell (``'7'`` -> ``Decimal(7)``).
    * text columns: trailing spaces dropped (PAD SPACE collations, all but ``*_nopad_*``);
      under case-insensitive (``*_ci``) collations lower-cased and, unless accent-sensitive
      (``*_as_*``), stripped of accents; numbers as their decimal text.
    * anything else (binary, dates): as it is.
    """
    if data_type in _NUMERIC:
        return _numeric_key
    if data_type not in _TEXT:
        return identity
    name = str(collation or "").lower()
    pad = "nopad" not in name
    fold_case = name.endswith("_ci")
    fold_accents = fold_case and "_as_" not in name

    def text_key(value: object) -> object:
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                return value
        elif isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return value
        if pad:
            value = value.rstrip(" ")
        if fold_case:
            value = value.lower()
        if fold_accents and not value.isascii():
            value = "".join(
                c for c in unicodedata.normalize("NFD", value) if not unicodedata.combining(c)
            )
        return value

    return text_key


def _numeric_key(value: object) -> object:
    if isinstance(value, str | bytes):
        try:
            text = value.decode() if isinstance(value, bytes) else value
            number = decimal.Decimal(text.strip())
        except (UnicodeDecodeError, decimal.InvalidOperation):
            return value
        return number if number.is_finite() else value
    return value
