"""Reading a config file: TOML in, a validated `Config` out, or one error listing every problem.

`load_config(path)` reads the file, applies overrides, validates it against the schema, resolves
its paths and checks every options table against the chosen backend's `Options` (without
constructing a backend or importing its SDK), all before any stage runs. Each problem is one line
naming the key, the bad value and what is allowed (`judge.samples_per_order: got -1; must be >= 1`,
`judge.options.bacth (together option): unknown key; allowed keys: ...`).

Relative paths: input paths (`data.path`, `evaluation.pairs_path`, benchmark paths, template
files, and backend options typed as paths) are resolved against the directory of the config
file; `run.output_dir` against the current working directory (where `ste run` is started), like
any output path on a command line.
"""

from __future__ import annotations

import os
import tomllib
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import ValidationError

from ste_core.config.schema import SECRET_MARK, Config
from ste_core.errors import ConfigurationError
from ste_core.validation import did_you_mean, problems

__all__ = ["config_from_dict", "format_validation_error", "load_config", "pinned_options"]


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> Config:
    """Read, validate and resolve a config file.

    `overrides` maps dotted keys to values (`{"run.iterations": 2}`), applied before validation
    (the CLI's --iterations uses it). Raises ConfigurationError listing every problem.
    """
    path = Path(path).absolute()
    if path.is_dir():
        hint = path / "config.toml"
        raise ConfigurationError(
            f"{path} is a directory; give a config file"
            + (f": this run's is {hint}" if hint.is_file() else " (a .toml file, see `ste init`)")
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return config_from_dict(raw, base_dir=path.resolve().parent, source=str(path))


def config_from_dict(
    data: dict[str, Any], *, base_dir: Path | None = None, source: str = "<config>"
) -> Config:
    """Validate a config given as a dict (tests, notebooks) and resolve its paths.

    Input paths are resolved against `base_dir` (default: the current directory), the output
    directory against the current directory. The backends it names must be registered: their
    options are checked here.
    """
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(format_validation_error(exc, source)) from None
    base = base_dir or Path.cwd()
    cfg = _resolve_paths(cfg, base)
    cfg, lines = _checked_options(cfg, base)
    lines += _template_problems(cfg) + _checker_problems(cfg)
    if lines:
        raise ConfigurationError(f"invalid configuration in {source}:\n" + "\n".join(lines))
    return cfg


def format_validation_error(exc: ValidationError, source: str = "<config>") -> str:
    """One line per problem: `key: got VALUE; what is allowed` (a secret is never echoed)."""

    def conceal(err: Any) -> bool:
        return SECRET_MARK in str((err.get("ctx") or {}).get("error", ""))

    lines = [f"  {key}: {problem}" for key, problem in problems(exc, Config, conceal=conceal)]
    return f"invalid configuration in {source}:\n" + "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The backends' options
# --------------------------------------------------------------------------------------------


def _option_tables(cfg: Config) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(table, backend, kind, values) of every options table (see OPTION_TABLES)."""
    from ste_core.plugins import get_host

    yield "generator.options", cfg.generator.backend, "inference", cfg.generator.options
    yield "judge.options", cfg.judge.backend, "inference", cfg.judge.options
    yield "finetune.options", cfg.finetune.backend, "finetune", cfg.finetune.options
    # A fine-tuned judge is called through the fine-tune backend's own inference when it has one
    # (Together, local serve their fine-tunes themselves), else through the judge's backend.
    info = get_host().backends.get(cfg.finetune.backend)
    serving = cfg.finetune.backend if info and info.inference else cfg.judge.backend
    yield "finetune.inference_options", serving, "inference", cfg.finetune.inference_options


def _checked_options(cfg: Config, base: Path) -> tuple[Config, list[str]]:
    """The config with path options resolved, and a line per problem in its options tables."""
    from ste_core.plugins import get_host

    host = get_host()
    lines: list[str] = []
    resolved: dict[str, dict[str, Any]] = {}
    for table, backend, kind, values in _option_tables(cfg):
        role = table.split(".", 1)[0]
        info = host.backends.get(backend)
        if info is None:
            if table != "finetune.inference_options":  # named once, under its own section
                known = ", ".join(sorted(host.backends)) or "none"
                hint = did_you_mean(backend, host.backends)
                lines.append(
                    f"  {role}.backend: got {backend!r}{hint}; registered backends: {known} "
                    "(`ste backends` lists them; a plugin's backend appears once it is installed)"
                )
            continue
        if kind not in info.kinds:
            lines.append(f"  {role}.backend: backend {backend!r} does not do {kind}")
            continue
        options_cls = info.cls(kind).Options  # type: ignore[arg-type]
        for name in options_cls.secret_names():
            if name in values:
                env = options_cls.secret_env(name, values)
                where = f"the {env} environment variable" if env else "the environment"
                lines.append(
                    f"  {table}.{name}: a secret is never read from the config file; set "
                    f"{where} instead"
                )
        values = _with_resolved_paths(options_cls, values, base)
        resolved[table] = values
        try:
            info.options(kind, values, where=table)  # type: ignore[arg-type]
        except ConfigurationError as exc:
            lines += [f"  {line}" for line in str(exc).splitlines() if line.strip()]
    return _replace_tables(cfg, resolved), list(dict.fromkeys(lines))


def _with_resolved_paths(options_cls: Any, values: dict[str, Any], base: Path) -> dict[str, Any]:
    """`values` with each relative path option made absolute against `base` (the config's
    directory), like every other input path of the file."""
    out = dict(values)
    for name, field in options_cls.model_fields.items():
        value = out.get(name)
        if isinstance(value, str) and _is_path_type(field.annotation):
            out[name] = _resolve(base, value)
    return out


def _is_path_type(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, os.PathLike):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_path_type(a) for a in get_args(annotation))
    # pydantic's FilePath / DirectoryPath are Annotated[Path, ...]
    args = get_args(annotation)
    return bool(args) and isinstance(args[0], type) and issubclass(args[0], os.PathLike)


def _replace_tables(cfg: Config, tables: Mapping[str, dict[str, Any]]) -> Config:
    updates: dict[str, Any] = {}
    for table, values in tables.items():
        role, key = table.split(".", 1)
        section = updates.get(role) or getattr(cfg, role)
        updates[role] = section.model_copy(update={key: values})
    return cfg.model_copy(update=updates)


def pinned_options(cfg: Config) -> dict[str, set[str]]:
    """For each options table, the options that change results (the backends' Options say which):
    only these pin a run; the others (timeouts, polling, serving mode...) may change on resume."""
    from ste_core.plugins import get_host

    host = get_host()
    pinned: dict[str, set[str]] = {}
    for table, backend, kind, _ in _option_tables(cfg):
        info = host.backends.get(backend)
        if info is not None and kind in info.kinds:
            options_cls = info.cls(kind).Options  # type: ignore[arg-type]
            pinned[table] = set(options_cls.result_option_names())
    return pinned


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------

#: (config key, purpose the template must have) of every template a run renders.
_TEMPLATES = (
    ("generator.worse_template", "worse_response"),
    ("judge.template", "judge"),
    ("evaluation.template", "judge"),
    ("filter.template", "classifier"),
    ("generator.solve_template", "solve"),
)


def _template_problems(cfg: Config) -> list[str]:
    """A line per template that does not exist, has no parser, or is not made for its place:
    found while loading, not when the first stage that renders it starts (after others paid)."""
    from ste_core.plugins import get_host
    from ste_prompts import get_parser

    host = get_host()
    lines = []
    for key, purpose in _TEMPLATES:
        section, field = key.split(".")
        name = getattr(getattr(cfg, section), field)
        if name is None or (key == "filter.template" and not cfg.filter.enabled):
            continue
        if key == "generator.solve_template" and not cfg.data.uses_problems:
            continue
        try:
            template = host.template(name)
            get_parser(template.parser)
        except Exception as exc:  # TemplateError / UnknownParserError say what is known
            lines.append(f"  {key}: got {name!r}; {exc}")
            continue
        if template.purpose != purpose:
            lines.append(
                f"  {key}: got {name!r}, a template for {template.purpose!r}; a {purpose!r} "
                "template is needed here (`ste templates` lists them with their purpose)"
            )
    return lines


def _checker_problems(cfg: Config) -> list[str]:
    """A line when the verifiable recipe names an answer checker nobody registered."""
    from ste_core.plugins import get_host

    checkers = get_host().checkers
    if not cfg.data.uses_problems or cfg.data.checker in checkers:
        return []
    return [
        f"  data.checker: got {cfg.data.checker!r}; registered answer checkers: "
        f"{', '.join(sorted(checkers))} (a plugin adds more with the register_answer_checkers "
        "hook)"
    ]


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def _resolve(base: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _is_template_path(name: str) -> bool:
    return "/" in name or name.endswith(".toml")


def _resolve_paths(cfg: Config, base: Path) -> Config:
    problems = cfg.data.problems
    if problems is not None and problems.path:
        problems = problems.model_copy(update={"path": _resolve(base, problems.path)})
    data = cfg.data.model_copy(
        update={
            "path": _resolve(base, cfg.data.path) if cfg.data.path else None,
            "problems": problems,
        }
    )
    ev = cfg.evaluation
    ev = ev.model_copy(
        update={
            "pairs_path": _resolve(base, ev.pairs_path) if ev.pairs_path else None,
            "benchmarks": [
                b.model_copy(update={"path": _resolve(base, b.path)}) for b in ev.benchmarks
            ],
            "template": (
                _resolve(base, ev.template)
                if ev.template and _is_template_path(ev.template)
                else ev.template
            ),
        }
    )

    def tmpl(name: str) -> str:
        return _resolve(base, name) if _is_template_path(name) else name

    return cfg.model_copy(
        update={
            "run": cfg.run.model_copy(
                update={"output_dir": _resolve(Path.cwd(), cfg.run.output_dir)}
            ),
            "data": data,
            "evaluation": ev,
            "judge": cfg.judge.model_copy(update={"template": tmpl(cfg.judge.template)}),
            "generator": cfg.generator.model_copy(
                update={
                    "worse_template": tmpl(cfg.generator.worse_template),
                    "solve_template": tmpl(cfg.generator.solve_template),
                }
            ),
            "filter": cfg.filter.model_copy(update={"template": tmpl(cfg.filter.template)}),
        }
    )
