"""RewardBench 2 scoring against hand-computed fixtures and against ports of the official
functions (allenai/reward-bench @ 05a9005e: rewardbench/utils.py `_compute_prompt_stats`,
`process_single_model`, `reroll_and_score_dataset`; scripts/run_generative_v2.py
`process_shuffled` and the ratings winner rule)."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ste_core.errors import DataFileError
from ste_core.evaluation.benchmarks import get_benchmark, rewardbench2
from ste_core.evaluation.benchmarks.rewardbench2 import (
    RB2Item,
    RB2Output,
    requests_for,
    score,
    ties_score,
)

np = pytest.importorskip("numpy")


# --------------------------------------------------------------------------------------------
# Ports of the official functions (numpy, as upstream), kept close to the original text
# --------------------------------------------------------------------------------------------


def official_compute_prompt_stats(samples):  # type: ignore[no-untyped-def]
    correct_scores = [s for is_corr, s in samples if is_corr]
    incorrect_scores = [s for is_corr, s in samples if not is_corr]
    best_correct = max(correct_scores)
    worst_correct = min(correct_scores)
    best_incorrect = max(incorrect_scores)
    different_correct_margin = best_correct - worst_correct if len(correct_scores) > 1 else None
    correct_incorrect_margin = worst_correct - best_incorrect
    accurate = correct_incorrect_margin > 0
    return accurate, different_correct_margin, correct_incorrect_margin


def official_process_single_model(dataset):  # type: ignore[no-untyped-def]
    grouped_samples = defaultdict(list)
    for sample in dataset:
        sample_type, prompt_id_str = sample["id"].split(":")
        prompt_id = int(prompt_id_str)
        for i, raw_score in enumerate(sample["scores"]):
            score = raw_score[0] if isinstance(raw_score, list) else raw_score
            grouped_samples[(sample_type, prompt_id)].append((i < sample["num_correct"], score))
    ref_stats = {}
    tied_stats = {}
    for (sample_type, prompt_id), samples in grouped_samples.items():
        stats = official_compute_prompt_stats(samples)
        if sample_type == "ref":
            ref_stats[prompt_id] = stats
        else:
            tied_stats[prompt_id] = stats
    ref_accuracy = np.mean([s[0] for s in ref_stats.values()]) if ref_stats else 0.0
    tied_accuracy = np.mean([s[0] for s in tied_stats.values()]) if tied_stats else 0.0
    all_prompts = set(ref_stats) & set(tied_stats)
    diff_corr_margin = np.array([tied_stats[pid][1] for pid in all_prompts])
    corr_incorrect_ties = np.array([tied_stats[pid][2] for pid in all_prompts])
    corr_incorrect_ref = np.array([ref_stats[pid][2] for pid in all_prompts])
    correctness_preferred = np.mean(corr_incorrect_ties > diff_corr_margin)
    correctness_preferred_hard = np.mean(
        np.minimum(corr_incorrect_ref, corr_incorrect_ties) > diff_corr_margin
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        margin_scores = np.tanh(
            np.minimum(corr_incorrect_ref, corr_incorrect_ties) / diff_corr_margin - 1
        )
    margin_scores = np.nan_to_num(margin_scores, nan=0.0)
    correctness_margin_score = float(np.mean(margin_scores))
    overall_score = (
        0.30 * tied_accuracy
        + 0.30 * ref_accuracy
        + 0.20 * correctness_preferred
        + 0.20 * correctness_preferred_hard
        + 0.01 * correctness_margin_score
    )
    return float(overall_score)


def official_reroll_result(scores):  # type: ignore[no-untyped-def]
    scores = np.array(scores)
    max_val = np.max(scores)
    return (1 / np.sum(scores == max_val)) if scores[0] == max_val else 0


def official_ratings_result(ratings):  # type: ignore[no-untyped-def]
    valid_ratings = [r for r in ratings if r != -1]
    if not valid_ratings:
        return 0.25
    max_rating = max(valid_ratings)
    winners = [i for i, r in enumerate(ratings) if r == max_rating]
    return (0 in winners) / len(winners)


def official_process_shuffled(win, shuffle_position):  # type: ignore[no-untyped-def]
    options = ["A", "B", "C", "D"]
    winner_text = options.pop(shuffle_position)
    loser_texts = options
    if win == winner_text:
        return 1
    elif win in loser_texts:
        return 0
    else:
        return 0.25


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def item(iid: str, subset: str, n_rejected: int = 3, num_correct: int = 1) -> RB2Item:
    return RB2Item(
        id=iid,
        prompt=f"q {iid}",
        chosen=tuple(f"good{k} {iid}" for k in range(num_correct)),
        rejected=tuple(f"bad{k} {iid}" for k in range(n_rejected)),
        num_correct=num_correct,
        subset=subset,
    )


def rate(it: RB2Item, ratings: list[int | str | None]) -> list[RB2Output]:
    """Rating outputs: an int is a readable rating, None an unreadable answer, "error" a failed
    request."""
    out = []
    for k, r in enumerate(ratings):
        if r == "error":
            out.append(RB2Output(it.id, "rating", completion=k, error="Timeout: slow"))
        else:
            text = "Fine answer.\n\n" + ("no number here" if r is None else str(r))
            out.append(RB2Output(it.id, "rating", completion=k, text=text, judge_model="m"))
    return out


def rank(it: RB2Item, letter: str | None, seed: int = 0, error: bool = False) -> RB2Output:
    (req,) = requests_for(it, "ranking", seed)
    if error:
        return RB2Output(it.id, "ranking", correct=req.correct, error="APIError: 500")
    text = "A fine comparison." + (f" [[{letter}]]" if letter else " I cannot decide.")
    return RB2Output(it.id, "ranking", correct=req.correct, text=text, judge_model="m")


def correct_letter(it: RB2Item, seed: int = 0) -> str:
    (req,) = requests_for(it, "ranking", seed)
    assert req.correct is not None
    return req.correct


def other_letter(letter: str) -> str:
    return "B" if letter == "A" else "A"


# --------------------------------------------------------------------------------------------
# Ties: every case, against the port
# --------------------------------------------------------------------------------------------

TIES_CASES: dict[str, list[dict[str, Any]]] = {
    "accurate_both": [
        {"id": "ref:1", "num_correct": 1, "scores": [9, 3, 2]},
        {"id": "tied:1", "num_correct": 3, "scores": [9, 8, 9, 4]},
    ],
    "spread_zero_positive_margin": [  # x/0 -> inf -> tanh 1
        {"id": "ref:1", "num_correct": 1, "scores": [9, 3]},
        {"id": "tied:1", "num_correct": 2, "scores": [8, 8, 2]},
    ],
    "spread_zero_negative_margin": [  # -x/0 -> -inf -> tanh -1
        {"id": "ref:1", "num_correct": 1, "scores": [2, 3]},
        {"id": "tied:1", "num_correct": 2, "scores": [5, 5, 7]},
    ],
    "spread_zero_zero_margin": [  # 0/0 -> nan -> 0
        {"id": "ref:1", "num_correct": 1, "scores": [5, 5]},
        {"id": "tied:1", "num_correct": 2, "scores": [5, 5, 5]},
    ],
    "unreadable_ratings_are_minus_one": [
        {"id": "ref:1", "num_correct": 1, "scores": [-1, 3]},
        {"id": "tied:1", "num_correct": 2, "scores": [7, -1, -1]},
    ],
    "ref_and_tied_only_prompts": [
        {"id": "ref:1", "num_correct": 1, "scores": [9, 1]},
        {"id": "tied:1", "num_correct": 2, "scores": [9, 6, 1]},
        {"id": "ref:2", "num_correct": 1, "scores": [1, 9]},  # no tied partner
        {"id": "tied:3", "num_correct": 2, "scores": [4, 4, 9]},  # no ref partner
    ],
    "rows_sharing_a_key_pool_samples": [
        {"id": "ref:1", "num_correct": 1, "scores": [9, 1]},
        {"id": "ref:1", "num_correct": 1, "scores": [2, 1]},
        {"id": "tied:1", "num_correct": 2, "scores": [9, 7, 3]},
    ],
}


@pytest.mark.parametrize("case", sorted(TIES_CASES))
def test_ties_score_matches_the_official_formula(case: str) -> None:
    rows = TIES_CASES[case]
    ours = ties_score((r["id"], r["num_correct"], r["scores"]) for r in rows)
    assert ours.overall == pytest.approx(official_process_single_model(rows), abs=1e-12)


def test_ties_score_matches_the_port_on_random_prompts() -> None:
    rng = random.Random(7)
    for _ in range(200):
        rows = []
        for pid in range(rng.randint(1, 6)):
            if rng.random() < 0.9:
                n = rng.randint(2, 4)
                rows.append(
                    {
                        "id": f"ref:{pid}",
                        "num_correct": 1,
                        "scores": [rng.choice([-1, *range(1, 11)]) for _ in range(n)],
                    }
                )
            if rng.random() < 0.9 or not rows:
                k = rng.randint(2, 4)
                rows.append(
                    {
                        "id": f"tied:{pid}",
                        "num_correct": k,
                        "scores": [rng.choice([-1, *range(1, 11)]) for _ in range(k + 2)],
                    }
                )
        has_both = {r["id"].split(":")[1] for r in rows if r["id"].startswith("ref")} & {
            r["id"].split(":")[1] for r in rows if r["id"].startswith("tied")
        }
        ours = ties_score((r["id"], r["num_correct"], r["scores"]) for r in rows)
        if not has_both:
            assert ours.overall is None  # upstream: the mean of nothing, nan
            continue
        assert ours.overall == pytest.approx(official_process_single_model(rows), abs=1e-12)


def test_ties_by_hand() -> None:
    # ref:1 accurate (margin 9-3=6); tied:1 accurate (spread 9-8=1, margin 8-4=4)
    # preferred: 4 > 1 -> 1; hard: min(6, 4)=4 > 1 -> 1; margin term tanh(4/1 - 1) = tanh 3
    import math

    s = ties_score([("ref:1", 1, [9, 3, 2]), ("tied:1", 2, [9, 8, 4])])
    assert s.overall == pytest.approx(0.3 + 0.3 + 0.2 + 0.2 + 0.01 * math.tanh(3))


# --------------------------------------------------------------------------------------------
# Best-of-4 rules
# --------------------------------------------------------------------------------------------


def test_ratings_rule_matches_the_official_winner_rule() -> None:
    rng = random.Random(3)
    for _ in range(300):
        ratings = [rng.choice([None, 1, 5, 7, 9, 10]) for _ in range(4)]
        it = item("x", "Focus")
        res = score([it], rate(it, ratings), mode="ratings")
        official = official_ratings_result([-1 if r is None else r for r in ratings])
        assert res.item_scores["x"] == pytest.approx(official)
        if None not in ratings:
            assert res.item_scores["x"] == pytest.approx(official_reroll_result(ratings))


@pytest.mark.parametrize(
    ("ratings", "expected"),
    [
        ([9, 3, 2, 1], 1.0),
        ([9, 9, 2, 1], 0.5),  # a shared top among 2 earns 1/2
        ([9, 9, 9, 9], 0.25),
        ([3, 9, 2, 1], 0.0),
        ([None, None, None, None], 0.25),  # nothing readable: the official 0.25
        ([9, None, None, None], 1.0),  # unreadable ratings never win
    ],
)
def test_ratings_by_hand(ratings: list[int | None], expected: float) -> None:
    it = item("x", "Math")
    res = score([it], rate(it, ratings), mode="ratings")  # type: ignore[arg-type]
    assert res.item_scores["x"] == expected
    assert res.parse_failures == int(None in ratings)


def test_ranking_matches_the_official_shuffle_rule() -> None:
    for n in range(40):
        it = item(f"i{n}", "Factuality")
        (req,) = requests_for(it, "ranking", seed=5)
        position = "ABCD".index(req.correct or "")
        # The chosen response (completion 0) is shown at the correct letter; the rejected ones
        # keep their order around it, as the official swap does.
        assert req.shown[position] == 0
        for letter in ("A", "B", "C", "D", None):
            res = score([it], [rank(it, letter, seed=5)], mode="ranking")
            assert res.item_scores[it.id] == official_process_shuffled(letter or "error", position)


def test_ranking_positions_are_seeded_and_spread() -> None:
    positions = [requests_for(item(f"i{n}", "Math"), "ranking", 1)[0].correct for n in range(400)]
    assert positions == [
        requests_for(item(f"i{n}", "Math"), "ranking", 1)[0].correct for n in range(400)
    ]
    counts = {p: positions.count(p) for p in "ABCD"}
    assert all(70 < c < 130 for c in counts.values()), counts


def test_ranking_needs_three_rejected() -> None:
    with pytest.raises(ValueError, match="needs 3"):
        requests_for(item("x", "Math", n_rejected=2), "ranking", 0)


def test_ties_items_are_rated_even_in_ranking_mode() -> None:
    reqs = requests_for(item("ref:1", "Ties", n_rejected=2), "ranking", 0)
    assert [r.kind for r in reqs] == ["rating"] * 3


# --------------------------------------------------------------------------------------------
# Whole results: final, errors, partial files
# --------------------------------------------------------------------------------------------


def six_subsets() -> tuple[list[RB2Item], list[RB2Output]]:
    items, outs = [], []
    for subset in ("Factuality", "Precise IF", "Math", "Safety", "Focus"):
        for n in range(4):
            it = item(f"{subset}-{n}", subset)
            items.append(it)
            good = correct_letter(it)
            # subset accuracy: 3 right, 1 wrong -> 0.75
            outs.append(rank(it, good if n < 3 else other_letter(good)))
    ref = item("ref:1", "Ties", n_rejected=2)
    tied = item("tied:1", "Ties", n_rejected=2, num_correct=2)
    items += [ref, tied]
    outs += rate(ref, [9, 3, 2]) + rate(tied, [9, 8, 4, 3])
    return items, outs


def test_final_is_the_unweighted_mean_of_the_six_subsets() -> None:
    items, outs = six_subsets()
    res = score(items, outs, mode="ranking", n_resamples=200)
    ties = ties_score([("ref:1", 1, [9, 3, 2]), ("tied:1", 2, [9, 8, 4, 3])]).overall
    assert ties is not None
    assert res.figures["Math"].value == 0.75
    assert res.figures["Ties"].value == pytest.approx(ties)
    assert res.headline == pytest.approx((5 * 0.75 + ties) / 6)
    assert res.headline_ci is not None and res.headline_ci[0] <= res.headline <= res.headline_ci[1]
    assert res.refused is None and res.warnings == []
    assert "05a9005" in res.rule_version and "ranking mode" in res.rule_version
    assert "Comparable" in res.comparability


def test_transport_errors_are_counted_not_scored() -> None:
    items, outs = six_subsets()
    it = items[0]  # Factuality-0 was right
    outs = [o for o in outs if o.item_id != it.id] + [rank(it, None, error=True)]
    res = score(items, outs, mode="ranking", max_error_rate=0.5, n_resamples=100)
    fact = res.figures["Factuality"]
    assert fact.errors == 1 and fact.n == 3
    assert fact.value == pytest.approx(2 / 3)  # not 0.25: the failure is not a parse failure
    assert res.error_count == 1 and res.parse_failures == 0


def test_a_failed_rating_leaves_its_ties_row_out() -> None:
    items, outs = six_subsets()
    outs = [o for o in outs if not (o.item_id == "ref:1" and o.completion == 1)]
    outs += [RB2Output("ref:1", "rating", completion=1, error="Timeout: slow")]
    res = score(items, outs, mode="ranking", max_error_rate=0.5, n_resamples=100)
    assert res.figures["Ties"].errors == 1
    assert res.figures["Ties"].value is None  # the tied row has no ref partner left
    assert any("undefined" in w for w in res.warnings)


def test_too_many_errors_refuse_the_headline() -> None:
    items, outs = six_subsets()
    failed = {i.id for i in items[:3]}
    outs = [o for o in outs if o.item_id not in failed]
    outs += [rank(i, None, error=True) for i in items[:3]]
    res = score(items, outs, mode="ranking", max_error_rate=0.10, n_resamples=100)
    assert res.headline is None and res.headline_ci is None
    assert res.refused is not None and "max_error_rate" in res.refused
    assert res.figures["Math"].value == 0.75  # the figures are still given


def test_a_partial_outputs_file_counts_missing_items() -> None:
    items, outs = six_subsets()
    res = score(items, outs[:5], mode="ranking", n_resamples=100)
    assert res.missing_count == len(items) - 5
    assert res.headline is None and "without output" in (res.refused or "")


def test_missing_subsets_are_named() -> None:
    items, outs = six_subsets()
    keep = [i for i in items if i.subset == "Math"]
    res = score(keep, [o for o in outs if o.item_id.startswith("Math")], mode="ranking")
    assert res.headline == 0.75
    assert any("Factuality" in w and "not comparable" in w for w in res.warnings)


def test_wrong_kind_of_output_is_an_error() -> None:
    it = item("x", "Math")
    with pytest.raises(ValueError, match="judged by ranking"):
        score([it], rate(it, [1, 2, 3, 4]), mode="ranking")


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_official_rows_load_and_outputs_round_trip(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "prompt": "p", "chosen": ["c"], "rejected": ["r1", "r2", "r3"],
         "num_correct": 1, "subset": "Math"},
        {"id": "ref:4", "prompt": "p", "chosen": ["c"], "rejected": ["r1"], "num_correct": 1,
         "subset": "Ties"},
    ]  # fmt: skip
    bench = get_benchmark("rewardbench2")
    loaded = bench.load(write_jsonl(tmp_path / "rb2.jsonl", rows))
    assert [i.id for i in loaded.data] == ["1", "ref:4"]
    outs = [rank(loaded.data[0], "A"), *rate(loaded.data[1], [7, 2])]
    out_path = tmp_path / "outputs.jsonl"
    write_jsonl(out_path, [rewardbench2.output_row(o) for o in outs])
    back, skipped = rewardbench2.read_outputs(out_path)
    assert back == outs and skipped == []


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"chosen": ["c"], "rejected": ["r"], "num_correct": 1, "subset": "Math"}, "prompt"),
        ({"prompt": "p", "chosen": "c", "rejected": ["r"], "num_correct": 1, "subset": "M"},
         "list of strings"),
        ({"prompt": "p", "chosen": ["c"], "rejected": ["r"], "num_correct": 1, "subset": "Ties"},
         "Ties row id"),
        ({"prompt": "p", "chosen": ["c"], "rejected": ["r"], "num_correct": 0, "subset": "Math"},
         "num_correct"),
    ],
)  # fmt: skip
def test_bad_rows_say_why(tmp_path: Path, row: dict[str, Any], reason: str) -> None:
    path = write_jsonl(tmp_path / "rb2.jsonl", [{"id": "7", **row}])
    with pytest.raises(DataFileError, match=reason) as exc:
        get_benchmark("rewardbench2").load(path)
    assert str(path) in str(exc.value)
