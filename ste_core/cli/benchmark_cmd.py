"""`ste evaluate FILE --benchmark NAME` and `ste score FILE OUTPUTS --benchmark NAME` for the
published benchmarks of `ste_core.evaluation.benchmarks` (RewardBench 2, JudgeBench, RM-Bench,
PPE). The `rewardbench` and `pairs` names keep the labelled-pairs path of `evaluate_cmd`."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import typer

from ste_core.cli.evaluate_cmd import _fail

#: --benchmark values that mean the labelled-pairs scorer (RewardBench v1 sections or plain pairs)
PAIRS_NAMES = ("rewardbench", "pairs")
MODES = ("ranking", "ratings")


def is_published(name: str | None) -> bool:
    return name is not None and name not in PAIRS_NAMES


def check_options(
    name: str, mode: str | None, pair_rule: str | None, max_error_rate: float
) -> None:
    from ste_core.evaluation.benchmarks import BENCHMARKS, PAIR_RULES

    if name not in BENCHMARKS:
        known = ", ".join([*PAIRS_NAMES, *BENCHMARKS])
        raise _fail(f"--benchmark must be one of {known}, got {name!r}")
    if mode is not None and mode not in (*MODES, "auto"):
        raise _fail(f"--mode must be 'ranking' or 'ratings' (RewardBench 2), got {mode!r}")
    if pair_rule is not None and pair_rule not in PAIR_RULES:
        raise _fail(f"--pair-rule must be one of {', '.join(PAIR_RULES)}, got {pair_rule!r}")
    if not 0.0 <= max_error_rate <= 1.0:
        raise _fail(f"--max-error-rate must be between 0 and 1, got {max_error_rate}")
    takes = BENCHMARKS[name].options
    for flag, value, option in (("--mode", mode, "mode"), ("--pair-rule", pair_rule, "pair_rule")):
        if value is not None and option not in takes:
            users = [b for b, spec in BENCHMARKS.items() if option in spec.options]
            raise _fail(f"{flag} applies to {', '.join(users)}, not to {name}; leave it out")


def load(name: str, path: Path, on_bad_row: str, limit: int | None) -> Any:
    from ste_core.errors import DataFileError
    from ste_core.evaluation.benchmarks import get_benchmark

    try:
        loaded = get_benchmark(name).load(
            path, on_error="skip" if on_bad_row == "skip" else "raise"
        )
    except DataFileError as exc:
        raise _fail(f"{exc} (is this a {name} file? see docs/evaluation.md)") from None
    return loaded.limit(limit)


def _options(
    mode: str | None, pair_rule: str | None, max_error_rate: float, seed: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"max_error_rate": max_error_rate, "seed": seed}
    if mode is not None:
        out["mode"] = mode
    if pair_rule is not None:
        out["pair_rule"] = pair_rule
    return out


def _auto_mode(loaded: Any, outputs: list[Any]) -> str:
    """ratings when any non-Ties item of the file has rating outputs, else ranking."""
    non_ties = {i.id for i in loaded.data if not i.is_ties}
    rated = any(o.kind == "rating" and o.item_id in non_ties for o in outputs)
    return "ratings" if rated else "ranking"


def _skips(label: Path, skipped: list[Any]) -> list[str]:
    if not skipped:
        return []
    lines = [f"{label}: skipped {len(skipped)} bad row(s):"]
    lines += [f"  line {s.line}: {s.reason}" for s in skipped[:10]]
    return lines


def _emit(payload: dict[str, Any], result: Any, as_json: bool, notes: list[str]) -> None:
    from ste_core.evaluation.benchmarks.summary import format_result

    if as_json:
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    for line in notes:
        typer.echo(line, err=True)
    typer.echo(format_result(result))


def _score(loaded: Any, outputs: list[Any], options: dict[str, Any]) -> Any:
    if loaded.benchmark.name == "rewardbench2" and options.get("mode") in (None, "auto"):
        options = {**options, "mode": _auto_mode(loaded, outputs)}
    try:
        return loaded.benchmark.score(loaded, outputs, **options)
    except ValueError as exc:
        raise _fail(f"cannot score: {exc}") from None


def score_command(
    name: str,
    path: Path,
    outputs_path: Path,
    *,
    mode: str | None,
    pair_rule: str | None,
    max_error_rate: float,
    seed: int,
    template: str | None,
    judge_model: str,
    on_bad_row: str,
    limit: int | None,
    as_json: bool,
) -> None:
    """Score outputs produced anywhere against a published benchmark file."""
    from ste_core.errors import DataFileError
    from ste_core.evaluation.benchmarks import read_outputs

    check_options(name, mode, pair_rule, max_error_rate)
    loaded = load(name, path, on_bad_row, limit)
    parser = None
    if template is not None:
        from ste_core.plugins import get_host
        from ste_prompts import get_parser

        parser = get_parser(get_host().template(template).parser)
    try:
        outputs, skipped = read_outputs(
            loaded.benchmark,
            outputs_path,
            on_error="skip" if on_bad_row == "skip" else "raise",
            parser=parser,
            judge_model=judge_model,
        )
    except DataFileError as exc:
        raise _fail(str(exc)) from None
    result = _score(loaded, outputs, _options(mode, pair_rule, max_error_rate, seed))
    payload = {
        "benchmark": name,
        "file": str(loaded.path),
        "skipped_rows": [{"line": s.line, "reason": s.reason} for s in loaded.skipped],
        "outputs_file": str(outputs_path.resolve()),
        "skipped_outputs": [{"line": s.line, "reason": s.reason} for s in skipped],
        "result": result.model_dump(mode="json"),
    }
    notes = _skips(loaded.path, loaded.skipped) + _skips(outputs_path.resolve(), skipped)
    _emit(payload, result, as_json, notes)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def default_out(name: str, path: Path, judge: Any, evaluation: Any, extra: dict[str, Any]) -> Path:
    """ste-eval/<model>/<benchmark>-<digest of the data and everything that changes results>."""
    import re

    from ste_core.records import content_hash

    digest = content_hash(
        _digest(path), judge.backend, judge.options, evaluation.model_dump(mode="json"), extra
    )[:8]
    model = re.sub(r"[^A-Za-z0-9_.\-]+", "_", judge.model)
    return Path("ste-eval").resolve() / model / f"{name}-{digest}"


def evaluate_command(
    name: str,
    path: Path,
    judge_cfg: Any,
    eval_cfg: Any,
    *,
    out: Path | None,
    mode: str | None,
    pair_rule: str | None,
    max_error_rate: float,
    seed: int,
    no_cache: bool,
    on_bad_row: str,
    limit: int | None,
    ranking_template: str,
    rating_template: str,
    as_json: bool,
) -> None:
    """Judge a published benchmark file with any backend and score it by the benchmark's rules."""
    import asyncio

    from ste_core.engine.scheduler import Scheduler
    from ste_core.engine.store import RunStore
    from ste_core.errors import SteError
    from ste_core.evaluation.benchmarks.judging import judge_benchmark
    from ste_core.plugins import get_host, get_inference_backend

    check_options(name, mode, pair_rule, max_error_rate)
    if mode == "auto":
        raise _fail("--mode auto only applies to `ste score`; use ranking or ratings")
    if eval_cfg.samples_per_order != 1 or eval_cfg.orders != "both":
        raise _fail(
            "published benchmarks are judged once per order in both orders; drop --samples / "
            "--orders (or set evaluation.samples_per_order = 1, orders = 'both')"
        )
    loaded = load(name, path, on_bad_row, limit)
    template_name = eval_cfg.template or judge_cfg.template
    try:
        host = get_host()
        template = host.template(template_name)
        ranking = host.template(ranking_template)
        rating = host.template(rating_template)
        backend_obj = get_inference_backend(judge_cfg.backend, **judge_cfg.options)
    except (SteError, ValueError) as exc:
        raise _fail(str(exc)) from None
    run_mode = mode or "ranking"
    extra = {"mode": run_mode, "seed": seed, "limit": limit, "ranking": ranking.fingerprint(),
             "rating": rating.fingerprint()}  # fmt: skip
    out_dir = (out or default_out(name, loaded.path, judge_cfg, eval_cfg, extra)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    store = None if no_cache else RunStore(out_dir / "store.sqlite")
    scheduler = Scheduler(backend_obj, limits=judge_cfg.limits, store=store)
    outputs_path = out_dir / "outputs.jsonl"
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty and (done == total or done % max(1, total // 50) == 0):
            typer.echo(f"\rjudged {done}/{total}", err=True, nl=done == total)

    async def run() -> list[Any]:
        try:
            return await judge_benchmark(
                loaded,
                scheduler,
                model=judge_cfg.model,
                template=template,
                ranking_template=ranking,
                rating_template=rating,
                params=eval_cfg.params.to_params(),
                mode=run_mode,  # type: ignore[arg-type]
                seed=seed,
                outputs_path=outputs_path,
                on_progress=progress,
            )
        finally:
            await backend_obj.aclose()

    try:
        outputs = asyncio.run(run())
    except (SteError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        if store is not None:
            store.close()
    result = _score(loaded, outputs, _options(run_mode, pair_rule, max_error_rate, seed))
    payload = {
        "benchmark": name,
        "file": str(loaded.path),
        "skipped_rows": [{"line": s.line, "reason": s.reason} for s in loaded.skipped],
        "outputs_file": str(outputs_path),
        "backend": judge_cfg.backend,
        "model": judge_cfg.model,
        "templates": {"pairwise": template.name, "ranking": ranking.name, "rating": rating.name},
        "params": eval_cfg.params.model_dump(mode="json"),
        "result": result.model_dump(mode="json"),
    }
    (out_dir / "result.json").write_text(
        json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    notes = _skips(loaded.path, loaded.skipped)
    notes.append(f"wrote {outputs_path} and {out_dir / 'result.json'}")
    _emit(payload, result, as_json, notes)
