"""`ste evaluate` with a test backend, and `ste score` / `--judgements` scoring only."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ste_core.cli.app import app

runner = CliRunner()


def write_pairs_file(path: Path) -> Path:
    rows = [
        # correct in both orders: 1
        {
            "prompt": "q1",
            "chosen": "GOOD one",
            "rejected": "BAD one",
            "subset": "alpacaeval-easy",
            "id": 1,
        },
        {
            "prompt": "q2",
            "chosen": "GOOD two",
            "rejected": "BAD two",
            "subset": "alpacaeval-easy",
            "id": 2,
        },
        # always [[A]]: right in AB, wrong in BA -> 0.5 both-order, position-inconsistent
        {
            "prompt": "q3",
            "chosen": "GOOD ALWAYS_A",
            "rejected": "BAD three",
            "subset": "xstest-should-respond",
            "id": 3,
        },
        # no verdict: 0.5
        {
            "prompt": "q4 NOVERDICT",
            "chosen": "GOOD four",
            "rejected": "BAD four",
            "subset": "xstest-should-refuse",
            "id": 4,
        },
        # API failure: an error, not a score (1 of 5 items: allowed by --max-error-rate 0.2)
        {
            "prompt": "q5 FAILME",
            "chosen": "GOOD five",
            "rejected": "BAD five",
            "subset": "mine",
            "id": 5,
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def evaluate(tmp_path: Path, *extra: str) -> tuple[dict, Path]:
    pairs = write_pairs_file(tmp_path / "rb.jsonl")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(pairs),
            "--backend",
            "rulejudge",
            "--model",
            "rule-1",
            "--template",
            "judge_meta_rewardbench",
            "--out",
            str(out),
            "--json",
            "--max-error-rate",
            "0.2",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


def test_evaluate_both_orders_then_rescore_is_identical(tmp_path: Path, rule_judge) -> None:
    payload, out = evaluate(tmp_path)
    s = payload["score"]
    assert s["mode"] == "both" and s["n_items"] == 5
    assert s["item_scores"] == {"1": 1.0, "2": 1.0, "3": 0.5, "4": 0.5}
    assert s["accuracy"] == 3 / 4 and s["n_scored"] == 4
    assert s["error_count"] == 1 and s["request_errors"] == 2  # both orders of pair 5 failed
    assert s["no_verdict_count"] == 2  # pair 4: the judge answered, without a verdict
    assert s["position_consistency"] == 2 / 3  # pairs 1, 2 consistent; 3 not; 4, 5 no verdicts
    assert s["judge_models"] == ["rule-1"] and s["templates"] == ["judge_meta_rewardbench"]
    rb = s["rewardbench"]
    assert rb["weights"] == "current"
    assert rb["missing_sections"] == ["Chat Hard", "Reasoning"]
    assert rb["other_subsets"] == []  # "mine" had its only item fail: missing, not 0
    assert any("no item scored" in w and "mine" in w for w in s["warnings"])
    # greedy by default: every request had temperature 0
    assert {r.params.temperature for r in rule_judge.calls} == {0.0}
    assert {r.params.max_tokens for r in rule_judge.calls} == {4096}
    assert (out / "score.json").exists()

    # the written judgements re-score to exactly the same numbers, with both entry points
    judgements = out / "judgements.jsonl"
    assert len(judgements.read_text().splitlines()) == 10
    limit = ["--json", "--max-error-rate", "0.2"]
    res = runner.invoke(app, ["score", str(tmp_path / "rb.jsonl"), str(judgements), *limit])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["score"] == s
    res = runner.invoke(
        app,
        ["evaluate", str(tmp_path / "rb.jsonl"), "--judgements", str(judgements), *limit],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["score"] == s
    # at the default limit (10%) the failed item withholds the accuracy, and the command fails
    res = runner.invoke(app, ["score", str(tmp_path / "rb.jsonl"), str(judgements)])
    assert res.exit_code == 1
    assert "accuracy   none: 1 error of 5 items (2 failed requests)" in res.stdout
    assert "error: no accuracy" in res.stderr and "more than 10% of the items" in res.stderr


def test_evaluate_single_order_is_seeded(tmp_path: Path, rule_judge) -> None:
    payload, _ = evaluate(tmp_path, "--orders", "single", "--seed", "7")
    s = payload["score"]
    assert s["mode"] == "single" and s["n_judgements"] == 4  # pair 5's request failed
    assert len(rule_judge.calls) == 5  # one order per pair; pair 5's permanent error: no retry
    first = [(r.metadata["pair_id"], r.metadata["order"]) for r in rule_judge.calls]
    from ste_core.evaluation import single_order

    assert sorted(first) == sorted((p, single_order(p, 7).value) for p in "12345")
    # pair 3's judge always says A: right only when its seeded order shows chosen first
    assert s["item_scores"]["3"] == (1.0 if single_order("3", 7).value == "AB" else 0.0)
    rule_judge.calls = []
    (tmp_path / "again").mkdir()
    evaluate(tmp_path / "again", "--orders", "single", "--seed", "7", "--no-cache")
    assert sorted(first) == sorted(
        (r.metadata["pair_id"], r.metadata["order"]) for r in rule_judge.calls
    )


def test_majority_vote_and_option_and_config(tmp_path: Path, rule_judge) -> None:
    cfg = tmp_path / "judge.toml"
    cfg.write_text(
        '[judge]\nbackend = "rulejudge"\nmodel = "rule-cfg"\n[judge.options]\nalways_a = false\n'
        '[evaluation]\norders = "both"\nsamples_per_order = 3\nmajority_vote = true\n'
        "[evaluation.params]\ntemperature = 0.7\n"
    )
    pairs = write_pairs_file(tmp_path / "rb.jsonl")
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(pairs),
            "--config",
            str(cfg),
            "--template",
            "judge_meta_rewardbench",
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--max-error-rate",
            "0.2",
            "-o",
            "always_a=true",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)["score"]
    assert s["majority"] and s["samples_per_order"] == 3
    assert s["judge_models"] == ["rule-cfg"]
    # always_a from --option overrides the config: every non-failing item is 0.5, A share 1
    assert s["a_verdict_share"] == 1.0
    assert s["item_scores"]["1"] == 0.5
    assert {r.params.n for r in rule_judge.calls} == {3}


def test_evaluate_rejects_bad_settings(tmp_path: Path, rule_judge) -> None:
    pairs = write_pairs_file(tmp_path / "rb.jsonl")
    res = runner.invoke(
        app, ["evaluate", str(pairs), "--backend", "rulejudge", "--model", "m", "--samples", "3"]
    )
    assert res.exit_code == 2
    assert "temperature" in res.output
    res = runner.invoke(app, ["evaluate", str(pairs), "--model", "m"])
    assert res.exit_code == 2 and "--backend" in res.output
    res = runner.invoke(
        app,
        ["evaluate", str(pairs), "--backend", "rulejudge", "--model", "m", "-o", "api_key=sk-123"],
    )
    assert res.exit_code == 2 and "secret" in res.output


def test_bad_rows_error_or_counted_skip(tmp_path: Path) -> None:
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(
        '{"instruction": "i", "chosen": "GOOD", "rejected": "BAD", "id": "a"}\n'
        '{"instruction": "i", "chosen": "GOOD"}\n'
    )
    judged = tmp_path / "j.jsonl"
    judged.write_text('{"pair_id": "a", "order": "AB", "text": "[[A]]"}\n')
    res = runner.invoke(app, ["score", str(pairs), str(judged)])
    assert res.exit_code == 2
    assert "p.jsonl:2: missing field 'rejected'" in res.output
    res = runner.invoke(app, ["score", str(pairs), str(judged), "--on-bad-row", "skip", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["skipped_pairs"] == [{"line": 2, "reason": "missing field 'rejected'"}]
    assert payload["score"]["accuracy"] == 1.0


def test_score_human_output_names_the_weights(tmp_path: Path) -> None:
    pairs = write_pairs_file(tmp_path / "rb.jsonl")
    judged = tmp_path / "j.jsonl"
    judged.write_text(
        '{"pair_id": "1", "order": "AB", "text": "[[A]]"}\n'
        '{"pair_id": "3", "swapped": true, "text": "[[A]]"}\n'
    )
    args = ["score", str(pairs), str(judged), "--weights", "pre-0.1.3", "--max-error-rate", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "weights 'pre-0.1.3'" in res.stdout
    assert "missing sections (not scored as 0): Chat Hard, Reasoning" in res.stdout
    # pairs 2, 4, 5 were never judged
    assert "errors: 3 items not scored (0 failed requests, 3 missing)" in res.stdout


def test_evaluate_human_output_and_run_directory_input(tmp_path: Path, rule_judge) -> None:
    from ste_core.evaluation.pairs_io import read_pairs
    from ste_core.run.io import write_jsonl

    run = tmp_path / "runs" / "r"
    write_jsonl(run / "eval_pairs.jsonl", read_pairs(write_pairs_file(tmp_path / "rb.jsonl")).pairs)
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(run),
            "--backend",
            "rulejudge",
            "--model",
            "rule-1",
            "--template",
            "judge_short",
            "--out",
            str(tmp_path / "o"),
            "--max-error-rate",
            "0.2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "accuracy   75.0% [" in res.stdout
    assert "(95% Wilson over the 4 scored items; 1 error of 5 items (2 failed requests))" in (
        res.stdout
    )
    assert "model      rule-1  template judge_short" in res.stdout
    assert "weights 'current'" in res.stdout


def test_the_default_output_folder_is_one_per_evaluation(
    tmp_path: Path, rule_judge, monkeypatch
) -> None:
    """The same model on other pairs (or with other settings) never overwrites an earlier
    evaluation; the same command again reuses its folder."""
    monkeypatch.chdir(tmp_path)
    first = write_pairs_file(tmp_path / "rb.jsonl")
    second = tmp_path / "rb2.jsonl"
    second.write_text(first.read_text().replace("q1", "q1 again"))

    def folder(pairs: Path, *extra: str) -> Path:
        args = ["evaluate", str(pairs), "-b", "rulejudge", "-m", "rule-1", "--json", *extra]
        args += ["--max-error-rate", "0.2"]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        return Path(json.loads(res.stdout)["judgements_file"]).parent

    a, b = folder(first), folder(second)
    c, again = folder(first, "--orders", "single"), folder(first)
    assert len({a, b, c}) == 3 and again == a
    assert a.parent == b.parent == tmp_path / "ste-eval" / "rule-1"
    assert a.name.startswith("rb-") and b.name.startswith("rb2-")
