"""PPE, Preference Proxy Evaluations (Frick et al., 2024): human preference and correctness.

Two kinds of official rows, told apart by their columns:

* human preference (`lmarena-ai/PPE-Human-Preference-V1`): ``question_id, prompt, response_1,
  response_2, winner`` (``model_a`` / ``model_b`` / ``tie`` / ``tie (bothbad)``), ``language``
  and boolean category columns (``hard_prompt``, ``math_prompt``, ``is_code``, ...). The winner
  becomes `chosen`, the other response `rejected`. **Ties are left out** of the accuracy (PPE
  measures agreement with a stated preference; a tie states none) and counted in the result.
* correctness (`lmarena-ai/PPE-MMLU-Pro-Best-of-K`, -MATH-, -GPQA-, -IFEval-, -MBPP-Plus-):
  ``question_id, model_name, prompt, response_1..response_K, scores`` (true / 1 = a correct
  response) and ``sampled_conflict_pairs`` (index pairs into the responses, 0 = response_1).
  A question has one row per answering model, so a comparison's id is
  ``<question_id>:<model_name>:<good>><bad>``. Each pair with different scores becomes one
  comparison, the correct response being `chosen`; a pair repeated within a row is judged once
  (counted in the warnings).

Figures: overall accuracy, per ``language``, per true boolean category column, and for
correctness rows per set: the ``benchmark`` or ``source`` column, else the set named in the
row's file path as the hub names it (``PPE-MATH-Best-of-K`` -> ``math``), else the file's
name. With several sets, ``correctness_mean_of_sets`` is the unweighted mean of their
accuracies. A run's frozen copy of the rows keeps each row's file (`base.ORIGIN_KEY`), so the
loop names the sets as `ste evaluate` does.

Source of the rules: the PPE paper (arXiv 2410.14872) and the datasets' cards. The official
code (github.com/lmarena/PPE, linked from the dataset cards) was not available to this port,
so no function is ported and the result says so; treat the figures as PPE-style pairwise
accuracies. A pair's two orders make one decision by `pair_rule`: ``consistent`` (default;
position-consistent accuracy, as J1 and EvalPlanner report PPE) or ``mean``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ste_core.errors import DataFileError
from ste_core.evaluation.benchmarks.base import (
    DEFAULT_MAX_ERROR_RATE,
    PairRule,
    Tally,
    as_list,
    collect_pairwise,
    error_gate,
    has_no_verdict,
    load_items,
    pair_status,
    require,
    two_order_score,
)
from ste_core.evaluation.stats import stratified_bootstrap
from ste_core.records import BenchmarkFigure, BenchmarkResult, Drop, Judgement, ResponsePair
from ste_core.run.io import OnError

NAME = "ppe"
RULE_VERSION = "ppe-paper-2410.14872 (pairwise accuracy, ties excluded; not a port)"
WINNERS = ("model_a", "model_b")
TIES = ("tie", "tie (bothbad)")


def comparability(pair_rule: PairRule) -> str:
    return (
        "Close to, but not verified against, PPE's published accuracies: the official scoring "
        "code was not available to port. Ties are excluded as PPE's accuracy does; the two "
        f"orders make one decision by the '{pair_rule}' rule."
    )


@dataclass(frozen=True)
class PPEItem:
    """One comparison: a human-preference row, or one conflict pair of a correctness row."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    categories: tuple[str, ...] = field(default=())
    correctness_set: str | None = None  # None: a human-preference comparison

    def pair(self) -> ResponsePair:
        return ResponsePair(
            id=self.id,
            instruction=self.prompt,
            chosen=self.chosen,
            rejected=self.rejected,
            subset=self.categories[0] if self.categories else None,
            metadata={"categories": list(self.categories)},
        )


@dataclass
class PPEFile:
    items: list[PPEItem]
    ties: int = 0  # human-preference rows left out as ties
    repeated: int = 0  # conflict pairs that repeat an earlier pair of their row, judged once


def _qid(row: dict[str, Any], n: int) -> str:
    qid = row.get("question_id", row.get("id"))
    if qid is None or isinstance(qid, bool):
        return f"row{n}"
    return str(qid)


def _flags(row: dict[str, Any]) -> list[str]:
    out = [f"language/{row['language']}"] if isinstance(row.get("language"), str) else []
    out += sorted(k for k, v in row.items() if isinstance(v, bool) and v)
    return out


