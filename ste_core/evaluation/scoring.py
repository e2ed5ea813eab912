"""Turn judgements of labelled pairs into scores: accuracy with an interval, per subset,
RewardBench sections, position consistency and bias, and per-item scores for paired tests.

Conventions (RewardBench's): a judgement that picks `chosen` scores 1, one that picks
`rejected` scores 0; a tie or an answer without a usable verdict (a parse failure: the model
answered) scores 0.5. A failed request (a `Drop`) is not an answer and never a score: its
sample abstains, and an order left with no answered sample, or never judged, makes its item an
error. Errors are left out of the accuracy and counted beside it (`error_count`,
`request_errors`, `missing_count`); above `max_error_rate` of the items there is no accuracy at
all (`ste_core.evaluation.headline`).

Order modes:

* ``single``: each item was shown in one order (a seeded random swap, see `single_order`). An
  item with judgements in both orders is an error in this mode (use ``both``).
* ``both``: each item was shown in both orders; its score is the mean of the two orders, so a
  position-inconsistent item (right in one order, wrong in the other) scores 0.5. Both orders
  must be answered: one order alone would carry the judge's position bias.

With k samples per order, an order's score is the mean of its samples' scores, or with
``majority=True`` the score of the majority verdict (votes among A / B / tie; a shared top count
is a tie; samples without a verdict and failures abstain).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ste_core.evaluation import rewardbench as rb
from ste_core.evaluation.headline import DEFAULT_MAX_ERROR_RATE, headline_allowed
from ste_core.evaluation.stats import (
    DEFAULT_RESAMPLES,
    stratified_bootstrap,
    wilson_interval,
)
from ste_core.records import (
    Drop,
    EvalScore,
    Judgement,
    Order,
    ResponsePair,
    RewardBenchScore,
    SectionScore,
    SubsetScore,
    content_hash,
)
from ste_core.records.scores import Mode


def single_order(pair_id: str, seed: int) -> Order:
    """The order in which `single` mode shows `pair_id`: a seeded, reproducible coin flip.

    It depends only on (seed, pair id), not on file order, so the same item gets the same order
    in every run with the same seed.
    """
    flip = int(content_hash("single-order", seed, pair_id)[:8], 16) % 2
    return Order.BA if flip else Order.AB


# --------------------------------------------------------------------------------------------


def _pick_score(verdict: str | None, order: Order) -> float:
    if verdict in ("A", "B"):
        return 1.0 if verdict == order.correct_verdict else 0.0
    return 0.5


def _majority(verdicts: Sequence[str | None]) -> str | None:
    votes = Counter(v for v in verdicts if v is not None)
    if not votes:
        return None
    ranked = votes.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return "tie"
    return ranked[0][0]


def _decision(verdict: str | None, order: Order) -> str | None:
    """Which response a verdict picked ("chosen"/"rejected"), None for tie / none."""
    if verdict not in ("A", "B"):
        return None
    return "chosen" if verdict == order.correct_verdict else "rejected"


def score_pairs(
    pairs: Iterable[ResponsePair],
    judgements: Iterable[Judgement | Drop],
    *,
    mode: Mode,
    majority: bool = False,
    weights: rb.WeightsVariant = "current",
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
) -> EvalScore:
    """Score `judgements` of labelled `pairs` (Judgements, and Drops for samples that failed).

    Raises ValueError for duplicate pair ids, duplicate (pair, order, sample) judgements, or (in
    single mode) a pair judged in both orders. Judgements of unknown pairs are counted in
    `warnings`; pairs without judgements are errors, counted in `missing_count`.
    """
    if mode not in ("single", "both"):
        raise ValueError(f"mode must be 'single' or 'both', got {mode!r}")
    weight_table = rb.weights_for(weights)
    pair_list = list(pairs)
    by_id: dict[str, ResponsePair] = {}
    for p in pair_list:
        if p.id in by_id:
            raise ValueError(f"duplicate pair id {p.id!r} in the pairs")
        by_id[p.id] = p

    # (pair_id, order) -> {sample_index: verdict | "error"}
    outcomes: dict[tuple[str, Order], dict[int, str | None]] = {}
    unknown: Counter[str] = Counter()
    n_judgements = n_failures = n_none = n_tie = n_a = n_b = 0
    first_error: str | None = None
    models: list[str] = []
    templates: list[str] = []
    for rec in judgements:
        pair_id, order, k = rec.sample
        if pair_id not in by_id:
            unknown[pair_id] += 1
            continue
        slot = outcomes.setdefault((pair_id, order), {})
        if k in slot:
            raise ValueError(
                f"duplicate judgement for pair {pair_id!r}, order {order.value}, sample {k}"
            )
        if not isinstance(rec, Judgement):  # a Drop: no judgement was made, it abstains
            n_failures += 1
            first_error = first_error or f"{rec.error_type or 'Error'}: {rec.message}"
            slot[k] = "error"
            continue
        n_judgements += 1
        v = rec.verdict
        slot[k] = v
        if v is None:
            n_none += 1
        elif v == "tie":
            n_tie += 1
        elif v == "A":
            n_a += 1
        else:
            n_b += 1
        if rec.judge_model not in models:
            models.append(rec.judge_model)
        if rec.template not in templates:
            templates.append(rec.template)

    warnings: list[str] = []
    if unknown:
        warnings.append(
            f"{sum(unknown.values())} judgement(s) of {len(unknown)} pair id(s) not in the pairs "
            f"were ignored (e.g. {next(iter(unknown))!r})"
        )

    item_scores: dict[str, float] = {}
    errored: set[str] = set()
    missing = 0
    comparable = consistent = 0
    samples_per_order = 1
    for p in pair_list:
        present: list[Order | None] = [o for o in (Order.AB, Order.BA) if (p.id, o) in outcomes]
        if mode == "single":
            if len(present) > 1:
                raise ValueError(
                    f"pair {p.id!r} has judgements in both orders; score it with mode='both'"
                )
            orders = present or [None]  # None: never judged, a missing order
        else:
            orders = [Order.AB, Order.BA]
        order_scores: list[float] = []
        decisions: dict[Order, dict[int, str | None]] = {}
        for o in orders:
            got = outcomes.get((p.id, o)) if o is not None else None
            if not got or o is None:
                missing += 1
                errored.add(p.id)
                continue
            samples_per_order = max(samples_per_order, len(got))
            # Failed samples abstain; an order with none answered cannot be scored.
            verdicts = {i: v for i, v in got.items() if v != "error"}
            if not verdicts:
                errored.add(p.id)
                continue
            if majority:
                mv = _majority(list(verdicts.values()))
                order_scores.append(_pick_score(mv, o))
                decisions[o] = {0: _decision(mv, o)}
            else:
                order_scores.append(
                    sum(_pick_score(v, o) for v in verdicts.values()) / len(verdicts)
                )
                decisions[o] = {i: _decision(v, o) for i, v in verdicts.items()}
        if p.id not in errored:
            item_scores[p.id] = sum(order_scores) / len(order_scores)
        if mode == "both" and len(decisions) == 2:
            for i, d_ab in decisions[Order.AB].items():
                d_ba = decisions[Order.BA].get(i)
                if d_ab is not None and d_ba is not None:
                    comparable += 1
                    consistent += d_ab == d_ba

    n_items = len(pair_list)
    n_scored = len(item_scores)
    headline = headline_allowed(len(errored), n_items, max_error_rate)
    total = sum(item_scores.values())
    accuracy = total / n_scored if headline else None
    lo, hi = wilson_interval(total, n_scored, confidence) if headline else (None, None)

    # Per subset, over its scored items (pairs without a subset only count overall).
    by_subset: dict[str, list[float]] = {}
    subset_errors: Counter[str] = Counter()
    for p in pair_list:
        if p.subset is None:
            continue
        if p.id in item_scores:
            by_subset.setdefault(p.subset, []).append(item_scores[p.id])
        else:
            subset_errors[p.subset] += 1
    if not headline:
        by_subset = {}
    per_subset = {
        s: SubsetScore(
            accuracy=sum(xs) / len(xs),
            n=len(xs),
            ci=wilson_interval(sum(xs), len(xs), confidence),
            errors=subset_errors[s],
        )
        for s, xs in by_subset.items()
    }
    lost = sorted(s for s in subset_errors if s not in by_subset)
    if headline and lost:
        warnings.append(
            f"subsets with no item scored (every request failed): {', '.join(lost)}; they "
            "count as missing, not as 0"
        )

    rewardbench = _rewardbench(
        by_subset, weight_table, weights, seed=seed, n_resamples=n_resamples, confidence=confidence
    )
    small = sorted(s for s, xs in by_subset.items() if rb.is_rewardbench_subset(s) and len(xs) < 10)
    if small:
        warnings.append(
            f"RewardBench subsets with fewer than 10 items ({', '.join(small)}): the bootstrap "
            "intervals of their sections understate the uncertainty"
        )

    return EvalScore(
        accuracy=accuracy,
        ci_low=lo,
        ci_high=hi,
        n_items=n_items,
        n_scored=n_scored,
        n_judgements=n_judgements,
        mode=mode,
        majority=majority,
        samples_per_order=samples_per_order,
        seed=seed,
        position_consistency=(consistent / comparable) if comparable else None,
        n_position_comparable=comparable,
        no_verdict_rate=n_none / n_judgements if n_judgements else 0.0,
        no_verdict_count=n_none,
        tie_rate=n_tie / n_judgements if n_judgements else 0.0,
        error_count=len(errored),
        request_errors=n_failures,
        missing_count=missing,
        first_error=first_error,
        max_error_rate=max_error_rate,
        a_verdict_share=n_a / (n_a + n_b) if (n_a + n_b) else None,
        per_subset=per_subset,
        rewardbench=rewardbench,
        item_scores=item_scores,
        judge_models=models,
        templates=templates,
        warnings=warnings,
    )


def _rewardbench(
    by_subset: dict[str, list[float]],
    weight_table: dict[str, int],
    variant: str,
    *,
    seed: int,
    n_resamples: int,
    confidence: float,
) -> RewardBenchScore | None:
    rb_subsets = {s: xs for s, xs in by_subset.items() if rb.is_rewardbench_subset(s)}
    if not rb_subsets:
        return None
    acc = {s: sum(xs) / len(xs) for s, xs in rb_subsets.items()}
    sections, missing_sections = rb.section_scores(acc, weight_table)
    final = rb.final_score(sections)

    def statistic(means: dict[str, float]) -> dict[str, float]:
        secs, _ = rb.section_scores(means, weight_table)
        out = dict(secs)
        f = rb.final_score(secs)
        if f is not None:
            out["__final__"] = f
        return out

    cis = stratified_bootstrap(
        rb_subsets, statistic, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
    section_records = {
        name: SectionScore(
            score=score,
            ci=cis[name],
            subsets=[s for s in rb.SECTIONS[name] if s in acc],
            missing_subsets=[s for s in rb.SECTIONS[name] if s not in acc],
        )
        for name, score in sections.items()
    }
    return RewardBenchScore(
        weights=variant,
        weights_description=rb.WEIGHTS_DESCRIPTION[variant],
        sections=section_records,
        final=final,
        final_ci=cis.get("__final__"),
        missing_sections=missing_sections,
        other_subsets=sorted(s for s in by_subset if not rb.is_rewardbench_subset(s)),
    )
