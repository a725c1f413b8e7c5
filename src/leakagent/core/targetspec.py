"""Target specs as text: ``module:attribute`` entries of ``LEAKAGENT_TARGETS`` and ``--target``.

Pure parsing, so that the configuration (core) can validate the entries without importing the
hooks layer that patches them (:mod:`leakagent.hooks.usertargets`).
"""

from __future__ import annotations

TARGETS_ENV = "LEAKAGENT_TARGETS"
DISABLED_ENV = "LEAKAGENT_DISABLED_TARGETS"
SPEC_FORM = "module:attribute, e.g. mypkg.clients:ApiClient or mypkg.factory:make_client"


class Spec:
    """One parsed ``module:attribute``."""

    __slots__ = ("attribute", "module")

    def __init__(self, module: str, attribute: str) -> None:
        self.module = module
        self.attribute = attribute

    @property
    def text(self) -> str:
        """The normalised spec, also the target's name."""
        return f"{self.module}:{self.attribute}"

    def __repr__(self) -> str:
        return f"Spec({self.text!r})"


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def parse_spec(text: str) -> Spec:
    """Parse ``module:attribute``; ValueError with the reason when malformed."""
    if not isinstance(text, str):
        raise ValueError(f"a target is a string ({SPEC_FORM}), not {type(text).__name__}")
    module, colon, attribute = text.strip().partition(":")
    module, attribute = module.strip(), attribute.strip()
    if not colon:
        raise ValueError(f"{text!r} has no ':' ({SPEC_FORM})")
    if not _dotted(module):
        raise ValueError(f"{text!r}: {module!r} is not a module name ({SPEC_FORM})")
    if not _dotted(attribute):
        raise ValueError(f"{text!r}: {attribute!r} is not an attribute name ({SPEC_FORM})")
    return Spec(module, attribute)


def parse_specs(value: str, source: str = TARGETS_ENV) -> tuple[list[Spec], list[str]]:
    """The valid specs of a comma-separated list, and one problem line per malformed entry."""
    specs: list[Spec] = []
    problems: list[str] = []
    seen: set[str] = set()
    for entry in value.split(","):
        if not entry.strip():
            continue
        try:
            spec = parse_spec(entry)
        except ValueError as exc:
            problems.append(f"{source}: entry {entry.strip()!r} ignored: {exc}")
            continue
        if spec.text not in seen:
            seen.add(spec.text)
            specs.append(spec)
    return specs, problems


def split_names(value: str) -> tuple[str, ...]:
    """The names of a comma-separated list (``LEAKAGENT_DISABLED_TARGETS``), blanks dropped."""
    return tuple(n.strip() for n in value.split(",") if n.strip())
