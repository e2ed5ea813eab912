"""The hooks a plugin may implement (pluggy project name `ste`).

A plugin is a module (or object) exposed under the `ste` entry-point group, with functions
decorated by `ste_core.hookimpl`:

    from ste_core import RegisterBackends, hookimpl

    @hookimpl
    def register_backends(register: RegisterBackends) -> None:
        register("mybackend", inference=MyInference, finetune=MyFineTune)

Registration hooks take a `register` callback (the shape simonw/llm uses) so a plugin can register
any number of things and the host can attach the plugin's distribution to each; its signature is
the `RegisterBackends` / `RegisterTemplates` / `RegisterAnswerCheckers` protocol, for editors and
mypy. `register_commands` takes the `ste` command-line app itself (a `typer.Typer`; llm passes
its click group the same way) and adds commands to it, e.g. `cli.command("demo")(demo)`; it runs
whenever the CLI starts, so it must stay cheap: import what the command needs inside the
command. Event hooks are called after the fact, with plain records, one implementation at a time
(`ste_core.plugins.fire_event`); their return values are ignored and an exception in one is
reported as a warning naming the plugin, never allowed to stop a run or the other plugins.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import typer

    from ste_core.answers import AnswerChecker
    from ste_core.backends import FineTuneBackend, InferenceBackend
    from ste_prompts import Template

hookspec = pluggy.HookspecMarker("ste")
hookimpl = pluggy.HookimplMarker("ste")


class RegisterBackends(Protocol):
    """The `register` callback of `register_backends`."""

    def __call__(
        self,
        name: str,
        inference: type[InferenceBackend] | None = None,
        finetune: type[FineTuneBackend] | None = None,
    ) -> None:
        """Register backend `name` with an inference class and/or a fine-tune class."""


class RegisterTemplates(Protocol):
    """The `register` callback of `register_templates`."""

    def __call__(self, template: Template | str | Path) -> None:
        """Register a prompt template object, or the path of a template file."""


class RegisterAnswerCheckers(Protocol):
    """The `register` callback of `register_answer_checkers`."""

    def __call__(self, name: str, checker: AnswerChecker) -> None:
        """Register `checker`, a function (solution, reference) -> `ste_core.AnswerCheck`,
        as `name` (the value of `data.checker`)."""


class StageEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_name: str
    iteration: int
    stage: str
    counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


class IterationEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_name: str
    iteration: int
    judge_model: str
    metrics: dict[str, Any] = Field(default_factory=dict)


class RunEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_name: str
    run_dir: str
    status: str
    metrics: dict[str, Any] = Field(default_factory=dict)


class Hookspecs:
    @hookspec
    def register_backends(self, register: RegisterBackends) -> None:
        """Register backends: `register(name, inference=Cls, finetune=Cls)`, either optional."""

    @hookspec
    def register_templates(self, register: RegisterTemplates) -> None:
        """Register prompt templates: `register(template)` with an `ste_prompts.Template`,
        or `register(path)` with the path of a template file."""

    @hookspec
    def register_answer_checkers(self, register: RegisterAnswerCheckers) -> None:
        """Register answer checkers for the verifiable-answer recipe: `register(name, checker)`
        with a function (solution, reference) -> `AnswerCheck` (`ste_core.answers`). A name
        that is taken (a built-in, or an earlier plugin's) is refused with a warning."""

    @hookspec
    def register_commands(self, cli: typer.Typer) -> None:
        """Add commands to the `ste` CLI: `cli.command("name")(function)` (typer). A name that
        a built-in command or an earlier plugin already has is refused with a warning."""

    @hookspec
    def stage_finished(self, event: StageEvent) -> None:
        """A pipeline stage finished (counts and metrics of its funnel)."""

    @hookspec
    def iteration_finished(self, event: IterationEvent) -> None:
        """An iteration finished (its judge and evaluation metrics)."""

    @hookspec
    def run_finished(self, event: RunEvent) -> None:
        """A run ended (status: succeeded, failed, interrupted or stopped_at_budget)."""
