"""JudgeBench scoring against ScalerLab/JudgeBench @ e2c52c2 `utils/metrics.py`
(`compute_final_metrics`, ported below) and hand-computed fixtures."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from ste_core.evaluation.benchmarks import get_benchmark
from ste_core.evaluation.benchmarks.judgebench import JudgeBenchItem, score
from ste_core.records import Judgement, Order
from tests.core.evaluation.benchmarks.verdicts import AB, BA, fail, j, picks

# --- the official function, as upstream -------------------------------------------------------


def flip_judgment(decision):  # type: ignore[no-untyped-def]
    if decision == "A>B":
        decision = "B>A"
    elif decision == "B>A":
        decision = "A>B"
    return decision


def official_compute_final_metrics(pairs, reverse_order, include_fn=lambda x: x):  # type: ignore[no-untyped-def]
    pairs = [pair for pair in pairs if include_fn(pair)]
    n_pairs = len(pairs)
    n_correct = 0
    for pair in pairs:
        label = pair["label"]
        judgment1, judgment2 = pair["judgments"]
        decision1 = judgment1["decision"] if judgment1 is not None else None
        decision2 = flip_judgment(judgment2["decision"] if judgment2 is not None else None)
        counter = 0
        for decision in [decision1, decision2]:
            if decision == label:
                counter += 1
            elif decision == flip_judgment(label):
                counter -= 1
        if counter > 0:
            n_correct += 1
    return 100 * n_correct / n_pairs


# --- helpers ----------------------------------------------------------------------------------

VERDICT_OF = {"A>B": "A", "B>A": "B", "A=B": "tie", None: None}


def item(pid: str, label: str, source: str = "livebench-math") -> JudgeBenchItem:
    return JudgeBenchItem(pid, source, f"q {pid}", f"ra {pid}", f"rb {pid}", label)


def games(it: JudgeBenchItem, d1: str | None, d2: str | None) -> list[Judgement]:
    """Judgements from the official games' raw decisions: game 1 shows response_A first,
    game 2 response_B first (its decision is in its own frame, unflipped)."""
    game1 = AB if it.label == "A>B" else BA
    game2 = BA if game1 is AB else AB
    return [j(it.pair_id, game1, VERDICT_OF[d1]), j(it.pair_id, game2, VERDICT_OF[d2])]


def test_matches_the_official_two_game_metric() -> None:
    rng = random.Random(11)
    decisions = ["A>B", "B>A", "A=B", None]
    sources = ["mmlu-pro-law", "mmlu-pro-math", "livebench-reasoning", "livecodebench"]
    for _ in range(50):
        items, records, official = [], [], []
        for n in range(rng.randint(1, 30)):
            it = item(f"p{n}", rng.choice(["A>B", "B>A"]), rng.choice(sources))
            d1, d2 = rng.choice(decisions), rng.choice(decisions)
            items.append(it)
            records += games(it, d1, d2)
            official.append(
                {
                    "label": it.label,
                    "source": it.source,
                    "judgments": [{"decision": d1}, {"decision": d2}],
                }
            )
        res = score(items, records)
        assert res.headline == pytest.approx(official_compute_final_metrics(official, True) / 100)
        for prefix in ("mmlu-pro", "livebench-reasoning", "livecodebench"):
            if prefix in res.figures:
                expected = official_compute_final_metrics(
                    official, True, lambda x, p=prefix: x["source"].startswith(p)
                )
                assert res.figures[prefix].value == pytest.approx(expected / 100)


@pytest.mark.parametrize(
    ("first", "second", "counter", "consistent"),
    [
        ("chosen", "chosen", 1.0, 1.0),
        ("chosen", "tie", 1.0, 0.0),  # +1 + 0 > 0
        ("chosen", None, 1.0, 0.0),  # an unreadable game is no decision
        ("chosen", "rejected", 0.0, 0.0),  # +1 - 1 = 0
        ("tie", "tie", 0.0, 0.0),
        ("rejected", None, 0.0, 0.0),
    ],
)
def test_counter_and_position_consistency_by_hand(
    first: str, second: str | None, counter: float, consistent: float
) -> None:
    res = score([item("p", "A>B")], picks("p", first, second))
    assert res.headline == counter
    assert res.extra["position_consistent"].value == consistent
    assert res.parse_failures == int(None in (first, second))


def test_a_failed_game_is_counted_not_scored() -> None:
    a, b = item("a", "A>B", "mmlu-pro-law"), item("b", "B>A", "mmlu-pro-law")
    records = [*picks("a", "chosen", "chosen"), j("b", AB, "A"), fail("b", BA)]
    res = score([a, b], records, max_error_rate=0.5)
    fig = res.figures["mmlu-pro"]
    assert (fig.value, fig.n, fig.errors) == (1.0, 1, 1)
    assert res.headline == 1.0 and res.error_rate == 0.5
    refused = score([a, b], records)  # 50% > the default 10%
    assert refused.headline is None and refused.refused


def test_a_pair_with_one_game_is_missing() -> None:
    res = score([item("a", "A>B")], [j("a", Order.AB, "A")])
    assert res.missing_count == 1 and res.figures["livebench-math"].n == 0


def test_official_file_loads(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"pair_id": "x1", "original_id": 3, "source": "mmlu-pro-law", "question": "q",
         "response_model": "m", "response_A": "a", "response_B": "b", "label": "B>A"},
    ]  # fmt: skip
    path = tmp_path / "jb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loaded = get_benchmark("judgebench").load(path)
    (pair,) = loaded.pairs
    assert (pair.id, pair.chosen, pair.rejected, pair.subset) == ("x1", "b", "a", "mmlu-pro-law")
