"""The run configuration: one TOML file, validated by pydantic.

`load_config(path)` reads and validates a config file; every problem is reported as one line
naming the key, the bad value and what is allowed (`judge.samples_per_order: got -1; must be >= 1`)
inside a single `ConfigurationError`. `Config.model_dump_toml()` writes the resolved config (all
defaults filled in, input paths made absolute) that goes into the run directory.

Secrets never come from the file: a key named like `api_key`, `token`, `secret` or `password`
anywhere in an `options` table is refused with a message pointing at the environment variable.

Relative paths: input paths (`data.path`, `evaluation.pairs_path`, benchmark paths, template
files) are resolved against the directory of the config file; `run.output_dir` against the current
working directory (where `ste run` is started), like any output path on a command line.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ste_core.engine.limits import Limits
from ste_core.errors import ConfigurationError
from ste_core.records import FineTuneMethod, FineTuneSpec, LoRAConfig, SamplingParams, content_hash

__all__ = [
    "BenchmarkFile",
    "BudgetConfig",
    "Config",
    "DataConfig",
    "EvaluationConfig",
    "FilterConfig",
    "FineTuneConfig",
    "GeneratorConfig",
    "JudgeConfig",
    "RunConfig",
    "SamplingConfig",
    "SelectionConfig",
    "dumps_toml",
    "load_config",
]


class _Section(BaseModel):
    # extra="forbid": a misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


class RunConfig(_Section):
    """`[run]`: what the run is called, where it goes, how many iterations, the seed."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=100)
    output_dir: str = "runs"
    iterations: int = Field(4, ge=1, le=100)
    seed: int = 0


class DataConfig(_Section):
    """`[data]`: where the unlabelled instructions come from and how many to use."""

    path: str | None = Field(None, description="JSONL / CSV / Parquet file or load_from_disk dir")
    dataset: str | None = Field(None, description="Hugging Face hub dataset name")
    format: Literal["auto", "jsonl", "csv", "parquet", "disk", "hub"] = "auto"
    split: str = Field("train", description="split of a hub dataset / DatasetDict on disk")
    text_field: str | None = Field(
        None, description="plain text column; default: first of instruction, prompt, text"
    )
    conversation_field: str | None = Field(
        None, description="chat column (list of {role, content}); its first user turn is used"
    )
    limit: int | None = Field(None, ge=1, description="read at most this many rows")
    max_chars: int = Field(8000, ge=1, description="drop longer instructions (after normalising)")
    train_size: int | None = Field(
        None,
        ge=1,
        description="training instructions (the same set every iteration; None: all but eval)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of data.path (a file or directory) or data.dataset")
        if self.text_field and self.conversation_field:
            raise ValueError("give data.text_field or data.conversation_field, not both")
        if self.dataset is not None and self.format not in ("auto", "hub"):
            raise ValueError("data.dataset is a hub dataset name: leave data.format as auto/hub")
        return self


class FilterConfig(_Section):
    """`[filter]`: optional category filter (classifier template; balanced subset)."""

    enabled: bool = False
    categories: list[str] = Field(default_factory=lambda: ["reasoning"], min_length=1)
    category_descriptions: dict[str, str] | None = Field(
        None, description="the full category list shown to the classifier (default: built-in 8)"
    )
    difficulties: list[str] | None = Field(None, description="keep only these difficulties")
    per_category: int | None = Field(None, ge=1, description="cap per kept category")
    balance: bool = Field(True, description="keep equally many of every chosen category")
    template: str = "classify_category"
    model: str | None = Field(None, description="classifier model (default: generator.model)")
    max_tokens: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _categories_known(self) -> FilterConfig:
        if self.category_descriptions is not None:
            unknown = [c for c in self.categories if c not in self.category_descriptions]
            if unknown:
                raise ValueError(
                    f"filter.categories {unknown} are not in filter.category_descriptions"
                )
        return self


class SamplingConfig(_Section):
    """Sampling parameters of one model role (n is set by the stage)."""

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(2048, ge=1)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)

    def to_params(self, n: int = 1) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            n=n,
            seed=self.seed,
            stop=tuple(self.stop),
        )


class _ModelRole(_Section):
    backend: str = Field(min_length=1, description="registered backend name (`ste backends`)")
    model: str = Field(min_length=1)
    options: dict[str, Any] = Field(
        default_factory=dict, description="backend constructor options (no secrets)"
    )
    limits: Limits = Field(default_factory=Limits)

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        _reject_secrets(value)
        return value


class GeneratorConfig(_ModelRole):
    """`[generator]`: the model that writes baseline and worse responses."""

    params: SamplingConfig = Field(default_factory=SamplingConfig)
    worse_template: str = "worse_response"


