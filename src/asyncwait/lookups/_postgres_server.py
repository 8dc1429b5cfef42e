"""What a postgres lookup table knows of its server before the first query.

Where the DSN points, for names and messages, without its password (:func:`target`); which
driver errors mean the connection failed rather than the statement
(:func:`connection_errors`); and what ``pg_catalog`` says of the relation to read: its
schema and its columns' types (:func:`find_relation`, :func:`column_types`), or, when
there is none, the relations there are (:func:`list_relations`).
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final
from urllib.parse import unquote, urlsplit

from ._secrets import Secrets

if TYPE_CHECKING:
    import asyncpg

__all__ = (
    "Target",
    "column_types",
    "connection_errors",
    "find_relation",
    "list_relations",
    "target",
)

# Relation kinds a lookup may read: tables, views, materialized views, partitioned and
# foreign tables.
_RELKINDS = "'r', 'v', 'm', 'p', 'f'"


@final
@dataclass(frozen=True, slots=True)
class Target:
    """Where the DSN points, for names and messages: everything but the password."""

    user: str
    host: str
    port: str
    database: str
    secrets: Secrets  # the DSN's and $PGPASSWORD, masked wherever a message could carry them

    @property
    def address(self) -> str:
        """``host:port``: what messages name."""
        return f"{self.host}:{self.port}"

    def scrub(self, text: str) -> str:
        """``text`` with the secrets masked."""
        return self.secrets.scrub(text)


def target(dsn: str) -> Target:
    """Parse ``dsn`` (or the ``PG*`` environment when it is empty) without keeping secrets."""
    env = os.environ
    secrets = Secrets(env.get("PGPASSWORD"))
    user = host = port = database = ""
    if dsn:
        parts = urlsplit(dsn)
        secrets = Secrets.in_url(parts, env.get("PGPASSWORD"))
        netloc = parts.netloc
        if "@" in netloc:
            auth, _, netloc = netloc.rpartition("@")
            user = unquote(auth.partition(":")[0])
        if netloc.startswith("[") and "]" in netloc:  # an IPv6 literal
            host, _, rest = netloc[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = netloc.partition(":")
        database = unquote(parts.path.lstrip("/"))
        for item in parts.query.split("&"):
            name, _, value = item.partition("=")
            if name == "host" and not host:
                host = unquote(value)
            elif name == "port" and not port:
                port = value
            elif name == "user" and not user:
                user = unquote(value)
            elif name in ("dbname", "database") and not database:
                database = unquote(value)
    user = user or env.get("PGUSER") or getpass.getuser()
    host = host or env.get("PGHOST") or "localhost"
    port = port or env.get("PGPORT") or "5432"
    database = database or env.get("PGDATABASE") or user
    return Target(user, host, port, database, secrets)


def connection_errors(exceptions: Any) -> tuple[type[BaseException], ...]:
    """The errors of asyncpg's ``exceptions`` module that mean the connection failed."""
    return (
        OSError,  # refused, reset, unreachable, connect timeout
        exceptions.PostgresConnectionError,  # lost in the middle of a statement
        exceptions.CannotConnectNowError,  # starting up or shutting down
        exceptions.AdminShutdownError,
        exceptions.CrashShutdownError,
    )


async def find_relation(
    conn: asyncpg.Connection, table: str, schema: str | None
) -> tuple[str, int] | None:
    """The schema and oid of ``table`` in ``schema`` (default: first on the search path)."""
    found = await conn.fetchrow(
        "SELECT n.nspname, c.oid FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relname = $1 AND c.relkind IN ({_RELKINDS}) AND ("
        "  n.nspname = $2 OR ($2 IS NULL AND n.nspname = ANY(current_schemas(false)))) "
        "ORDER BY array_position(current_schemas(false), n.nspname) LIMIT 1",
        table,
        schema,
    )
    return None if found is None else (str(found[0]), found[1])


async def list_relations(conn: asyncpg.Connection, *, qualify: bool) -> list[str]:
    """The relations a lookup could read, qualified by schema if ``qualify`` or off the path."""
    tables = await conn.fetch(
        "SELECT n.nspname, c.relname, n.nspname = ANY(current_schemas(false)) AS visible "
        "FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind IN ({_RELKINDS}) "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2"
    )
    return [
        r["relname"] if r["visible"] and not qualify else f"{r['nspname']}.{r['relname']}"
        for r in tables
    ]


async def column_types(conn: asyncpg.Connection, oid: int) -> dict[str, str]:
    """The columns of relation ``oid`` in order, each with its type as the server spells it."""
    attributes = await conn.fetch(
        "SELECT attname, pg_catalog.format_type(atttypid, NULL) AS type "
        "FROM pg_catalog.pg_attribute "
        "WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        oid,
    )
    return {str(r["attname"]): str(r["type"]) for r in attributes}
