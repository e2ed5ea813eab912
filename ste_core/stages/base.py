"""What a stage is: a value that says what it needs, which judge it calls, what it counts, and how
it runs.

A stage module (e.g. `ste_core/stages/worse.py`) exports one `STAGE`; the ordered tuple of them in
`ste_core/stages/__init__.py` is the plan, and `ste_core.pipeline` runs any plan the same way:
skip what is done, check prerequisites, serve the judge a stage calls (shared by adjacent stages
that call the same one), count usage, mark the stage done with its counts, fire events.

Scopes: a `run` stage runs once (iteration 0: data and the frozen eval pairs); an `iteration`
stage runs in every training iteration 1..K; a `judge` stage runs once per judge M_0..M_K (its
iteration number is the judge's: 0 is the seed judge).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ste_core.records import Funnel

if TYPE_CHECKING:
    from ste_core.config import Config
    from ste_core.run.context import RunContext
    from ste_core.run.preflight import Planner, Work
    from ste_core.run.serving import Judge

__all__ = ["Counts", "JudgeUse", "Scope", "Stage", "Step", "flat_counts"]

Scope = Literal["run", "iteration", "judge"]
#: Which judge a stage calls at iteration i: M_{i-1} ("previous") or M_i ("current").
JudgeUse = Literal["previous", "current"]


def flat_counts(prefix: str) -> Any:
    """A `dict[str, int]` counts field stored as flat `<prefix><key>` entries (e.g. the drops of
    a stage by reason: `dropped_parse_error`)."""
    return Field(default_factory=dict, json_schema_extra={"flat_prefix": prefix})


class Counts(BaseModel):
    """A stage's counts: its part of the data funnel, typed.

    Stored in the run store, shown when the stage ends and sent to plugins as one flat
    `{name: int}` mapping: an int field is one entry; a `flat_counts(prefix)` field contributes
    an entry per key; a nested Counts field contributes its own entries under its name + "_".
    `funnel()` says what the stage adds to its iteration's `Funnel`; `describe()` says the
    counts in words (the line shown when the stage ends), using `labels`.
    """

    model_config = ConfigDict(extra="forbid")

    #: the words a person reads for a field (default: its name with spaces); an int field reads
    #: "<n> <label>", a dict or nested field "<label>: <its entries>"
    labels: ClassVar[Mapping[str, str]] = {}

    def describe(self) -> str:
        """The non-zero counts in words, in field order, e.g. "50 instructions, 48 baselines,
        dropped: 2 empty baseline"."""
        parts: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            label = self.labels.get(name, name.replace("_", " "))
            if isinstance(value, Counts):
                inner = value.describe()
                if inner:
                    parts.append(f"{label} ({inner})")
            elif isinstance(value, dict):
                entries = [f"{n} {k.replace('_', ' ')}" for k, n in value.items() if n]
                if entries:
                    parts.append(f"{label}: {', '.join(entries)}")
            elif value:
                parts.append(f"{value} {label}")
        return ", ".join(parts)

    def flat(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, Counts):
                out.update({f"{name}_{k}": v for k, v in value.flat().items()})
            elif isinstance(value, dict):
                prefix = _prefix(info.json_schema_extra)
                out.update({f"{prefix}{k}": v for k, v in value.items()})
            elif value is not None:
                out[name] = int(value)
        return out

    @classmethod
    def from_flat(cls, flat: Mapping[str, int]) -> Self:
        """The typed counts of a stored flat mapping (keys this version does not know are
        ignored: a run may have been started by another version)."""
        values: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            nested = _counts_type(info.annotation)
            if nested is not None:
                start = f"{name}_"
                mine = {k[len(start) :]: v for k, v in flat.items() if k.startswith(start)}
                if mine or info.is_required():
                    values[name] = nested.from_flat(mine)
            elif (prefix := _prefix(info.json_schema_extra)) is not None:
                values[name] = {
                    k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)
                }
            elif name in flat:
                values[name] = flat[name]
        return cls(**values)

    def funnel(self) -> Funnel:
        """What this stage adds to its iteration's funnel (nothing, unless it says so)."""
        return Funnel()


def _prefix(extra: Any) -> str | None:
    return extra.get("flat_prefix") if isinstance(extra, dict) else None


def _counts_type(annotation: Any) -> type[Counts] | None:
    """The Counts class of a field annotated `SomeCounts` or `SomeCounts | None`."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, Counts):
            return candidate
    return None


C = TypeVar("C", bound=Counts)


@dataclass(frozen=True)
class Step:
    """A stage at one iteration, with what it may use: the open run and the judge it calls."""

    ctx: RunContext
    iteration: int
    judge_session: Judge | None = None

    @property
    def judge(self) -> Judge:
        """The judge this stage calls (served by the pipeline for the stage's duration)."""
        if self.judge_session is None:
            raise RuntimeError("this stage declares no judge; set Stage.judge to call one")
        return self.judge_session


def _always(config: Config) -> bool:
    return True


def _every_iteration(config: Config, iteration: int) -> bool:
    return True


# `Stage.enabled` of the stages that belong to one recipe of training pairs (`data.recipe`).
def uses_instructions(config: Config) -> bool:
    return config.data.uses_instructions


def uses_problems(config: Config) -> bool:
    return config.data.uses_problems


@dataclass(frozen=True)
class Stage(Generic[C]):
    """One stage of the loop. See the module docstring."""

    name: str
    scope: Scope
    run: Callable[[Step], Awaitable[C]]
    counts: type[C]
    #: stages whose outputs this one reads: a `run` stage at iteration 0, another at the same
    #: iteration. A need on a stage that is disabled, or has no such iteration, does not apply.
    needs: tuple[str, ...] = ()
    judge: JudgeUse | None = None
    enabled: Callable[[Config], bool] = field(default=_always)
    #: when `enabled` says yes, in config words (for the error when a switched-off stage is asked)
    enabled_when: str = ""
    #: whether the stage runs at a given iteration of its scope under a config (e.g. `judge` not
    #: at an iteration trained with GRPO); `at_when` says when, in config words
    at: Callable[[Config, int], bool] = field(default=_every_iteration)
    at_when: str = ""
    #: one line for `ste run --plan`
    summary: str = ""
    #: what differs at one iteration under a config, appended to the summary in the plan (the
    #: fine-tune method of that iteration, say); None: nothing
    note: Callable[[Config, int], str] | None = None
    #: what the stage would still send at an iteration, before it runs (`ste run --check`, the
    #: preflight of `Pipeline.run`); None: it sends nothing
    estimate: Callable[[Planner, int], Work] | None = None

    def iterations(self, k: int) -> range:
        """The iterations this stage runs at in a run of `k` training iterations."""
        if self.scope == "run":
            return range(0, 1)
        if self.scope == "iteration":
            return range(1, k + 1)
        return range(0, k + 1)

    def active(self, config: Config, iteration: int, k: int) -> bool:
        """Whether the stage runs at `iteration` in a run of `k` iterations under `config`."""
        return (
            self.enabled(config) and iteration in self.iterations(k) and self.at(config, iteration)
        )

    def judge_of(self, iteration: int) -> int | None:
        """The index j of the judge M_j this stage calls at `iteration` (None: no judge)."""
        if self.judge is None:
            return None
        return iteration - 1 if self.judge == "previous" else iteration
