"""One TOML table of a job file under validation: typed getters naming the field (private)."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Final, NoReturn, final

from .._paths import shown
from ..errors import ConfigError

__all__ = ("Table", "kind_of")

# A key TOML writes without quotes; others are shown quoted, as in the file ("", "a b").
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def kind_of(value: object) -> str:
    """Name the TOML type of ``value`` for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


@final
class Table:
    """One TOML table under validation: typed getters that raise ConfigError with its path."""

    __slots__ = ("data", "file", "name")

    def __init__(self, data: object, name: str, file: Path, allowed: tuple[str, ...]) -> None:
        self.file = file
        self.name = name  # dotted path of this table, "" for the top level
        if not isinstance(data, dict):
            self.fail(name, f"expected a table, got {kind_of(data)} {data!r}")
        self.data: dict[str, Any] = data
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(self.field(key), f"unknown key; {hint}(allowed: {', '.join(allowed)})")

    def field(self, key: str) -> str:
        shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
        return f"{self.name}.{shown}" if self.name else shown

    def fail(self, field: str, problem: str) -> NoReturn:
        msg = f"{self.file}: {field}: {problem}"
        raise ConfigError(msg)

    def has(self, key: str) -> bool:
        return key in self.data

    def required(self, key: str) -> Any:
        if key not in self.data:
            self.fail(self.field(key), "missing required field")
        return self.data[key]

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        choices: tuple[str, ...] = (),
        allow_empty: bool = False,
    ) -> Any:
        if not required and key not in self.data:
            return None
        value = self.required(key)
        if not isinstance(value, str):
            self.fail(self.field(key), f"expected a string, got {kind_of(value)} {value!r}")
        if choices and value not in choices:
            self.fail(self.field(key), f"{value!r} is not one of {', '.join(choices)}")
        if not value and not allow_empty:
            self.fail(self.field(key), "must not be empty")
        return value

    def integer(
        self, key: str, *, minimum: int, maximum: int | None = None, required: bool = False
    ) -> Any:
        if not required and key not in self.data:
            return None
        value = self.required(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(self.field(key), f"expected an integer, got {kind_of(value)} {value!r}")
        if maximum is not None and not minimum <= value <= maximum:
            self.fail(self.field(key), f"must be within [{minimum}, {maximum}], got {value}")
        if value < minimum:
            self.fail(self.field(key), f"must be >= {minimum}, got {value}")
        return value

    def number(
        self, key: str, *, minimum: float = 0.0, positive: bool = False, required: bool = False
    ) -> Any:
        if not required and key not in self.data:
            return None
        value = self.required(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.field(key), f"expected a number, got {kind_of(value)} {value!r}")
        if not math.isfinite(value):
            self.fail(self.field(key), f"must be a finite number, got {value}")
        if positive and not value > 0:
            self.fail(self.field(key), f"must be > 0, got {value}")
        if value < minimum:
            self.fail(self.field(key), f"must be >= {minimum:g}, got {value}")
        return float(value)

    def str_list(self, key: str) -> tuple[str, ...] | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(self.field(key), f"expected an array of non-empty strings, got {value!r}")
        if not value:
            self.fail(self.field(key), "must not be empty (leave it out for all columns)")
        return tuple(value)

    def path(self, key: str, *, required: bool = False, must_exist: bool = False) -> Any:
        text = self.text(key, required=required)
        if text is None:
            return None
        path = self.location(key, text)
        try:
            if must_exist and not path.is_file():
                self.fail(self.field(key), f"no such file: {shown(path)}")
            if not must_exist and not path.parent.is_dir():
                self.fail(self.field(key), f"directory does not exist: {shown(path.parent)}")
        except OSError as exc:  # e.g. a name too long for the file system
            self.fail(self.field(key), f"not a usable path: {exc.strerror or exc}")
        return path

    def location(self, key: str, text: str) -> Path:
        """``text`` as an absolute path (``~`` expanded; relative to the job file's folder)."""
        if "\x00" in text:
            self.fail(self.field(key), "not a usable path: it contains a NUL character")
        # os.path.expanduser leaves "~unknown-user" as it is; Path.expanduser raises.
        path = Path(os.path.expanduser(text))
        if not path.is_absolute():
            path = self.file.parent.absolute() / path
        return path

    def table(self, key: str, allowed: tuple[str, ...]) -> Table | None:
        if key not in self.data:
            return None
        return Table(self.data[key], self.field(key), self.file, allowed)
