"""The command line as the report records it: credentials' values replaced by ``***``.

A report may sit on a shared volume; ``--password=...`` in argv must not.
The rule (``docs/report.md``):

* an option whose name contains a credential word (``password``, ``passwd``, ``pwd``,
  ``secret``, ``token``, ``key`` as a word: ``--api-key``, ``--aws_secret_access_key``,
  ``auth``, ``credential(s)``, ``cookie``, ``signature``, ``private``): its value, whether
  written ``--name=value`` or ``--name value``;
* ``NAME=value`` words with such a NAME (``PASSWORD=x`` passed to a tool);
* the password of a URL (``scheme://user:PASSWORD@host``), in any word.

``LEAKAGENT_ARGV=full`` records argv verbatim; ``LEAKAGENT_ARGV=none`` records only the
program (``argv[0]``).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Optional

HIDDEN = "***"
MODES = ("redacted", "full", "none")
_WORDS = (
    "password", "passwd", "pwd", "secret", "token", "auth", "credential", "credentials",
    "cookie", "signature", "private", "key", "apikey", "passphrase", "pass",
)
_WORD_SET = frozenset(_WORDS)
_SUBSTRINGS = ("password", "passwd", "secret", "token", "apikey", "credential", "passphrase")


def is_credential_name(name: str) -> bool:
    """True for ``--api-key``, ``db_password``, ``X-Auth-Token``... (case-insensitive)."""
    lowered = name.lstrip("-").lower()
    if any(part in lowered for part in _SUBSTRINGS):
        return True
    parts = lowered.replace("-", "_").replace(".", "_").split("_")
    return any(part in _WORD_SET for part in parts)


def _without_url_password(word: str) -> str:
    start = word.find("://")
    while start != -1:
        rest = word[start + 3 :]
        end = len(rest)
        for stop in "/?# ":
            found = rest.find(stop)
            if found != -1:
                end = min(end, found)
        authority = rest[:end]
        at = authority.rfind("@")
        if at != -1 and ":" in authority[:at]:
            user = authority[: authority.index(":")]
            authority = f"{user}:{HIDDEN}{authority[at:]}"
            word = word[: start + 3] + authority + rest[end:]
        start = word.find("://", start + 3)
    return word


def redact_argv(argv: Sequence[str], mode: Optional[str] = None) -> list[str]:
    """``argv`` as the report records it (``mode``: one of :data:`MODES`, default from
    ``LEAKAGENT_ARGV``, else ``redacted``)."""
    if mode is None:
        mode = argv_mode(os.environ)
    words = [str(w) for w in argv]
    if mode == "full":
        return words
    if mode == "none":
        return words[:1]
    result: list[str] = []
    hide_next = False
    for index, word in enumerate(words):
        if hide_next and not word.startswith("-"):
            result.append(HIDDEN)
            hide_next = False
            continue
        hide_next = False
        if index and word.startswith("-") and "=" in word:
            name, _, value = word.partition("=")
            if is_credential_name(name) and value:
                result.append(f"{name}={HIDDEN}")
                continue
        elif index and word.startswith("-") and len(word) > 2 and is_credential_name(word):
            hide_next = True
        elif index and "=" in word and not word.startswith("-"):
            name, _, value = word.partition("=")
            if name.isidentifier() and is_credential_name(name) and value:
                result.append(f"{name}={HIDDEN}")
                continue
        result.append(_without_url_password(word))
    return result


def argv_mode(environ: Mapping[str, str]) -> str:
    """``LEAKAGENT_ARGV`` (a malformed value means the safe default, ``redacted``)."""
    value = environ.get("LEAKAGENT_ARGV", "").strip().lower()
    return value if value in MODES else "redacted"
