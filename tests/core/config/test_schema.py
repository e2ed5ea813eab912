"""The config schema (ste_core.config.schema): the paper's defaults, cross-field rules, secrets
refused in options tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ste_core.config import load_config
from tests.core.config.configs import _error, _minimal
from tests.core.helpers import write_config

# Configs name backends, whose options are checked when the file is loaded.
pytestmark = pytest.mark.usefixtures("scripted_and_builtins")


def test_minimal_config_gets_the_papers_defaults(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, _minimal(tmp_path)))
    assert cfg.judge.params.temperature == 0.7 and cfg.judge.params.top_p == 0.9
    assert cfg.judge.params.max_tokens == 4096
    assert cfg.judge.orders == "both"
    assert cfg.finetune.init_from == "seed"
    assert cfg.finetune.method.value == "sft"
    assert cfg.evaluation.eval_size == 50
    # Meta's release samples responses at 0.7 / 0.9 (not greedy)
    assert (cfg.generator.params.temperature, cfg.generator.params.top_p) == (0.7, 0.9)
    assert cfg.evaluation.max_error_rate == 0.1
    assert cfg.evaluation.min_pairs == 25  # half of eval_size
    assert cfg.run.iterations == 4
    assert cfg.filter.enabled is False


def test_min_eval_pairs_is_at_most_eval_size(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    data["evaluation"] = {"eval_size": 10, "min_eval_pairs": 11}
    assert "evaluation.min_eval_pairs (11) is above evaluation.eval_size (10)" in _error(
        tmp_path, data
    )
    data["evaluation"] = {"eval_size": 10, "min_eval_pairs": 3}
    assert load_config(write_config(tmp_path, data)).evaluation.min_pairs == 3


def test_lora_false_means_full_finetuning(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    data["finetune"]["lora"] = False
    cfg = load_config(write_config(tmp_path, data))
    assert cfg.finetune_spec(1, None).lora is None


def test_the_dpo_table_reaches_the_spec_and_plain_dpo_is_the_default(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    plain = load_config(write_config(tmp_path, data)).finetune_spec(1, None).dpo
    assert (plain.nll_weight, plain.normalize_logratios_by_length, plain.simpo_gamma) == (
        0.0,
        False,
        None,
    )
    data["finetune"] |= {"method": "dpo", "dpo_beta": 0.2, "dpo": {"nll_weight": 1.0}}
    spec = load_config(write_config(tmp_path, data)).finetune_spec(1, None)
    assert spec.dpo_beta == 0.2 and spec.dpo.nll_weight == 1.0  # the flat key still works
    data["finetune"]["dpo"] = {"nll_wieght": 1.0}
    assert "nll_wieght" in _error(tmp_path, data)
    data["finetune"]["dpo"] = {"simpo_gamma": -1}
    assert "simpo_gamma" in _error(tmp_path, data)


@pytest.mark.parametrize(
    "options",
    [
        {"api_key": "sk-LEAK"},
        {"token": "sk-LEAK"},
        {"client_secret": "sk-LEAK"},
        {"headers": {"Authorization": "Bearer sk-LEAK"}},
        {"password": "sk-LEAK"},
    ],
)
def test_secrets_in_options_are_refused_without_echoing_them(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    data = _minimal(tmp_path)
    data["judge"]["options"] = options
    msg = _error(tmp_path, data)
    assert "looks like a secret" in msg and "environment variable" in msg
    assert "sk-LEAK" not in msg


def test_secret_check_covers_finetune_options_and_allows_env_names(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    data["finetune"]["job_options"] = {"wandb_api_key": "x"}
    assert "finetune.job_options" in _error(tmp_path, data)
    data["finetune"]["job_options"] = {}
    data["generator"]["options"] = {"api_key_env": "MY_KEY", "max_tokens_field": "max_tokens"}
    cfg = load_config(write_config(tmp_path, data))
    assert cfg.generator.options["api_key_env"] == "MY_KEY"


def test_majority_vote_needs_samples_and_temperature(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    data["evaluation"] = {"majority_vote": True}
    assert "samples_per_order >= 2" in _error(tmp_path, data)
    data["evaluation"] = {"samples_per_order": 3}
    assert "temperature > 0" in _error(tmp_path, data)
    data["evaluation"] = {
        "samples_per_order": 3,
        "majority_vote": True,
        "params": {"temperature": 0.7},
    }
    assert load_config(write_config(tmp_path, data)).evaluation.majority_vote


def test_data_needs_exactly_one_source(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    data["data"] = {"path": "a.jsonl", "dataset": "allenai/WildChat"}
    assert "exactly one of data.path" in _error(tmp_path, data)


def test_grpo_settings_and_the_sft_warm_up_rules(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    data["finetune"].update(method="grpo", batch_size=4)
    data["finetune"]["grpo"] = {"num_generations": 2, "beta": 0.0, "rewards": {"format": 0.0}}
    # From the seed, every iteration would train the same model on the same pairs.
    assert "would train the same model at every iteration" in _error(tmp_path, data)
    data["finetune"]["init_from"] = "previous"
    cfg = load_config(write_config(tmp_path, data))
    spec = cfg.finetune_spec(1, None)
    assert spec.method.value == "grpo" and spec.grpo is not None
    assert (spec.grpo.num_generations, spec.grpo.beta, spec.grpo.rewards.format) == (2, 0.0, 0.0)
    assert spec.grpo.rewards.correct == 1.0  # the other weights keep their defaults
    assert cfg.finetune.judges_pairs(1) is False

    data["finetune"]["batch_size"] = 6  # 3 completions of a pair's second order would spill over
    assert "multiple of 2 x finetune.grpo.num_generations = 4" in _error(tmp_path, data)
    data["finetune"]["batch_size"] = 4
    data["finetune"].update(warmup="sft", init_from="seed")
    assert 'needs finetune.init_from = "previous"' in _error(tmp_path, data)
    data["finetune"]["init_from"] = "previous"
    data["run"] = {**data.get("run", {}), "iterations": 1}
    assert "set run.iterations >= 2" in _error(tmp_path, data)
    data["run"]["iterations"] = 3
    cfg = load_config(write_config(tmp_path, data))
    assert [cfg.finetune.method_at(i).value for i in (1, 2, 3)] == ["sft", "grpo", "grpo"]
    assert [cfg.finetune.judges_pairs(i) for i in (1, 2)] == [True, False]
    data["finetune"]["method"] = "dpo"
    assert 'warm-up of method "grpo"' in _error(tmp_path, data)
