"""The recipe settings of [data] and [generator] (ste_core.config.schema): what each recipe
needs, what it refuses, and the checks made when the file is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ste_core.config import load_config
from ste_core.errors import ConfigurationError
from tests.core.config.configs import _minimal
from tests.core.helpers import write_config

pytestmark = pytest.mark.usefixtures("scripted_and_builtins")


def _with(tmp_path: Path, **data: Any) -> dict[str, Any]:
    cfg = _minimal(tmp_path)
    cfg["data"].update(data)
    return cfg


def _problem(tmp_path: Path, cfg: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as err:
        load_config(write_config(tmp_path, cfg))
    return str(err.value)


def test_the_default_recipe_is_the_papers(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, _minimal(tmp_path)))
    assert cfg.data.recipe == "instructions"
    assert cfg.data.uses_instructions and not cfg.data.uses_problems
    assert cfg.generator.solve_template == "solve" and cfg.generator.solve_params.temperature > 0


def test_mixed_reads_problems_from_their_own_table_relative_to_the_config(tmp_path: Path) -> None:
    data = {"recipe": "mixed", "verifiable_ratio": 0.3, "problems": {"path": "problems.jsonl"}}
    cfg = load_config(write_config(tmp_path, _with(tmp_path, **data)))
    source = cfg.data.problems_source()
    assert source.path == str(tmp_path / "problems.jsonl")
    assert source.recipe == "mixed" and source.answer_field == "answer"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"recipe": "mixed"}, "needs a [data.problems] table"),
        ({"recipe": "mixed", "problems": {"path": "p.jsonl"}}, "data.verifiable_ratio"),
        ({"verifiable_ratio": 0.5}, 'belong to data.recipe = "mixed"'),
        ({"recipe": "verifiable", "problems": {"path": "p.jsonl"}}, "remove them"),
        ({"recipe": "mixed", "verifiable_ratio": 1.0, "problems": {"path": "p"}}, "must be < 1"),
        ({"recipe": "verifiable", "samples_per_problem": 1}, "must be >= 2"),
        ({"recipe": "recipes"}, "instructions"),
    ],
)
def test_what_each_recipe_refuses(tmp_path: Path, data: dict[str, Any], says: str) -> None:
    assert says in _problem(tmp_path, _with(tmp_path, **data))


def test_greedy_solutions_are_refused_with_the_reason(tmp_path: Path) -> None:
    cfg = _with(tmp_path, recipe="verifiable")
    cfg["generator"]["solve_params"] = {"temperature": 0.0}
    message = _problem(tmp_path, cfg)
    assert "generator.solve_params.temperature must be > 0" in message
    cfg["data"]["recipe"] = "instructions"  # the instruction recipe does not sample solutions
    load_config(write_config(tmp_path, cfg))


def test_an_unknown_checker_or_solve_template_is_found_when_the_file_loads(
    tmp_path: Path,
) -> None:
    cfg = _with(tmp_path, recipe="verifiable", checker="numerical")
    cfg["generator"]["solve_template"] = "judge_short"
    message = _problem(tmp_path, cfg)
    assert "data.checker: got 'numerical'; registered answer checkers: numeric, string" in message
    assert "generator.solve_template: got 'judge_short', a template for 'judge'" in message
    # Only a recipe that solves problems uses them.
    cfg["data"]["recipe"] = "instructions"
    load_config(write_config(tmp_path, cfg))


def test_a_run_started_before_the_recipe_settings_existed_still_resumes(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, _minimal(tmp_path)))
    new_keys = ("data.", "generator.solve_")
    recipe_keys = {"data.recipe", "data.checker", "generator.solve_params.temperature"}
    before = {
        k: v
        for k, v in cfg.result_settings().items()
        if not (k.startswith(new_keys) and k.split(".")[1] in _ADDED)
    }
    assert recipe_keys - before.keys() == recipe_keys  # as an older version stored them
    assert cfg.changed_settings(before) == []
    # ... but a recipe chosen now is a change that asks for --fresh
    verifiable = load_config(write_config(tmp_path, _with(tmp_path, recipe="verifiable")))
    assert verifiable.changed_settings(before) == ["data.recipe"]
    hotter = _minimal(tmp_path)
    hotter["generator"]["solve_params"] = {"temperature": 1.0, "top_p": 0.95}
    changed = load_config(write_config(tmp_path, hotter)).changed_settings(before)
    assert changed == ["generator.solve_params.temperature"]


_ADDED = {
    "recipe",
    "answer_field",
    "checker",
    "samples_per_problem",
    "verifiable_ratio",
    "problems",
    "solve_template",
    "solve_params",
}
