"""The form of each store's connection string, checked when the job file is read (private).

Only the form: the scheme a connector accepts, and for PostgreSQL the URL form its driver
takes. Whether the server answers is found when the job runs. Messages never repeat the
string: it may hold a password. The connectors check the rest of the string (hosts,
ports, options) when they are built; ``validate`` builds them too, so it and ``run``
accept the same job files.

>>> dsn_problem("postgres", "postgress://app@db/shop")
"the scheme 'postgress://' is not one of postgresql://, postgres://; did you mean 'postgres://'?"
>>> dsn_problem("postgres", "host=db dbname=shop") is not None
True
>>> dsn_problem("redis", "redis://127.0.0.1:6379/0") is None
True
"""

from __future__ import annotations

import difflib
import re
from typing import Final

__all__ = ("SCHEMES", "dsn_problem")

SCHEMES: Final[dict[str, tuple[str, ...]]] = {
    "postgres": ("postgresql", "postgres"),
    "mysql": ("mysql", "mariadb"),
    "redis": ("redis", "rediss", "unix"),
    "http": ("http", "https"),
}
"""The URL schemes each lookup type accepts in its ``dsn`` or ``url``."""

_EXAMPLES: Final = {
    "postgres": "postgresql://user:password@host:5432/dbname",
    "mysql": "mysql://user:password@host:3306/dbname",
    "redis": "redis://host:6379/0",
    "http": "https://host/users/{key}",
}
# A libpq keyword DSN: "host=db dbname=shop user=app".
_KEYWORDS: Final = re.compile(r"^\s*[A-Za-z_]+\s*=")


def dsn_problem(type_: str, value: str) -> str | None:
    """What is wrong with the form of lookup type ``type_``'s ``dsn``/``url``, or ``None``."""
    schemes = SCHEMES.get(type_)
    if schemes is None:
        return None
    accepted = ", ".join(f"{s}://" for s in schemes)
    scheme, sep, _ = value.partition("://")
    if not sep:
        if type_ == "postgres" and _KEYWORDS.match(value):
            return (
                "a libpq keyword DSN (host=... dbname=...) is not supported (the driver, "
                f"asyncpg, takes URLs); write it as a URL: {_EXAMPLES[type_]}"
            )
        return f"not a URL; expected one starting with {accepted} such as {_EXAMPLES[type_]}"
    if scheme in schemes:
        return None
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return f"not a URL; expected one starting with {accepted} such as {_EXAMPLES[type_]}"
    close = difflib.get_close_matches(scheme.lower(), schemes, n=1)
    hint = f"; did you mean '{close[0]}://'?" if close else ""
    return f"the scheme '{scheme}://' is not one of {accepted}{hint}"
