"""Checks of the OTEL_* values the SDK echoes to stderr when they are malformed (headers,
resource attributes): leakagent names the variable, never its value, which may be a token."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

HEADER_VARIABLES = (
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
)
RESOURCE_VARIABLE = "OTEL_RESOURCE_ATTRIBUTES"
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"  # an HTTP token (RFC 9110)
_HEADER_VALUE = r"^[\t\x20-\x7e\x80-\xff]*$"


def parse_headers(raw: str) -> tuple[dict[str, str], bool]:
    """The well-formed ``name=value`` members (names lower-cased, values URL-decoded), and
    whether any member was malformed.

    ``re`` and ``urllib.parse`` are imported here, only when a header variable is set: at
    module level they cost ~10 ms before the program's first line (``docs/performance.md``)."""
    import re
    from urllib.parse import unquote

    name_ok, value_ok = re.compile(_HEADER_NAME).match, re.compile(_HEADER_VALUE).match
    headers: dict[str, str] = {}
    malformed = False
    for member in raw.split(","):
        if not member.strip():
            continue
        name, sep, value = member.partition("=")
        name, value = unquote(name.strip()), unquote(value.strip())
        if not sep or not name_ok(name) or not value_ok(value):
            malformed = True
            continue
        headers[name.lower()] = value
    return headers, malformed


def resource_attributes_malformed(raw: str) -> bool:
    """Whether any ``key=value`` member of OTEL_RESOURCE_ATTRIBUTES has no ``=`` or no key."""
    for member in raw.split(","):
        if not member.strip():
            continue
        key, sep, _ = member.partition("=")
        if not sep or not key.strip():
            return True
    return False


def headers_for(env: Mapping[str, str], signal: str) -> Optional[dict[str, str]]:
    """The headers to hand to the OTLP exporter of ``signal`` when the variable it would
    read is malformed (its well-formed members only), else None: the SDK reads it."""
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"):
        raw = env.get(name, "")
        if raw.strip():
            headers, malformed = parse_headers(raw)
            return headers if malformed else None
    return None


def problems(env: Mapping[str, str]) -> list[str]:
    """One line per malformed variable, naming it and never quoting its value."""
    found = []
    for name in HEADER_VARIABLES:
        raw = env.get(name, "")
        if raw.strip() and parse_headers(raw)[1]:
            found.append(
                f"{name} is malformed (expected name=value pairs, comma-separated, values "
                "URL-encoded); leakagent sends only its well-formed pairs (the value is not "
                "shown: it may hold a token)"
            )
    raw = env.get(RESOURCE_VARIABLE, "")
    if raw.strip() and resource_attributes_malformed(raw):
        found.append(
            f"{RESOURCE_VARIABLE} is malformed (expected key=value pairs, comma-separated); "
            "leakagent keeps its well-formed pairs (the value is not shown)"
        )
    return found


def sensitive_fragments(env: Mapping[str, str]) -> list[str]:
    """Texts an SDK log record must not carry: every member of the header variables (they
    hold tokens) and every malformed member of the resource attributes."""
    found: list[str] = []
    for name in HEADER_VARIABLES:
        found.extend(m.strip() for m in env.get(name, "").split(",") if len(m.strip()) > 3)
    for member in env.get(RESOURCE_VARIABLE, "").split(","):
        key, sep, _ = member.partition("=")
        if member.strip() and (not sep or not key.strip()):
            found.append(member.strip())
    return found
