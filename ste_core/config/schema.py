"""The run configuration's schema: one pydantic model per TOML table, and `Config`.

Loading a file, resolving its paths, checking the backends' options and the error messages are
in `ste_core.config.loading`; the TOML writer in `ste_core.config.toml`.

Secrets never come from the file: a key named like `api_key`, `token`, `secret` or `password`
anywhere in an `options` table is refused with a message pointing at the environment variable
(and the loader refuses every option a backend declares secret).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ste_core.config.toml import dumps_toml
from ste_core.engine.limits import Limits
from ste_core.records import (
    DPOSpec,
    FineTuneMethod,
    FineTuneSpec,
    GRPOSpec,
    LoRAConfig,
    SamplingParams,
    content_hash,
)

__all__ = [
    "OPTION_TABLES",
    "RECIPES",
    "SECRET_MARK",
    "BenchmarkFile",
    "BudgetConfig",
    "Config",
    "DataConfig",
    "EvaluationConfig",
    "FilterConfig",
    "FineTuneConfig",
    "GeneratorConfig",
    "JudgeConfig",
    "ProblemsSource",
    "RunConfig",
    "SamplingConfig",
    "SelectionConfig",
]

#: The tables whose keys belong to a backend: its `Options` validate them and say which change
#: results (`ste_core.config.loading.pinned_options`).
OPTION_TABLES = (
    "generator.options",
    "judge.options",
    "finetune.options",
    "finetune.inference_options",
)


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


#: How training pairs are made: `instructions` (the paper's: a baseline and a worse response to
#: a modified instruction), `verifiable` (solutions to problems with a reference answer, one right
#: and one wrong), or `mixed` (both, from two sources, mixed by `data.verifiable_ratio`).
RECIPES = ("instructions", "verifiable", "mixed")


class ProblemsSource(_Section):
    """`[data.problems]`: the problems file of the `mixed` recipe (instructions come from
    data.path / data.dataset). Reference answers are read from `data.answer_field`."""

    path: str | None = Field(None, description="JSONL / CSV / Parquet file or load_from_disk dir")
    dataset: str | None = Field(None, description="Hugging Face hub dataset name")
    format: Literal["auto", "jsonl", "csv", "parquet", "disk", "hub"] = "auto"
    split: str = "train"
    text_field: str | None = Field(
        None, description="problem text column; default: first of instruction, prompt, text"
    )
    limit: int | None = Field(None, ge=1, description="read at most this many rows")

    @model_validator(mode="after")
    def _one_source(self) -> ProblemsSource:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of data.problems.path or data.problems.dataset")
        return self


class DataConfig(_Section):
    """`[data]`: where the unlabelled instructions (or problems) come from, how many to use, and
    the recipe that makes training pairs of them."""

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
    recipe: Literal["instructions", "verifiable", "mixed"] = Field(
        "instructions", description="how pairs are made: " + ", ".join(RECIPES)
    )
    answer_field: str = Field("answer", description="reference-answer column of the problems")
    checker: str = Field("numeric", description="answer checker: numeric, string or a plugin's")
    samples_per_problem: int = Field(
        4, ge=2, le=64, description="solutions sampled per problem (one request with n)"
    )
    verifiable_ratio: float | None = Field(
        None, gt=0.0, lt=1.0, description="mixed: the share of training pairs from problems"
    )
    problems: ProblemsSource | None = Field(None, description="mixed: the problems source")

    @property
    def uses_instructions(self) -> bool:
        """Whether some pairs come from instructions (baseline vs. worse response)."""
        return self.recipe != "verifiable"

    @property
    def uses_problems(self) -> bool:
        """Whether some pairs come from problems with reference answers."""
        return self.recipe != "instructions"

    def problems_source(self) -> DataConfig:
        """The source the problems are read from, as a [data] table: data itself for the
        verifiable recipe, [data.problems] (with data's other settings) for the mixed one."""
        if self.problems is None:
            return self
        return self.model_copy(
            update={**self.problems.model_dump(), "conversation_field": None, "problems": None}
        )

    @model_validator(mode="after")
    def _recipe_settings(self) -> DataConfig:
        mixed = self.recipe == "mixed"
        if mixed and (self.problems is None or self.verifiable_ratio is None):
            raise ValueError(
                'data.recipe = "mixed" needs a [data.problems] table (path of the problems '
                "file) and data.verifiable_ratio (the share of training pairs from problems, "
                "between 0 and 1)"
            )
        if not mixed and (self.problems is not None or self.verifiable_ratio is not None):
            raise ValueError(
                '[data.problems] and data.verifiable_ratio belong to data.recipe = "mixed"; '
                f'with recipe {self.recipe!r} remove them (or set recipe = "mixed")'
            )
        return self

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


def _generator_params() -> SamplingConfig:
    # Meta's release generates responses at temperature 0.7, top_p 0.9.
    return SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=2048)