def _human_item(row: dict[str, Any], qid: str) -> PPEItem | None:
    winner = require(row, "winner", str)
    if winner in TIES:
        return None
    if winner not in WINNERS:
        raise ValueError(f"'winner' must be one of {', '.join(WINNERS + TIES)}, got {winner!r}")
    first, second = require(row, "response_1", str), require(row, "response_2", str)
    chosen, rejected = (first, second) if winner == "model_a" else (second, first)
    return PPEItem(qid, require(row, "prompt", str), chosen, rejected, tuple(_flags(row)))


_HUB_SET = re.compile(r"PPE-([^/]+?)-Best-of-K", re.IGNORECASE)  # within one path part


def set_name(row: dict[str, Any], origin: str) -> str:
    """A correctness row's set: its `benchmark` / `source` column, else the set in its file's
    path as the hub names it (`.../PPE-MMLU-Pro-Best-of-K/...` -> ``mmlu-pro``), else the
    file's name without suffix."""
    name = row.get("benchmark", row.get("source"))
    if isinstance(name, str) and name:
        return name
    found = _HUB_SET.findall(origin)
    return found[-1].lower() if found else PurePosixPath(origin).stem


def _correctness_items(row: dict[str, Any], qid: str, group: str) -> tuple[list[PPEItem], int]:
    """The row's conflict pairs, and how many repeated an earlier pair of the row."""
    prompt = require(row, "prompt", str)
    responses: list[str] = []
    while f"response_{len(responses) + 1}" in row:
        responses.append(require(row, f"response_{len(responses) + 1}", str))
    scores = as_list(row.get("scores"))
    pairs = as_list(row.get("sampled_conflict_pairs"))
    if not isinstance(scores, list) or len(scores) != len(responses):
        raise ValueError(f"'scores' must list one score per response ({len(responses)})")
    if not all(isinstance(x, int | float) for x in scores):
        raise ValueError("'scores' must be numbers or booleans (true / 1 = a correct response)")
    if not isinstance(pairs, list):
        raise ValueError("'sampled_conflict_pairs' must be a list of [i, j] index pairs")
    # The correctness sets answer each question with several models, one row per model: the
    # comparison id names the model so that those rows' pairs stay apart.
    model = row.get("model_name")
    prefix = f"{qid}:{model}" if isinstance(model, str) and model else qid
    out: list[PPEItem] = []
    seen: set[tuple[int, int]] = set()
    repeated = 0
    for pair in pairs:
        pair = as_list(pair)
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x < len(responses)
                for x in pair
            )
        ):
            raise ValueError(f"conflict pair {pair!r} is not two response indices")
        i, j = int(pair[0]), int(pair[1])
        if scores[i] == scores[j]:
            continue  # not a conflict: nothing to prefer
        good, bad = (i, j) if scores[i] > scores[j] else (j, i)
        if (good, bad) in seen:
            repeated += 1  # the same comparison judged once, counted once
            continue
        seen.add((good, bad))
        out.append(
            PPEItem(
                f"{prefix}:{good}>{bad}",
                prompt,
                responses[good],
                responses[bad],
                (group,),
                correctness_set=group,
            )
        )
    return out, repeated


def load(path: str | Path, *, on_error: OnError = "raise") -> tuple[PPEFile, Any]:
    counter = {"ties": 0, "row": 0, "repeated": 0}

    def parse(row: dict[str, Any], origin: str) -> list[PPEItem]:
        counter["row"] += 1
        qid = _qid(row, counter["row"])
        if "winner" in row:
            item = _human_item(row, qid)
            if item is None:
                counter["ties"] += 1
                return []
            return [item]
        if "scores" in row:
            items, repeated = _correctness_items(row, qid, set_name(row, origin))
            counter["repeated"] += repeated
            return items
        raise ValueError("needs 'winner' (human preference) or 'scores' (correctness)")

    groups, src = load_items(path, parse, lambda _: None, on_error=on_error, with_origin=True)
    items = [i for g in groups for i in g]
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise DataFileError(
                f"{src.path}: two comparisons share the id {it.id!r} (two rows with the same "
                "question_id and model_name?)"
            )
        seen.add(it.id)
    if not items:
        raise DataFileError(f"{src.path}: no comparison to score ({counter['ties']} tie rows)")
    return PPEFile(items=items, ties=counter["ties"], repeated=counter["repeated"]), src


