"""Prompt templates: TOML files with metadata, rendered by one safe substitution pass.

Placeholder syntax (in the `system` and `user` texts of a template file):

* ``{name}`` -- replaced by the value of variable ``name`` (an identifier: letters, digits,
  underscore, not starting with a digit).
* ``{{name}}`` -- the literal text ``{name}`` (the escape, for a template that must show the
  placeholder syntax itself).
* Any other brace, dollar sign or bracket is plain text: ``{"a": 1}``, ``{ x }``, ``{1}``,
  ``$x``, ``{% if %}``, ``[[A]]`` are all copied unchanged. (In ``${x}`` the ``{x}`` part is
  still a placeholder: the dollar sign has no meaning of its own.)

Substitution is a single left-to-right pass (`re.sub` with a function): a substituted value is
never scanned again, so user content can contain anything, the placeholder syntax included.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ste_prompts.verdicts import DEFAULT_VERDICT_RULE, VERDICT_RULES

__all__ = [
    "BUILTIN_SOURCE",
    "KNOWN_PURPOSES",
    "Template",
    "TemplateError",
    "builtin_templates",
    "get_template",
    "load_template",
    "loads_template",
    "placeholders",
]

BUILTIN_SOURCE = "<builtin>"
KNOWN_PURPOSES = ("worse_response", "judge", "judge_ranking", "judge_rating", "classifier", "solve")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# Alternation order matters: the escape `{{name}}` is tried before `{name}` at each position.
_TOKEN = re.compile(r"\{\{(" + _IDENT + r")\}\}|\{(" + _IDENT + r")\}")
_IDENT_RE = re.compile(_IDENT)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")

_REQUIRED_KEYS = ("name", "purpose", "version", "description", "variables", "parser", "user")
_OPTIONAL_KEYS = ("system", "defaults", "metadata", "verdict_rule")
_ALLOWED_KEYS = frozenset(_REQUIRED_KEYS + _OPTIONAL_KEYS)


class TemplateError(ValueError):
    """A template file is invalid, a template name is unknown, or render() got bad variables."""


def placeholders(text: str) -> list[str]:
    """The variable names that `text` substitutes, in order of appearance (with repeats)."""
    return [m.group(2) for m in _TOKEN.finditer(text) if m.group(2) is not None]


def _substitute(text: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped, name = match.group(1), match.group(2)
        if escaped is not None:
            return "{" + escaped + "}"
        return values[name]

    return _TOKEN.sub(replace, text)


@dataclass(frozen=True)
class Template:
    """A prompt template: metadata plus a system text (optional) and a user text.

    `variables` are required at render time; `defaults` maps optional variable names to the
    value used when render() is not given them. `metadata` is free-form (source, licence, ...).
    `verdict_rule` names the rule (`ste_prompts.verdicts.VERDICT_RULES`) that reads a verdict
    from this template's outputs: only for `parser = "verdict"`, where it defaults to "final".
    Construction validates everything; an invalid template raises TemplateError naming `source`.
    """

    name: str
    purpose: str
    version: int
    description: str
    variables: tuple[str, ...]
    parser: str
    system: str | None
    user: str
    source: str = BUILTIN_SOURCE
    defaults: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    verdict_rule: str | None = None

    def __post_init__(self) -> None:
        # Normalise containers so the frozen object really is immutable.
        if isinstance(self.variables, str) or not isinstance(self.variables, list | tuple):
            raise TemplateError(
                f"{self.source}: 'variables' must be a list of names, got {self.variables!r}"
            )
        object.__setattr__(self, "variables", tuple(self.variables))
        if not isinstance(self.defaults, Mapping):
            raise TemplateError(f"{self.source}: 'defaults' must be a table of name = text")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        if not isinstance(self.metadata, Mapping):
            raise TemplateError(f"{self.source}: 'metadata' must be a table")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        if self.parser == "verdict" and self.verdict_rule is None:
            object.__setattr__(self, "verdict_rule", DEFAULT_VERDICT_RULE)
        _validate(self)

    def __hash__(self) -> int:  # defaults/metadata are mappings; hash a consistent subset
        return hash((self.name, self.version, self.system, self.user))

    @property
    def optional_variables(self) -> tuple[str, ...]:
        return tuple(self.defaults)

    @property
    def all_variables(self) -> tuple[str, ...]:
        return self.variables + tuple(self.defaults)

    def render(self, /, **values: str) -> list[dict[str, str]]:
        """Chat messages with the values substituted: an optional system message, then the user
        message. Every required variable must be given, no unknown one may be, and every value
        must be a str (None or numbers are refused rather than silently printed)."""
        missing = [v for v in self.variables if v not in values]
        unexpected = sorted(k for k in values if k not in self.variables and k not in self.defaults)
        problems = []
        if missing:
            problems.append("missing variable(s): " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected variable(s): " + ", ".join(unexpected))
        if problems:
            raise TemplateError(
                f"template '{self.name}': {'; '.join(problems)} "
                f"(it takes: {', '.join(self.all_variables)})"
            )
        not_str = sorted(k for k, v in values.items() if not isinstance(v, str))
        if not_str:
            raise TemplateError(
                f"template '{self.name}': variable(s) {', '.join(not_str)} must be str, got "
                + ", ".join(type(values[k]).__name__ for k in not_str)
            )
        merged = {**self.defaults, **values}
        messages: list[dict[str, str]] = []
        if self.system is not None:
            messages.append({"role": "system", "content": _substitute(self.system, merged)})
        messages.append({"role": "user", "content": _substitute(self.user, merged)})
        return messages

    def parse_output(self, text: str, *, truncated: bool = False) -> Any:
        """The template's parser applied to a model's `text`, with the template's verdict rule
        (passed as `rule=`) when it has one. `truncated`: the output was cut off at max_tokens."""
        from ste_prompts.parsers import get_parser  # late: parsers may be registered after import

        parse = get_parser(self.parser)
        if self.verdict_rule is None:
            return parse(text)
        return parse(text, rule=self.verdict_rule, truncated=truncated)

    def fingerprint(self) -> str:
        """A stable sha256 hex digest of what determines the rendered prompt: name, version,
        texts and default values. Description, parser, source and metadata are left out, so
        editing documentation or moving the file does not invalidate caches. The verdict rule is
        left out too: it reads outputs, it does not change the prompt (a run records its
        verdicts when judging, and its config pins the template by name)."""
        payload = {
            "name": self.name,
            "version": self.version,
            "system": self.system,
            "user": self.user,
            "defaults": dict(sorted(self.defaults.items())),
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _validate(t: Template) -> None:
    where = t.source

    def fail(message: str) -> TemplateError:
        return TemplateError(f"{where}: {message}")

    for key in ("name", "purpose", "parser", "description", "user"):
        value = getattr(t, key)
        if not isinstance(value, str):
            raise fail(f"'{key}' must be a string, got {type(value).__name__}")
        if key != "description" and not value.strip():
            raise fail(f"'{key}' must not be empty")
    if not _NAME_RE.fullmatch(t.name):
        raise fail(
            f"'name' {t.name!r} must start with a letter or digit and use only letters, "
            "digits, '_', '.', '-'"
        )
    if isinstance(t.version, bool) or not isinstance(t.version, int) or t.version < 1:
        raise fail(f"'version' must be an integer >= 1, got {t.version!r}")
    if t.system is not None and (not isinstance(t.system, str) or not t.system.strip()):
        raise fail("'system' must be a non-empty string (leave the key out for no system message)")

    names = list(t.variables) + list(t.defaults)
    for v in names:
        if not isinstance(v, str) or not _IDENT_RE.fullmatch(v):
            raise fail(f"variable name {v!r} is not an identifier (letters, digits, '_')")
    dupes = sorted({v for v in t.variables if t.variables.count(v) > 1})
    if dupes:
        raise fail(f"'variables' lists {', '.join(dupes)} more than once")
    both = sorted(set(t.variables) & set(t.defaults))
    if both:
        raise fail(f"{', '.join(both)} is both required ('variables') and optional ('defaults')")
    bad_defaults = sorted(k for k, v in t.defaults.items() if not isinstance(v, str))
    if bad_defaults:
        raise fail(f"default value(s) of {', '.join(bad_defaults)} must be strings")

    used = placeholders(t.user) + (placeholders(t.system) if t.system else [])
    undeclared = sorted(set(used) - set(names))
    if undeclared:
        raise fail(
            "placeholder(s) "
            + ", ".join("{" + u + "}" for u in undeclared)
            + " not declared in 'variables' or 'defaults' "
            + "(write {{name}} for a literal {name})"
        )
    unused = [v for v in names if v not in used]
    if unused:
        raise fail(f"declared variable(s) {', '.join(unused)} never used in 'system' or 'user'")

    from ste_prompts.parsers import PARSERS  # late: parsers may be registered after import

    if t.parser not in PARSERS:
        raise fail(
            f"'parser' {t.parser!r} is not a registered parser "
            f"(known: {', '.join(sorted(PARSERS))}; see ste_prompts.register_parser)"
        )
    if t.verdict_rule is not None:
        if t.parser != "verdict":
            raise fail(
                f"'verdict_rule' applies to parser = \"verdict\" only; this template's parser "
                f"is {t.parser!r} (remove the key)"
            )
        if not isinstance(t.verdict_rule, str) or t.verdict_rule not in VERDICT_RULES:
            raise fail(
                f"'verdict_rule' {t.verdict_rule!r} is not a verdict rule "
                f"(known: {', '.join(sorted(VERDICT_RULES))})"
            )


def _from_mapping(data: Mapping[str, Any], source: str, label: str) -> Template:
    unknown = sorted(set(data) - _ALLOWED_KEYS)
    if unknown:
        raise TemplateError(
            f"{label}: unknown key(s) {', '.join(repr(k) for k in unknown)} "
            f"(allowed: {', '.join(sorted(_ALLOWED_KEYS))})"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise TemplateError(
            f"{label}: missing required key(s) {', '.join(repr(k) for k in missing)}"
        )
    try:
        return Template(
            name=data["name"],
            purpose=data["purpose"],
            version=data["version"],
            description=data["description"],
            variables=data["variables"],
            parser=data["parser"],
            system=data.get("system"),
            user=data["user"],
            source=source,
            defaults=data.get("defaults", {}),
            metadata=data.get("metadata", {}),
            verdict_rule=data.get("verdict_rule"),
        )
    except TemplateError as exc:
        if label != source:  # builtins: name the shipped file, not just "<builtin>"
            raise TemplateError(str(exc).replace(source, label, 1)) from None
        raise


def loads_template(text: str, *, source: str = "<string>") -> Template:
    """Parse a template from TOML text (`source` names it in errors and in Template.source)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{source}: invalid TOML: {exc}") from None
    return _from_mapping(data, source, source)