def _judge_params() -> SamplingConfig:
    # The paper's judgement sampling: temperature 0.7, top_p 0.9, up to 4096 new tokens.
    return SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=4096)


class JudgeConfig(_ModelRole):
    """`[judge]`: the seed judge M0 (the model being improved) and how it annotates."""

    template: str = "judge_eval_plan"
    samples_per_order: int = Field(3, ge=1, le=64)
    orders: Literal["both", "single"] = "both"
    params: SamplingConfig = Field(default_factory=_judge_params)


class SelectionConfig(_Section):
    """`[selection]`: rejection sampling and label balance."""

    agreement_threshold: float = Field(
        0.0, ge=0.0, le=1.0, description="keep a pair only if this fraction of samples is correct"
    )
    balance_labels: bool = True


class FineTuneConfig(_Section):
    """`[finetune]`: how each iteration's judge is trained."""

    backend: str = Field(min_length=1)
    method: FineTuneMethod = FineTuneMethod.SFT
    init_from: Literal["seed", "previous"] = "seed"
    base_model: str | None = Field(None, description="model to fine-tune (default: judge.model)")
    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-5, gt=0)
    batch_size: int | Literal["max"] = 8
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(4096, ge=16)
    dpo_beta: float = Field(0.1, gt=0)
    dpo_pairs_per_prompt: int = Field(1, ge=1, description="num_pairs: DPO pairs per prompt")
    lora: LoRAConfig | Literal[False] = Field(
        default_factory=LoRAConfig, description="LoRA settings, or false for full fine-tuning"
    )
    suffix: str | None = Field(None, max_length=40)
    seed: int | None = Field(None, description="training seed (default: run.seed)")
    options: dict[str, Any] = Field(default_factory=dict, description="backend constructor options")
    job_options: dict[str, Any] = Field(
        default_factory=dict, description="provider knobs passed as FineTuneSpec.options"
    )
    inference_options: dict[str, Any] = Field(
        default_factory=dict,
        description="constructor options of the inference backend that calls a fine-tuned "
        "judge (merged over judge.options when that backend is the judge's own)",
    )
    poll_interval_s: float = Field(30.0, gt=0)
    max_wait_s: float | None = Field(None, gt=0, description="give up polling after this long")
    cancel_on_interrupt: bool = Field(
        False,
        description="Ctrl-C/SIGTERM cancels the running job; by default it keeps running and a "
        "re-run re-attaches to it, so no paid training is lost",
    )

    @field_validator("options", "job_options", "inference_options")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        _reject_secrets(value)
        return value

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError('must be >= 1 or "max"')
        return value


