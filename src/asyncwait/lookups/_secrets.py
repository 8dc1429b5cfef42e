"""The secrets of a connection (passwords, tokens), masked in everything a table shows.

A driver may echo what it was given in an error message: a DSN, a URL, the password itself.
Every connector that puts driver text into a message, a name or a ``repr`` first passes it
through :meth:`Secrets.scrub`, which masks each secret in every spelling a message could use.

>>> secrets = Secrets("p%40ss")
>>> secrets.scrub("login p@ss (p%40ss) refused")
'login *** (***) refused'
>>> secrets
<Secrets: 2 spellings>
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from urllib.parse import SplitResult

__all__ = ("MASK", "Secrets")

MASK: Final = "***"
"""What a secret becomes in a message."""


@final
class Secrets:
    """The secrets of one connection, masked by :meth:`scrub`.

    Each secret is masked as given, URL-decoded and URL-encoded, since a driver may show
    either; the longest spelling goes first, so a secret that contains another is masked
    whole. The ``repr`` never shows a secret. Empty and ``None`` secrets are ignored.

    Args:
        *secrets: the secrets, each as it was written (in a URL: still URL-encoded).
    """

    __slots__ = ("_spellings",)

    def __init__(self, *secrets: str | None) -> None:
        spellings: set[str] = set()
        for secret in secrets:
            if secret:
                plain = unquote(secret)
                spellings.update((secret, plain, quote(plain, safe="")))
        spellings.discard("")
        self._spellings = tuple(sorted(spellings, key=len, reverse=True))

    @classmethod
    def in_url(cls, parts: SplitResult, *more: str | None) -> Secrets:
        """The secrets of a URL: its user info's password and ``password`` query values.

        Args:
            parts: the split URL.
            *more: secrets from elsewhere, e.g. a password from the environment.

        >>> from urllib.parse import urlsplit
        >>> Secrets.in_url(urlsplit("redis://:pw@host/0?password=other")).scrub("pw other")
        '*** ***'
        """
        found = [parts.password]  # as written: urllib does not decode it
        for item in parts.query.split("&"):
            name, _, value = item.partition("=")
            if name == "password":
                found.append(value)
        return cls(*found, *more)

    def scrub(self, text: str) -> str:
        """Return ``text`` with every spelling of every secret replaced by ``***``."""
        for spelling in self._spellings:
            text = text.replace(spelling, MASK)
        return text

    def __repr__(self) -> str:
        return f"<Secrets: {len(self._spellings)} spellings>"
