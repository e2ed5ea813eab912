"""The hooks a plugin may implement (pluggy project name `ste`).

A plugin is a module (or object) exposed under the `ste` entry-point group, with functions
decorated by `ste_core.hookimpl`:

    from ste_core import hookimpl

    @hookimpl
    def register_backends(register):
        register("mybackend", inference=MyInference, finetune=MyFineTune)

Registration hooks take a `register` callback (the shape simonw/llm uses) so a plugin can register
any number of things and the host can attach the plugin's distribution to each. Event hooks are
called after the fact, with plain records; their return values are ignored and an exception in
one is reported as a warning, never allowed to stop a run.
"""

from __future__ import annotations

from typing import Any

import pluggy
from pydantic import BaseModel, ConfigDict, Field

hookspec = pluggy.HookspecMarker("ste")
hookimpl = pluggy.HookimplMarker("ste")


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
    def register_backends(self, register: Any) -> None:
        """Register backends: `register(name, inference=Cls, finetune=Cls)`, either optional."""

    @hookspec
    def register_templates(self, register: Any) -> None:
        """Register prompt templates: `register(template)` with an `ste_prompts.Template`,
        or `register(path)` with the path of a template file."""

    @hookspec
    def stage_finished(self, event: StageEvent) -> None:
        """A pipeline stage finished (counts and metrics of its funnel)."""

    @hookspec
    def iteration_finished(self, event: IterationEvent) -> None:
        """An iteration finished (its judge and evaluation metrics)."""

    @hookspec
    def run_finished(self, event: RunEvent) -> None:
        """A run ended (status: succeeded, failed or interrupted)."""
