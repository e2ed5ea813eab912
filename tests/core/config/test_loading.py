"""Loading a config (ste_core.config.loading): validation messages, path resolution, overrides,
backend options checked and pinned at load."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from ste_core.config import config_from_dict, load_config
from ste_core.errors import ConfigurationError
from tests.core.config.configs import _error, _minimal
from tests.core.helpers import base_config, write_config

# Configs name backends, whose options are checked when the file is loaded.
pytestmark = pytest.mark.usefixtures("scripted_and_builtins")


def test_error_names_key_value_and_what_is_allowed(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    data["judge"]["samples_per_order"] = -1
    data["evaluation"] = {"orders": "three"}
    data["finetune"]["init_from"] = "last"
    msg = _error(tmp_path, data)
    assert "judge.samples_per_order: got -1; must be >= 1" in msg
    assert "evaluation.orders: got \"three\"; must be one of 'both' or 'single'" in msg
    assert "finetune.init_from: got \"last\"; must be one of 'seed' or 'previous'" in msg


def test_unknown_key_lists_the_allowed_keys(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    data["judge"]["sample_per_order"] = 3
    msg = _error(tmp_path, data)
    assert (
        'judge.sample_per_order: unknown key (did you mean "samples_per_order"?); allowed keys:'
        in msg
    )
    assert "samples_per_order" in msg


def test_missing_section_and_key(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    del data["finetune"]
    del data["judge"]["model"]
    msg = _error(tmp_path, data)
    assert "finetune: required key is missing" in msg
    assert "judge.model: required key is missing" in msg


def test_union_errors_report_the_informative_one(tmp_path: Path) -> None:
    data = _minimal(tmp_path)
    data["finetune"]["lora"] = {"r": 0}
    msg = _error(tmp_path, data)
    assert "finetune.lora.r: got 0; must be >= 1" in msg
    assert "must be one of False" not in msg


def test_relative_input_paths_resolve_against_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    data = _minimal(tmp_path)
    data["evaluation"] = {"pairs_path": "../old/eval_pairs.jsonl"}
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write_config(sub, data))
    assert cfg.data.path == str(sub / "in.jsonl")
    assert cfg.evaluation.pairs_path == str(tmp_path / "old" / "eval_pairs.jsonl")
    assert cfg.run.output_dir == str(tmp_path / "runs")  # output: relative to the cwd
    assert cfg.run_dir == tmp_path / "runs" / "r"


def test_overrides_and_changed_settings(tmp_path: Path) -> None:
    path = write_config(tmp_path, base_config(tmp_path))
    cfg = load_config(path)
    more = load_config(path, overrides={"run.iterations": 5, "budget.max_requests": 10})
    assert more.run.iterations == 5
    assert more.changed_settings(cfg.result_settings()) == []  # resumable changes
    other = load_config(path, overrides={"judge.samples_per_order": 5})
    assert other.changed_settings(cfg.result_settings()) == ["judge.samples_per_order"]


def _together(tmp: Path, base_url: str, **judge_options: Any) -> Path:
    data = base_config(tmp)
    options = {"base_url": base_url, "price_lookup": False}
    data["generator"] = {"backend": "together", "model": "fake-acc90", "options": options}
    data["judge"] = {
        "backend": "together",
        "model": "fake-acc70",
        "options": {**options, **judge_options},
    }
    data["finetune"] = {"backend": "together", "options": {"base_url": base_url}}
    return write_config(tmp, data)


def test_a_misspelt_backend_option_stops_ste_run_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ste_backends.together.fake import TogetherFake
    from ste_core.cli.app import app

    monkeypatch.setenv("TOGETHER_API_KEY", "fake-key")
    with TogetherFake() as fake:
        config = _together(tmp_path, fake.url, bacth=True)
        result = CliRunner().invoke(app, ["run", str(config)])
        assert fake.requests_total == 0
    assert result.exit_code == 2, result.output
    assert (
        'judge.options.bacth (together option): unknown key (did you mean "batch"?); allowed keys:'
        in result.output
    )
    assert "batch" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # refused while loading, before the run started


def test_options_that_do_not_change_results_may_change_on_resume(tmp_path: Path) -> None:
    from ste_core import Pipeline

    def opened(**changes: Any) -> None:
        data = tomllib.loads(_together(tmp_path, "http://127.0.0.1:9").read_text())
        for table, values in changes.items():
            section, key = table.split(".")
            data[section][key] = {**data[section][key], **values}
        pipeline = Pipeline(config_from_dict(data, base_dir=tmp_path))
        pipeline.open()  # pins the result-changing settings, or compares with the pinned ones

    opened()
    # How a result is obtained: serving mode, timeouts, batching, polling.
    opened(**{"finetune.options": {"serving": "dedicated", "timeout_s": 5.0}})
    opened(**{"judge.options": {"batch": True, "timeout_s": 9.0}})
    # What the answers are: another server.
    with pytest.raises(ConfigurationError, match=r"judge\.options\.base_url"):
        opened(**{"judge.options": {"base_url": "http://127.0.0.1:10"}})


def test_a_secret_option_is_refused_naming_its_variable(tmp_path: Path) -> None:
    data = tomllib.loads(_together(tmp_path, "http://127.0.0.1:9").read_text())
    data["judge"]["options"]["api_key"] = "tgp_v1_abcdefghijklmnopqrstuvwxyz"
    with pytest.raises(ConfigurationError) as info:
        config_from_dict(data, base_dir=tmp_path)
    assert "TOGETHER_API_KEY" in str(info.value)
    assert "tgp_v1_abc" not in str(info.value)


def test_a_path_option_is_resolved_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "held_out.jsonl").write_text('{"messages": []}\n')
    data = tomllib.loads(_together(tmp_path, "http://127.0.0.1:9").read_text())
    data["finetune"]["options"]["validation_file"] = "held_out.jsonl"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    import os

    cwd = Path.cwd()
    os.chdir(elsewhere)
    try:
        cfg = config_from_dict(data, base_dir=tmp_path)
    finally:
        os.chdir(cwd)
    assert cfg.finetune.options["validation_file"] == str(tmp_path / "held_out.jsonl")


def test_templates_are_checked_when_the_config_is_loaded(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["judge"]["template"] = "judge_evalplan"  # misspelt
    data["generator"]["worse_template"] = "judge_short"  # exists, made for judging
    message = _error(tmp_path, data)
    assert "judge.template: got 'judge_evalplan';" in message
    assert "judge_eval_plan" in message  # the known names are listed
    assert "generator.worse_template: got 'judge_short', a template for 'judge'" in message
    assert "'worse_response' template is needed" in message


def test_a_misspelt_key_or_backend_gets_a_did_you_mean(tmp_path, scripted) -> None:
    from ste_core.errors import ConfigurationError
    from tests.core.helpers import base_config, write_config

    data = base_config(tmp_path)
    data["judge"]["tempalte"] = "judge_short"
    with pytest.raises(ConfigurationError) as bad_key:
        load_config(write_config(tmp_path, data))
    assert 'judge.tempalte: unknown key (did you mean "template"?)' in str(bad_key.value)
    data = base_config(tmp_path)
    data["judge"]["backend"] = "scriptd"
    with pytest.raises(ConfigurationError, match=r"got 'scriptd' \(did you mean \"scripted\"\?\)"):
        load_config(write_config(tmp_path, data))