class BenchmarkFile(_Section):
    """One labelled pairs file evaluated alongside the frozen eval pairs.

    Read with `ste_core.evaluation.pairs_io.read_pairs`: RewardBench rows (prompt, chosen,
    rejected, subset), user rows (instruction, chosen, rejected) or ResponsePair JSON; JSONL,
    JSON or Parquet.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    path: str
    limit: int | None = Field(None, ge=1, description="use only the first N pairs")


def _eval_params() -> SamplingConfig:
    return SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=4096)


class EvaluationConfig(_Section):
    """`[evaluation]`: the frozen held-out pairs and how every judge is scored on them."""

    eval_size: int = Field(50, ge=1, description="held-out instructions (ignored with pairs_path)")
    pairs_path: str | None = Field(
        None, description="reuse a previous run's frozen eval_pairs.jsonl"
    )
    orders: Literal["both", "single"] = "both"
    samples_per_order: int = Field(1, ge=1, le=64)
    majority_vote: bool = Field(False, description="score the majority verdict over the samples")
    template: str | None = Field(None, description="judge template (default: judge.template)")
    params: SamplingConfig = Field(default_factory=_eval_params)
    benchmarks: list[BenchmarkFile] = Field(default_factory=list)

    @model_validator(mode="after")
    def _majority_needs_samples(self) -> EvaluationConfig:
        if self.majority_vote and self.samples_per_order < 2:
            raise ValueError("evaluation.majority_vote needs evaluation.samples_per_order >= 2")
        if self.samples_per_order > 1 and self.params.temperature == 0.0:
            raise ValueError(
                "evaluation.samples_per_order > 1 needs evaluation.params.temperature > 0 "
                "(greedy samples are all the same)"
            )
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError("evaluation.benchmarks: names must be unique")
        return self


class BudgetConfig(_Section):
    """`[budget]`: stop cleanly before spending more than this."""

    max_cost_usd: float | None = Field(None, ge=0)
    max_requests: int | None = Field(None, ge=0)
    input_per_million: float | None = Field(
        None, ge=0, description="USD per million prompt tokens, for estimates (if unreported)"
    )
    output_per_million: float | None = Field(None, ge=0)
    expected_completion_tokens: int | None = Field(
        None,
        ge=1,
        description="tokens per answer for estimates (default: max_tokens, an upper bound)",
    )


# --------------------------------------------------------------------------------------------
# The whole file
# --------------------------------------------------------------------------------------------

#: Keys whose change does not change any result: allowed when resuming a run.
_RESUMABLE_KEYS = (
    "run.iterations",
    "run.output_dir",
    "budget.",
    "generator.limits.",
    "judge.limits.",
    "finetune.poll_interval_s",
    "finetune.max_wait_s",
    "finetune.cancel_on_interrupt",
)


class Config(_Section):
    """A whole run configuration (the TOML file's top-level tables)."""

    run: RunConfig
    data: DataConfig
    generator: GeneratorConfig
    judge: JudgeConfig
    finetune: FineTuneConfig
    filter: FilterConfig = Field(default_factory=FilterConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

    # -- derived values ------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        """`<output_dir>/<name>` (absolute once loaded through `load_config`)."""
        return Path(self.run.output_dir) / self.run.name

    @property
    def eval_template(self) -> str:
        return self.evaluation.template or self.judge.template

    @property
    def finetune_base_model(self) -> str:
        return self.finetune.base_model or self.judge.model

    def finetune_spec(self, iteration: int, from_model: str | None) -> FineTuneSpec:
        """The provider-neutral job spec of `iteration` (from_model for init_from=previous)."""
        ft = self.finetune
        suffix = ft.suffix or f"ste-{self.run.name}-it{iteration}"
        return FineTuneSpec(
            base_model=self.finetune_base_model,
            method=ft.method,
            from_model=from_model,
            lora=None if ft.lora is False else ft.lora,
            epochs=ft.epochs,
            learning_rate=ft.learning_rate,
            batch_size=ft.batch_size,
            gradient_accumulation_steps=ft.gradient_accumulation_steps,
            max_length=ft.max_length,
            dpo_beta=ft.dpo_beta,
            suffix=suffix[:40],
            seed=self.run.seed if ft.seed is None else ft.seed,
            options=dict(ft.job_options),
        )

    # -- serialisation ---------------------------------------------------------------------

    def model_dump_toml(self) -> str:
        """The resolved configuration as TOML text (defaults filled in; no secrets, ever)."""
        data = self.model_dump(mode="json", exclude_none=True)
        header = "# Resolved ste configuration (all defaults filled in). Secrets come from the\n"
        header += "# environment and are never written here.\n\n"
        return header + dumps_toml(data)

    def fingerprint(self) -> str:
        """A hash of everything that changes results (not iterations, budget or limits)."""
        return content_hash(self.result_settings())

    def result_settings(self) -> dict[str, Any]:
        """Flattened `key -> value` of the settings that change results."""
        flat = _flatten(self.model_dump(mode="json"))
        return {k: v for k, v in flat.items() if not k.startswith(_RESUMABLE_KEYS)}

    def changed_settings(self, previous: dict[str, Any]) -> list[str]:
        """Keys whose value differs from `previous` (a `result_settings()` of an earlier run)."""
        now = self.result_settings()
        return sorted(k for k in set(now) | set(previous) if now.get(k) != previous.get(k))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        if not data and prefix:
            out[prefix[:-1]] = {}
        return out
    return {prefix[:-1]: data}


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------

# A key segment that names a credential. `max_tokens` is fine (the segment is "tokens"); names
# ending in `_env` (the *name* of an environment variable) are fine too.
_SECRET_SEGMENT = re.compile(
    r"(^|[_\-.])(api[_\-]?key|apikey|token|access[_\-]?token|secret|client[_\-]?secret|"
    r"password|passwd|credentials?|authorization|bearer)($|[_\-.])",
    re.IGNORECASE,
)
_SECRET_WHOLE = {"key", "auth"}
_SECRET_MARK = "looks like a secret"


def _reject_secrets(options: dict[str, Any], prefix: str = "") -> None:
    for key, value in options.items():
        name = f"{prefix}{key}"
        lowered = str(key).lower()
        if not lowered.endswith("_env") and (
            lowered in _SECRET_WHOLE or _SECRET_SEGMENT.search(lowered)
        ):
            raise ValueError(
                f"'{name}' {_SECRET_MARK}; secrets are never read from the config file. "
                "Set the provider's environment variable instead (e.g. TOGETHER_API_KEY, "
                "OPENAI_API_KEY), or name the variable with an option ending in _env if the "
                "backend supports one"
            )
        if isinstance(value, dict):
            _reject_secrets(value, prefix=f"{name}.")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> Config:
    """Read, validate and resolve a config file.

    `overrides` maps dotted keys to values (`{"run.iterations": 2}`), applied before validation
    (the CLI's --iterations uses it). Raises ConfigurationError listing every problem.
    """
    path = Path(path)
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
    directory against the current directory.
    """
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(format_validation_error(exc, source)) from None
    return _resolve_paths(cfg, base_dir or Path.cwd())


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
    data = cfg.data.model_copy(
        update={"path": _resolve(base, cfg.data.path) if cfg.data.path else None}
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
                update={"worse_template": tmpl(cfg.generator.worse_template)}
            ),
            "filter": cfg.filter.model_copy(update={"template": tmpl(cfg.filter.template)}),
        }
    )


# --------------------------------------------------------------------------------------------
# Error messages
# --------------------------------------------------------------------------------------------


def format_validation_error(exc: ValidationError, source: str = "<config>") -> str:
    """One line per problem: `key: got VALUE; what is allowed`."""
    errors = [
        (err, [str(p) for p in err["loc"] if not _is_union_tag(p)])
        for err in exc.errors(include_url=False)
    ]
    # With a union (`lora = {table} | false`) pydantic reports every member; a deeper error
    # under the same key is the informative one, so drop errors at a strict prefix of another.
    locs = [tuple(loc) for _, loc in errors]
    lines = []
    for err, loc in errors:
        if any(len(o) > len(loc) and o[: len(loc)] == tuple(loc) for o in locs):
            continue
        key = ".".join(loc) if loc else "(top level)"
        lines.append(f"  {key}: {_describe(err, loc)}")
    # pydantic reports each union member's failure; keep each line once, in order.
    unique = list(dict.fromkeys(lines))
    return f"invalid configuration in {source}:\n" + "\n".join(unique)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member into the location: ("finetune", "lora", "LoRAConfig", "r").
    return isinstance(part, str) and (
        part[:1].isupper() or part.startswith(("literal[", "function-", "int", "str", "float"))
    )


def _got(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(err: Any, loc: list[str]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f"got {_got(value)}; "
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{hint}"
    if kind == "greater_than_equal":
        return got + f"must be >= {ctx['ge']}"
    if kind == "greater_than":
        return got + f"must be > {ctx['gt']}"
    if kind == "less_than_equal":
        return got + f"must be <= {ctx['le']}"
    if kind == "less_than":
        return got + f"must be < {ctx['lt']}"
    if kind in ("literal_error", "enum"):
        return got + f"must be one of {ctx.get('expected', '')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return got + "must be an integer"
    if kind in ("float_parsing", "float_type"):
        return got + "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return got + "must be true or false"
    if kind in ("string_type",):
        return got + "must be a string"
    if kind == "string_pattern_mismatch":
        return got + "may use only letters, digits, '_', '.', '-' (starting with a letter/digit)"
    if kind in ("too_short", "string_too_short"):
        return got + "must not be empty"
    if kind in ("too_long", "string_too_long"):
        return got + f"is too long (at most {ctx.get('max_length')})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return got + "must be a table"
    if kind == "list_type":
        return got + "must be a list"
    if kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
        if _SECRET_MARK in message:  # never echo a secret back
            return message
        return (got if loc else "") + message
    return got + err["msg"]


def _allowed_keys(loc: list[str]) -> list[str]:
    model: Any = Config
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_of(field.annotation)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


# --------------------------------------------------------------------------------------------
# A tiny TOML writer (enough for configs: tables, arrays of tables, inline arrays, scalars)
# --------------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _string(k)


def _string(s: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes (\" \\ \n \t \uXXXX ...).
    return json.dumps(s, ensure_ascii=False)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_scalar(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = ", ".join(f"{_key(k)} = {_scalar(x)}" for k, x in v.items() if x is not None)
        return "{" + items + "}" if items else "{}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps_toml(data: dict[str, Any]) -> str:
    """Serialise a dict (from `model_dump(mode="json")`) to TOML; None values are left out."""
    out: list[str] = []
    _write_table(out, data, [])
    return "\n".join(out).strip() + "\n"


def _write_table(out: list[str], table: dict[str, Any], path: list[str]) -> None:
    scalars = {
        k: v
        for k, v in table.items()
        if v is not None and not isinstance(v, dict) and not _is_table_array(v)
    }
    for k, v in scalars.items():
        out.append(f"{_key(k)} = {_scalar(v)}")
    for k, v in table.items():
        if isinstance(v, dict):
            name = ".".join(_key(p) for p in [*path, k])
            out.append("")
            out.append(f"[{name}]")
            _write_table(out, v, [*path, k])
        elif _is_table_array(v):
            name = ".".join(_key(p) for p in [*path, k])
            for item in v:
                out.append("")
                out.append(f"[[{name}]]")
                _write_table(out, item, [*path, k])
