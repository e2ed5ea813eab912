"""The viewer's data layer (ste_core.view.data), called directly on a real run's files."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from ste_core.engine.store import RunStore
from ste_core.records import Drop, Judgement, Order, ResponsePair
from ste_core.run.io import read_rows
from ste_core.stages.judge import read_judgements
from ste_core.view import data as view_data
from ste_core.view.data import ItemQuery, RunView, ViewError


def _judged(path: Path) -> dict[str, list[Judgement | Drop]]:
    out: dict[str, list[Judgement | Drop]] = {}
    for rec in read_judgements(path):
        out.setdefault(rec.sample[0], []).append(rec)
    return out


def _all(view: RunView, **query) -> list[dict]:
    page = view.items(ItemQuery(limit=500, **query))
    assert page["total"] == len(page["items"])
    return page["items"]


def test_sets_name_every_judged_file(built_run: Path) -> None:
    sets = {s["key"]: s for s in RunView(built_run).sets()}
    assert sets["eval"]["iterations"] == [0, 1, 2] and sets["eval"]["comparable"]
    assert sets["bench:rb"]["iterations"] == [0, 1, 2]
    assert sets["train"]["iterations"] == [1, 2] and not sets["train"]["comparable"]


def test_summary_is_the_stores_metrics(built_run: Path) -> None:
    summary = RunView(built_run).summary()
    with RunStore.open_read_only(built_run / "store.sqlite") as store:
        metrics, manifest = store.metrics(), store.manifest()
    assert manifest is not None
    assert summary["status"] == "succeeded"
    assert summary["cost_usd"]["total"] == manifest.cost_usd.total
    for it in summary["iterations"]:
        m = metrics[it["index"]]
        assert it["eval"]["accuracy"] == m.eval.accuracy
        assert (it["eval"]["ci_low"], it["eval"]["ci_high"]) == (m.eval.ci_low, m.eval.ci_high)
        assert "item_scores" not in it["eval"]  # 100k items would make every summary heavy
        assert it["benchmarks"]["rb"]["n_items"] == 6
        assert set(it["paired"]) == set(m.paired)
    assert summary["iterations"][1]["funnel"]["judged"] == metrics[1].funnel.judged


@pytest.mark.parametrize("iteration", [0, 2])
def test_filters_agree_with_the_judgements_file(built_run: Path, iteration: int) -> None:
    view = RunView(built_run)
    judged = _judged(built_run / f"iter_{iteration}" / "eval.jsonl")
    pair_ids = [p.id for p in read_rows(built_run / "eval_pairs.jsonl", ResponsePair)]

    def picks(pid: str) -> dict[tuple[Order, int], str | None]:
        out = {}
        for r in judged.get(pid, []):
            v = r.verdict if isinstance(r, Judgement) else None
            out[r.sample[1:]] = (
                None if v not in ("A", "B") else ("chosen" if r.correct else "rejected")
            )
        return out

    wrong = [pid for pid in pair_ids if "rejected" in picks(pid).values()]
    assert [i["id"] for i in _all(view, iteration=iteration, filters=("wrong",))] == wrong
    right = [i["id"] for i in _all(view, iteration=iteration, filters=("right",))]
    assert set(right).isdisjoint(wrong) and set(right) | set(wrong) <= set(pair_ids)
    inconsistent = [
        pid
        for pid in pair_ids
        if any(
            p is not None and picks(pid).get((Order.BA, k)) not in (None, p)
            for (o, k), p in picks(pid).items()
            if o is Order.AB
        )
    ]
    got = [i["id"] for i in _all(view, iteration=iteration, filters=("inconsistent",))]
    assert got == inconsistent
    assert wrong, "the scripted judge makes mistakes: the filter must have something to find"


def test_pages_cover_the_filtered_list_once(built_run: Path) -> None:
    view = RunView(built_run)
    full = [i["id"] for i in _all(view, set="train", iteration=1)]
    paged: list[str] = []
    for offset in range(0, len(full) + 5, 5):
        page = view.items(ItemQuery(set="train", iteration=1, offset=offset, limit=5))
        assert page["total"] == len(full) and len(page["items"]) <= 5
        paged += [i["id"] for i in page["items"]]
    in_file = [p.id for p in read_rows(built_run / "iter_1/pairs.jsonl", ResponsePair)]
    assert paged == full == in_file


def test_train_pairs_carry_kept_orders_and_no_verdict(built_run: Path) -> None:
    view = RunView(built_run)
    selected: dict[str, set[str]] = {}
    only = {(True, False): " (SFT only)", (False, True): " (DPO only)"}
    for row in read_rows(built_run / "iter_2" / "selected.jsonl"):
        mark = only.get((row.get("for_sft", True), row.get("for_dpo", True)), "")
        selected.setdefault(row["pair_id"], set()).add(row["order"] + mark)
    kept = _all(view, set="train", iteration=2, filters=("kept",))
    assert {i["id"]: set(i["kept"]) for i in kept} == selected
    judged = _judged(built_run / "iter_2" / "judgements.jsonl")
    ties = [pid for pid, rs in judged.items() if any(getattr(r, "verdict", 0) == "tie" for r in rs)]
    assert [i["id"] for i in _all(view, set="train", iteration=2, filters=("tie",))] == [
        p for p in judged if p in ties
    ]
    assert len(kept[0]["verdicts"]) == 6  # 3 samples x 2 orders


def test_subset_and_search(built_run: Path) -> None:
    view = RunView(built_run)
    math = _all(view, set="bench:rb", iteration=1, subset="math-prm")
    assert [i["id"] for i in math] == ["1", "3", "5"]
    page = view.items(ItemQuery(set="bench:rb", iteration=1))
    assert page["subsets"] == ["math-prm", "refusals-dangerous"]
    # In a response (case-insensitive), and in the reasoning of the judge asked for only.
    assert [i["id"] for i in _all(view, set="bench:rb", iteration=1, search="8 IS PRIME")] == ["2"]
    first = json.loads((built_run / "iter_1" / "eval.jsonl").read_text().splitlines()[0])
    phrase = first["text"].splitlines()[-2]  # "Confidence: 0.xxxx." : one judgement's own
    found = [i["id"] for i in _all(view, iteration=1, search=phrase)]
    assert first["pair_id"] in found
    assert _all(view, iteration=1, search="no such text anywhere") == []
    # A query JSON escapes (a quote) still searches the decoded text.
    assert _all(view, set="bench:rb", iteration=1, search='"') == []


def test_pair_detail_matches_the_files_and_compares_two_judges(built_run: Path) -> None:
    view = RunView(built_run)
    pair = next(iter(read_rows(built_run / "eval_pairs.jsonl", ResponsePair)))
    detail = view.pair("eval", pair.id, [2, 0])
    assert detail["pair"] == pair.model_dump(mode="json")
    assert detail["pair"]["modified_instruction"]
    assert [j["iteration"] for j in detail["judges"]] == [2, 0]
    for judge in detail["judges"]:
        rows = _judged(built_run / f"iter_{judge['iteration']}" / "eval.jsonl")[pair.id]
        assert {(j["order"], j["text"], j["verdict"]) for j in judge["judgements"]} == {
            (r.order.value, r.text, r.verdict) for r in rows if isinstance(r, Judgement)
        }
        assert {j["order"] for j in judge["judgements"]} == {"AB", "BA"}
    ab = next(j for j in detail["judges"][0]["judgements"] if j["order"] == "AB")
    assert ab["shown"] == {"A": "chosen", "B": "rejected"} and ab["correct_verdict"] == "A"


def test_changed_lists_pairs_the_two_judges_scored_differently(built_run: Path) -> None:
    view = RunView(built_run)
    mine = {i["id"]: i["score"] for i in _all(view, iteration=2)}
    theirs = {i["id"]: i["score"] for i in _all(view, iteration=0)}
    changed = _all(view, iteration=2, compare=0, filters=("changed",))
    assert [i["id"] for i in changed] == [k for k in mine if mine[k] != theirs[k]]
    assert all(i["compare"]["score"] == theirs[i["id"]] for i in changed)


def test_a_failed_sample_and_a_growing_file(built_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(built_run, run)
    path = run / "iter_0" / "eval.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    drop = Drop(
        pair_id=first["pair_id"],
        order=Order(first["order"]),
        sample_index=0,
        stage="evaluate",
        reason="api_error",
        error_type="PermanentProviderError",
        message="refused",
    )
    path.write_text("\n".join([drop.model_dump_json(), *lines[1:]]) + "\n")
    view = RunView(run)
    failed = _all(view, iteration=0, filters=("no_verdict",))
    assert [i["id"] for i in failed][:1] == [first["pair_id"]]
    j = view.pair("eval", first["pair_id"], [0])["judges"][0]["judgements"]
    gone = next(x for x in j if x["order"] == first["order"])
    assert gone["failed"] and gone["reason"] == "api_error" and gone["message"] == "refused"
    # A live run rewrites the file: the next query sees it (the index follows the file).
    path.write_text("\n".join(lines) + "\n")
    time.sleep(0.01)
    assert _all(view, iteration=0, filters=("no_verdict",)) == []


def test_queries_the_viewer_cannot_answer(built_run: Path) -> None:
    view = RunView(built_run)
    with pytest.raises(ViewError, match="sets: eval, bench:rb, train") as err:
        view.items(ItemQuery(set="dev"))
    assert err.value.status == 404
    with pytest.raises(ViewError, match="has no judgements of iteration 7; it has 0, 1, 2"):
        view.items(ItemQuery(iteration=7))
    with pytest.raises(ViewError, match="unknown filter 'bogus'"):
        ItemQuery(filters=("bogus",))
    with pytest.raises(ViewError, match="needs a judge to compare"):
        ItemQuery(filters=("changed",))
    with pytest.raises(ViewError, match="one judge only"):
        view.items(ItemQuery(set="train", compare=1))
    with pytest.raises(ViewError, match="training pairs"):
        view.items(ItemQuery(filters=("kept",)))
    with pytest.raises(ViewError, match="no pair 'nope'"):
        view.pair("eval", "nope", [0])
    with pytest.raises(ViewError, match="limit"):
        ItemQuery(limit=10_000)


def test_a_large_set_is_indexed_once_and_paged(tmp_path: Path, monkeypatch) -> None:
    """100k judgements (50k pairs x 2 orders): each file is read whole once, then filters and
    pages come from memory."""
    n = 50_000
    (tmp_path / "iter_0").mkdir()
    text = "Some reasoning about both responses. " * 10
    with (
        (tmp_path / "eval_pairs.jsonl").open("w") as fp,
        (tmp_path / "iter_0/eval.jsonl").open("w") as fj,
    ):
        for i in range(n):
            fp.write(
                json.dumps(
                    {"id": f"p{i}", "instruction": f"q {i}", "chosen": "yes", "rejected": "no"}
                )
                + "\n"
            )
            for order, verdict in (("AB", "A" if i % 3 else "B"), ("BA", "B")):
                fj.write(
                    json.dumps(
                        {
                            "pair_id": f"p{i}",
                            "order": order,
                            "sample_index": 0,
                            "text": f"{text}[[{verdict}]]",
                            "verdict": verdict,
                            "judge_model": "m",
                            "template": "t",
                        }
                    )
                    + "\n"
                )
    builds = {"pairs": 0, "judgements": 0}
    for name, cls in (("pairs", view_data.PairsIndex), ("judgements", view_data.JudgementsIndex)):
        real = cls.build

        def counting(path: Path, _real=real, _name=name):
            builds[_name] += 1
            return _real(path)

        monkeypatch.setattr(cls, "build", staticmethod(counting))
    view = RunView(tmp_path)
    started = time.perf_counter()
    page = view.items(ItemQuery(filters=("wrong",), offset=1000, limit=50))
    first = time.perf_counter() - started
    assert page["total"] == n // 3 + (n % 3 > 0) and len(page["items"]) == 50
    assert page["items"][0]["id"] == "p3000"
    started = time.perf_counter()
    for offset in range(0, 5000, 500):
        view.items(ItemQuery(filters=("wrong",), offset=offset, limit=50))
    later = (time.perf_counter() - started) / 10
    assert builds == {"pairs": 1, "judgements": 1}
    assert view.pair("eval", "p49999", [0])["judges"][0]["judgements"][1]["verdict"] == "B"
    print(f"100k judgements: first page {first:.2f}s (indexing), later pages {later * 1000:.0f} ms")


def test_the_open_pairs_position_in_the_filtered_list(built_run: Path) -> None:
    view = RunView(built_run)
    wrong = view.items(ItemQuery(iteration=0, filters=("wrong",), limit=500))["items"]
    right = view.items(ItemQuery(iteration=0, filters=("right",), limit=500))["items"]
    assert wrong and right
    pair = wrong[-1]["id"]
    at = view.items(ItemQuery(iteration=0, filters=("wrong",), limit=1, pair=pair))
    assert at["pair_position"] == len(wrong) - 1
    hidden = view.items(ItemQuery(iteration=0, filters=("right",), pair=pair))
    assert hidden["pair_position"] is None


def test_runs_compared_side_by_side(built_run: Path, tmp_path: Path) -> None:
    same = tmp_path / "same"
    shutil.copytree(built_run, same)
    table = view_data.compare_runs([RunView(built_run), RunView(same)])
    assert table["warning"] is None
    with RunStore.open_read_only(built_run / "store.sqlite") as store:
        metrics = store.metrics()
    first = table["runs"][0]
    assert first["seed"]["iteration"] == 0 and first["last"]["iteration"] == 2
    assert first["seed"]["accuracy"] == metrics[0].eval.accuracy
    assert first["last"]["accuracy"] == metrics[2].eval.accuracy
    assert first["last_vs_seed"] == metrics[2].paired["vs_seed"].model_dump(mode="json")
    assert first["highest"]["accuracy"] == max(m.eval.accuracy for m in metrics.values())
    assert first["cost_usd"] == table["runs"][1]["cost_usd"]
    pairs = same / "eval_pairs.jsonl"
    pairs.write_text(pairs.read_text().replace('"instruction":"', '"instruction":"Edited ', 1))
    table = view_data.compare_runs([RunView(built_run), RunView(same)])
    assert table["warning"] and "not evaluated on the same eval pairs" in table["warning"]


def test_kept_orders_say_when_they_feed_one_kind_of_training_data(tmp_path: Path) -> None:
    rows = [
        {"pair_id": "p", "order": "AB", "chosen": [0], "for_sft": True, "for_dpo": True},
        {"pair_id": "p", "order": "BA", "chosen": [1], "for_sft": False, "for_dpo": True},
        {"pair_id": "q", "order": "AB", "chosen": [0], "for_sft": True, "for_dpo": False},
        {"pair_id": "r", "order": "BA", "chosen": [0]},  # written before the flags existed
    ]
    path = tmp_path / "selected.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert view_data._kept(path) == {
        "p": ["AB", "BA (DPO only)"],
        "q": ["AB (SFT only)"],
        "r": ["BA"],
    }