def _solve_params() -> SamplingConfig:
    # k solutions of one problem must differ to disagree: sampled, not greedy.
    return SamplingConfig(temperature=0.8, top_p=0.95, max_tokens=2048)


class GeneratorConfig(_ModelRole):
    """`[generator]`: the model that writes baseline and worse responses."""

    params: SamplingConfig = Field(default_factory=_generator_params)
    worse_template: str = "worse_response"
    solve_template: str = Field("solve", description="template of the verifiable recipe")
    solve_params: SamplingConfig = Field(
        default_factory=_solve_params,
        description="sampling of the k solutions per problem (temperature > 0)",
    )


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
        0.0,
        ge=0.0,
        le=1.0,
        description="keep only if at least this fraction of the samples is correct",
    )
    threshold_unit: Literal["order", "pair"] = Field(
        "order",
        description="where the threshold applies: each (pair, order) on its own samples "
        "(Meta's) or each pair on both orders' samples pooled",
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
    dpo: DPOSpec = Field(
        default_factory=DPOSpec,
        description="[finetune.dpo]: the DPO loss's NLL term, length normalisation, SimPO",
    )
    lora: LoRAConfig | Literal[False] = Field(
        default_factory=LoRAConfig, description="LoRA settings, or false for full fine-tuning"
    )
    grpo: GRPOSpec = Field(
        default_factory=GRPOSpec, description="[finetune.grpo]: rollouts and rewards (method grpo)"
    )
    warmup: Literal["none", "sft"] = Field(
        "none",
        description='method grpo: "sft" trains iteration 1 with SFT on the kept judgements (the '
        "judge and select stages run there) and GRPO from iteration 2 on",
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

    @model_validator(mode="after")
    def _grpo_settings(self) -> FineTuneConfig:
        if self.warmup == "sft" and self.method is not FineTuneMethod.GRPO:
            raise ValueError('finetune.warmup = "sft" is the warm-up of method "grpo"; remove it')
        if self.warmup == "sft" and self.init_from != "previous":
            raise ValueError(
                'finetune.warmup = "sft" needs finetune.init_from = "previous": the GRPO '
                "iterations must start from the warmed-up model, not from the seed"
            )
        if self.method is FineTuneMethod.GRPO and isinstance(self.batch_size, int):
            self.grpo.check_batch(self.batch_size, self.gradient_accumulation_steps)
        return self

    def method_at(self, iteration: int) -> FineTuneMethod:
        """The method iteration `iteration` trains with (SFT for a GRPO run's warm-up)."""
        if self.warmup == "sft" and iteration == 1:
            return FineTuneMethod.SFT
        return self.method

    def judges_pairs(self, iteration: int) -> bool:
        """Whether iteration `iteration` trains on the judge's kept judgements (SFT, DPO), so
        its judge and select stages run; GRPO samples its judgements while it trains."""
        return self.method_at(iteration) is not FineTuneMethod.GRPO


class BenchmarkFile(_Section):
    """One benchmark file every judge is scored on, alongside the frozen eval pairs.

    `benchmark = "rewardbench"` or `"pairs"` (the default): labelled pairs read with
    `ste_core.evaluation.pairs_io.read_pairs` (RewardBench rows, user rows or ResponsePair JSON)
    and scored with RewardBench's sections when its subsets are present. The other names read
    that benchmark's official file (JSONL, JSON, Parquet or a `datasets` directory) and score
    it by its own rules (`ste_core.evaluation.benchmarks`).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    path: str
    limit: int | None = Field(None, ge=1, description="use only the first N pairs")
    benchmark: Literal["rewardbench", "pairs", "rewardbench2", "judgebench", "rmbench", "ppe"] = (
        Field("rewardbench", description="the file's format and scoring rules")
    )
    mode: Literal["ranking", "ratings"] = Field(
        "ranking", description="rewardbench2: four-way ranking, or 1-10 ratings per completion"
    )
    pair_rule: Literal["consistent", "mean"] = Field(
        "consistent", description="rmbench / ppe: how the judge's two orders make one decision"
    )
    ranking_template: str = Field("judge_rank_four", description="rewardbench2 ranking template")
    rating_template: str = Field("judge_rate", description="rewardbench2 rating template")


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
    max_error_rate: float = Field(
        0.10,
        ge=0.0,
        le=1.0,
        description="share of a judge's items that may fail (request errors, not parse "
        "failures) before it gets no accuracy and its evaluation fails",
    )
    min_eval_pairs: int | None = Field(
        None,
        ge=1,
        description="fail when fewer eval pairs survive generation (default: half of eval_size, "
        "rounded up)",
    )

    @property
    def min_pairs(self) -> int:
        """The smallest frozen eval set a run accepts from generation."""
        return self.min_eval_pairs or -(-self.eval_size // 2)

    select_on: str | None = Field(
        None,
        description='pick the run\'s judge: "eval" (the frozen eval pairs) or a labelled pairs '
        "file of validation pairs every judge is scored on",
    )

    @model_validator(mode="after")
    def _majority_needs_samples(self) -> EvaluationConfig:
        if self.majority_vote and self.samples_per_order < 2:
            raise ValueError("evaluation.majority_vote needs evaluation.samples_per_order >= 2")
        if self.samples_per_order > 1 and self.params.temperature == 0.0:
            raise ValueError(
                "evaluation.samples_per_order > 1 needs evaluation.params.temperature > 0 "
                "(greedy samples are all the same)"
            )
        if self.min_eval_pairs is not None and self.min_eval_pairs > self.eval_size:
            raise ValueError(
                f"evaluation.min_eval_pairs ({self.min_eval_pairs}) is above "
                f"evaluation.eval_size ({self.eval_size}): lower it or raise eval_size"
            )
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError("evaluation.benchmarks: names must be unique")
        if self.select_on is not None and not self.select_on.strip():
            raise ValueError('evaluation.select_on: give "eval" or the path of a pairs file')
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
    # thresholds on what a run accepts, not inputs: raised or lowered to resume a failed stage
    "evaluation.max_error_rate",
    "evaluation.min_eval_pairs",
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

    @model_validator(mode="after")
    def _solutions_are_sampled(self) -> Config:
        if self.data.uses_problems and self.generator.solve_params.temperature == 0.0:
            raise ValueError(
                f"data.recipe = {self.data.recipe!r} samples data.samples_per_problem solutions "
                "per problem: generator.solve_params.temperature must be > 0 (greedy samples "
                "are all the same, so no problem would get both a right and a wrong one)"
            )
        return self

    @model_validator(mode="after")
    def _grpo_iterations_differ(self) -> Config:
        ft = self.finetune
        if ft.warmup == "sft" and self.run.iterations < 2:
            raise ValueError(
                'finetune.warmup = "sft" trains iteration 1 with SFT and GRPO from iteration 2: '
                "set run.iterations >= 2"
            )
        if ft.method is FineTuneMethod.GRPO and ft.init_from == "seed" and self.run.iterations > 1:
            # GRPO's data (the pairs) does not depend on the judge, so from the seed every
            # iteration would train the same model again.
            raise ValueError(
                'finetune.method = "grpo" with init_from = "seed" would train the same model at '
                "every iteration (its data does not depend on the judge): set init_from = "
                '"previous" to keep training, or run.iterations = 1'
            )
        return self

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
        method = ft.method_at(iteration)
        return FineTuneSpec(
            base_model=self.finetune_base_model,
            method=method,
            from_model=from_model,
            lora=None if ft.lora is False else ft.lora,
            epochs=ft.epochs,
            learning_rate=ft.learning_rate,
            batch_size=ft.batch_size,
            gradient_accumulation_steps=ft.gradient_accumulation_steps,
            max_length=ft.max_length,
            dpo_beta=ft.dpo_beta,
            dpo=ft.dpo,
            grpo=ft.grpo if method is FineTuneMethod.GRPO else None,
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

    # -- what pins a run ---------------------------------------------------------------------
    # `pinned` maps an options table (OPTION_TABLES) to the option names that change results, as
    # the chosen backends' Options declare them; a table it leaves out pins every option.

    def fingerprint(self, pinned: Mapping[str, Collection[str]] | None = None) -> str:
        """A hash of everything that changes results (not iterations, budget or limits)."""
        return content_hash(self.result_settings(pinned))

    def result_settings(
        self, pinned: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, Any]:
        """Flattened `key -> value` of the settings that change results."""
        flat = _flatten(self.model_dump(mode="json"))
        return {
            k: v
            for k, v in flat.items()
            if not k.startswith(_RESUMABLE_KEYS) and _changes_results(k, pinned)
        }

    def changed_settings(
        self, previous: Mapping[str, Any], pinned: Mapping[str, Collection[str]] | None = None
    ) -> list[str]:
        """Keys whose value differs from `previous` (the `result_settings()` a run started with).

        An option that does not change results is ignored on both sides: a run started before
        the backends declared which options do pinned them all."""
        now = self.result_settings(pinned)
        before = {k: v for k, v in previous.items() if _changes_results(k, pinned)}
        # A setting added after the run started keeps what the run did at the value that
        # reproduces the old behaviour: its default, unless the default changed it.
        added = {
            k for k in set(now) - set(before) if now[k] == _BEFORE_THE_KEY.get(k, _default_at(k))
        }
        return sorted(
            k for k in set(now) | set(before) if k not in added and now.get(k) != before.get(k)
        )


_NO_DEFAULT = object()

#: Settings added with a default that changes what runs did before the key existed: the value
#: that reproduces those runs (a run started before it resumes only at this value).
_BEFORE_THE_KEY: dict[str, Any] = {"selection.threshold_unit": "pair"}


def _default_at(key: str) -> Any:
    """The schema's default for the flattened key `key` (e.g. `data.recipe`), as
    `result_settings` writes values; `_NO_DEFAULT` where the schema gives none."""
    node: Any = Config
    for part in key.split("."):
        if isinstance(node, type) and issubclass(node, BaseModel):
            info = node.model_fields.get(part)
            if info is None:
                return _NO_DEFAULT
            # a required section (run, data, ...) has no default of its own: walk its class
            node = (
                info.annotation
                if info.is_required()
                else info.get_default(call_default_factory=True)
            )
        elif isinstance(node, BaseModel):
            node = getattr(node, part, _NO_DEFAULT)
        else:
            return _NO_DEFAULT
    if isinstance(node, type | BaseModel):
        return _NO_DEFAULT
    return node


def _changes_results(key: str, pinned: Mapping[str, Collection[str]] | None) -> bool:
    for table in OPTION_TABLES:
        if key.startswith(table + "."):
            option = key[len(table) + 1 :].split(".", 1)[0]
            return pinned is None or table not in pinned or option in pinned[table]
    return True


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
SECRET_MARK = "looks like a secret"


def _reject_secrets(options: dict[str, Any], prefix: str = "") -> None:
    for key, value in options.items():
        name = f"{prefix}{key}"
        lowered = str(key).lower()
        if not lowered.endswith("_env") and (
            lowered in _SECRET_WHOLE or _SECRET_SEGMENT.search(lowered)
        ):
            raise ValueError(
                f"'{name}' {SECRET_MARK}; secrets are never read from the config file. "
                "Set the provider's environment variable instead (e.g. TOGETHER_API_KEY, "
                "OPENAI_API_KEY), or name the variable with an option ending in _env if the "
                "backend supports one"
            )
        if isinstance(value, dict):
            _reject_secrets(value, prefix=f"{name}.")