def load_template(path: str | os.PathLike[str]) -> Template:
    """Load and validate a template file; errors name the file and the bad or missing key."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise TemplateError(f"template file not found: {p}") from None
    except OSError as exc:
        raise TemplateError(f"cannot read template file {p}: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{p}: not valid UTF-8: {exc}") from None
    return loads_template(text, source=str(p))


@cache
def _builtins() -> tuple[Template, ...]:
    folder = resources.files("ste_prompts").joinpath("templates")
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        label = f"{BUILTIN_SOURCE} templates/{entry.name}"
        try:
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"{label}: invalid TOML: {exc}") from None
        found.append(_from_mapping(data, BUILTIN_SOURCE, label))
    return tuple(found)


def builtin_templates() -> dict[str, Template]:
    """The templates shipped with ste_prompts, by name (a fresh dict each call)."""
    return {t.name: t for t in _builtins()}


def _looks_like_path(s: str) -> bool:
    return "/" in s or os.sep in s or s.endswith(".toml") or Path(s).is_file()


def get_template(
    name_or_path: str | os.PathLike[str],
    *,
    templates: Mapping[str, Template] | None = None,
) -> Template:
    """A template by name (from `templates`, default the built-ins) or by file path.

    A name that is known wins over a file of the same name in the working directory. An unknown
    name raises TemplateError listing the available names.
    """
    known = builtin_templates() if templates is None else templates
    if isinstance(name_or_path, os.PathLike):
        return load_template(name_or_path)
    if not isinstance(name_or_path, str):
        raise TemplateError(f"expected a template name or path, got {type(name_or_path).__name__}")
    if name_or_path in known:
        return known[name_or_path]
    if _looks_like_path(name_or_path):
        return load_template(name_or_path)
    close = difflib.get_close_matches(name_or_path, list(known), n=1, cutoff=0.75)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    raise TemplateError(
        f"unknown template {name_or_path!r}{hint}; available: "
        f"{', '.join(sorted(known)) or 'none'} (or give the path of a .toml template file)"
    )