def score(
    file: PPEFile,
    records: Iterable[Judgement | Drop],
    *,
    pair_rule: PairRule = "consistent",
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    seed: int = 0,
    confidence: float = 0.95,
) -> BenchmarkResult:
    items = file.items
    got = collect_pairwise(records, {i.id for i in items})
    overall = Tally()
    groups: dict[str, Tally] = {}
    item_scores: dict[str, float] = {}
    for it in items:
        tallies = [overall] + [groups.setdefault(c, Tally()) for c in it.categories]
        status = pair_status(it.id, got)
        for t in tallies:
            t.errors += status == "error"
            t.missing += status == "missing"
        if status is not None:
            continue
        v = got.verdicts[it.id]
        item_scores[it.id] = two_order_score(v, pair_rule)
        for t in tallies:
            t.add(
                item_scores[it.id],
                parse_failure=has_no_verdict(v),
                mean=two_order_score(v, "mean"),
                consistent=two_order_score(v, "consistent"),
            )
    head = overall.figure(seed=seed, confidence=confidence)
    rate, refused = error_gate(len(items), overall.errors, overall.missing, max_error_rate)
    extra = {
        "overall": head,
        "order_mean": overall.figure("mean", seed=seed, confidence=confidence),
        "position_consistent": overall.figure("consistent", seed=seed, confidence=confidence),
    }
    sets = sorted({i.correctness_set for i in items if i.correctness_set is not None})
    human_rows = bool(file.ties) or any(i.correctness_set is None for i in items)
    if len(sets) > 1:
        extra["correctness_mean_of_sets"] = _mean_of_sets(
            {name: groups[name] for name in sets}, seed=seed, confidence=confidence
        )
    unscored = [name for name in sets if not groups[name].scores]
    warnings = [f"{file.ties} tie row(s) left out (no stated preference)"] * bool(file.ties)
    if unscored and len(unscored) < len(sets):
        warnings.append(
            f"correctness set(s) without a scored comparison: {', '.join(unscored)}; the mean "
            "of sets covers the others only"
        )
    if file.repeated:
        warnings.append(
            f"{file.repeated} conflict pair(s) repeating an earlier pair of their row were "
            "judged and counted once"
        )
    if got.unknown:
        warnings.append(f"{got.unknown} judgement(s) of pairs not in the file were ignored")
    return BenchmarkResult(
        benchmark=NAME,
        rule_version=f"{RULE_VERSION}; pair rule {pair_rule}",
        comparability=comparability(pair_rule),
        headline_name=(
            "pairwise accuracy (ties excluded)"
            if human_rows
            else "pairwise accuracy (correct vs incorrect responses)"
        ),
        headline=None if refused else head.value,
        headline_ci=None if refused else head.ci,
        refused=refused,
        figures={c: t.figure(seed=seed, confidence=confidence) for c, t in sorted(groups.items())},
        extra=extra,
        n_items=len(items),
        error_count=overall.errors,
        missing_count=overall.missing,
        parse_failures=overall.parse_failures,
        error_rate=rate,
        max_error_rate=max_error_rate,
        seed=seed,
        judge_models=got.judge_models,
        warnings=warnings,
        item_scores=item_scores,
    )


def _mean_of_sets(tallies: dict[str, Tally], *, seed: int, confidence: float) -> BenchmarkFigure:
    """The unweighted mean of the correctness sets' accuracies (each set counts the same
    however many conflict pairs it has), with a bootstrap that resamples within each set."""
    present = {name: t.scores for name, t in tallies.items() if t.scores}
    counts = {
        "errors": sum(t.errors for t in tallies.values()),
        "missing": sum(t.missing for t in tallies.values()),
        "parse_failures": sum(t.parse_failures for t in tallies.values()),
    }
    n = sum(len(xs) for xs in present.values())
    if not present:
        return BenchmarkFigure(value=None, n=0, **counts)

    def statistic(means: dict[str, float]) -> dict[str, float]:
        return {"mean": sum(means.values()) / len(means)}

    ci = stratified_bootstrap(present, statistic, seed=seed, confidence=confidence)["mean"]
    value = sum(sum(xs) / len(xs) for xs in present.values()) / len(present)
    return BenchmarkFigure(value=value, ci=ci, n=n, **counts)
