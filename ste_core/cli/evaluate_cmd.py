"""`ste evaluate` (judge a model on labelled pairs and score it) and `ste score` (score
existing judge outputs, no model call). Heavy imports happen inside the functions."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

_ORDERS_HELP = "single: one seeded random order per item; both: both orders (0.5 if inconsistent)"
_BENCHMARK_HELP = (
    "The file's benchmark: rewardbench | pairs (labelled pairs, the default) | rewardbench2 | "
    "judgebench | rmbench | ppe (official formats and scoring rules, docs/evaluation.md)."
)
_MODE_HELP = "RewardBench 2: ranking (4-way, default) | ratings (1-10 per completion)"
_PAIR_RULE_HELP = "RM-Bench / PPE: consistent (default) | mean: how two orders make one decision."


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _parse_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise _fail(f"--option expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)  # numbers, booleans, JSON objects
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _resolve_pairs_path(path: Path) -> Path:
    # A run directory stands for its frozen eval pairs.
    if path.is_dir() and (path / "eval_pairs.jsonl").exists():
        return path / "eval_pairs.jsonl"
    return path


def _load_pairs(path: Path, on_bad_row: str, limit: int | None) -> Any:
    from ste_core.errors import DataFileError
    from ste_core.evaluation.pairs_io import read_pairs

    try:
        pf = read_pairs(
            _resolve_pairs_path(path), on_error="skip" if on_bad_row == "skip" else "raise"
        )
    except DataFileError as exc:
        raise _fail(str(exc)) from None
    if limit is not None:
        pf.pairs = pf.pairs[:limit]
    return pf


def _skips_text(label: str, skipped: list[Any]) -> list[str]:
    if not skipped:
        return []
    lines = [f"{label}: skipped {len(skipped)} bad row(s):"]
    lines += [f"  line {s.line}: {s.reason}" for s in skipped[:10]]
    if len(skipped) > 10:
        lines.append(f"  ... and {len(skipped) - 10} more (see the JSON output)")
    return lines


def _emit(payload: dict[str, Any], score: Any, as_json: bool, extra_lines: list[str]) -> None:
    from ste_core.evaluation.summary import format_score

    if as_json:
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        for line in extra_lines:
            typer.echo(line, err=True)
        typer.echo(format_score(score))
    if score.accuracy is None:  # errors are never an accuracy: say so, and fail
        first = f" The first error: {score.first_error}." if score.first_error else ""
        typer.echo(
            f"error: no accuracy: {score.errors_note()} could not be scored, more than "
            f"{score.max_error_rate:.0%} of the items.{first} Fix the cause and run again.",
            err=True,
        )
        raise typer.Exit(1)


def _payload(pf: Any, score: Any, **extra: Any) -> dict[str, Any]:
    return {
        "pairs_file": str(pf.path),
        "pairs_formats": pf.formats,
        "skipped_pairs": [{"line": s.line, "reason": s.reason} for s in pf.skipped],
        **extra,
        "score": score.model_dump(mode="json"),
    }


def _score_only(
    pf: Any,
    judgements: Path,
    *,
    orders: str | None,
    majority: bool,
    weights: str,
    seed: int,
    template: str | None,
    judge_model: str,
    on_bad_row: str,
    as_json: bool,
    bootstrap: int,
    max_error_rate: float | None,
) -> None:
    from ste_core.errors import DataFileError
    from ste_core.evaluation.pairs_io import read_judgements
    from ste_core.evaluation.scoring import score_pairs

    parser = None
    if template is not None:
        from ste_core.plugins import get_host

        parser = get_host().template(template).parse_output
    try:
        jf = read_judgements(
            judgements,
            on_error="skip" if on_bad_row == "skip" else "raise",
            judge_model=judge_model,
            template=template or "unknown",
            parser=parser,
        )
    except DataFileError as exc:
        raise _fail(str(exc)) from None
    mode = orders
    if mode in (None, "auto"):
        seen: dict[str, set[str]] = {}
        for r in jf.records:
            pair_id, order, _ = r.sample
            seen.setdefault(pair_id, set()).add(order.value)
        mode = "both" if any(len(v) > 1 for v in seen.values()) else "single"
    try:
        score = score_pairs(
            pf.pairs,
            jf.records,
            mode=mode,  # type: ignore[arg-type]
            majority=majority,
            weights=weights,  # type: ignore[arg-type]
            seed=seed,
            n_resamples=bootstrap,
            max_error_rate=_rate(max_error_rate),
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    lines = _skips_text(str(pf.path), pf.skipped) + _skips_text(str(judgements), jf.skipped)
    if jf.verdict_mismatches:
        lines.append(
            f"note: {jf.verdict_mismatches} row(s) had a stored 'verdict' that differs from the "
            "verdict parsed from 'text'; the parsed verdict was used"
        )
    payload = _payload(
        pf,
        score,
        judgements_file=str(judgements),
        skipped_judgements=[{"line": s.line, "reason": s.reason} for s in jf.skipped],
        verdict_mismatches=jf.verdict_mismatches,
    )
    _emit(payload, score, as_json, lines)


def _read_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise _fail(f"{path}: cannot read config: {exc}") from None
    judge = data.get("judge", {})
    evaluation = data.get("evaluation", {})
    if not isinstance(judge, dict) or not isinstance(evaluation, dict):
        raise _fail(f"{path}: [judge] and [evaluation] must be tables")
    # A full run config works too: only the judge and evaluation tables are used here.
    evaluation = {k: v for k, v in evaluation.items() if k not in ("benchmarks", "pairs_path")}
    return dict(judge), dict(evaluation)


def score(
    pairs: Annotated[Path, typer.Argument(help="Pairs file (RewardBench / user / ResponsePair).")],
    judgements: Annotated[
        Path, typer.Argument(help="JSONL of judge outputs (docs/evaluation.md).")
    ],
    orders: str = typer.Option("auto", "--orders", help="single | both | auto (from the file)."),
    majority: bool = typer.Option(False, "--majority", help="Majority vote over samples."),
    weights: str = typer.Option(
        "current", "--weights", help="RewardBench weights: current | pre-0.1.3."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap intervals."),
    template: str | None = typer.Option(None, "--template", help="Use this template's parser."),
    judge_model: str = typer.Option("unknown", "--judge-model", help="Label rows without one."),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help="error | skip (counted)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=100, help="Bootstrap resamples."),
    max_error_rate: float | None = typer.Option(
        None,
        "--max-error-rate",
        min=0.0,
        max=1.0,
        help="Share of items that may fail (requests, not verdicts) before there is no accuracy "
        r"\[default: 0.1].",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use the first N pairs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    benchmark: str | None = typer.Option(None, "--benchmark", help=_BENCHMARK_HELP),
    mode: str | None = typer.Option(None, "--mode", help=_MODE_HELP + " or auto (default)."),
    pair_rule: str | None = typer.Option(None, "--pair-rule", help=_PAIR_RULE_HELP),
) -> None:
    """Score existing judge outputs against a pairs file; no model is called."""
    from ste_core.cli import benchmark_cmd

    if benchmark_cmd.is_published(benchmark):
        benchmark_cmd.score_command(
            benchmark or "",
            pairs,
            judgements,
            mode=mode,
            pair_rule=pair_rule,
            max_error_rate=_rate(max_error_rate),
            seed=seed,
            template=template,
            judge_model=judge_model,
            on_bad_row=on_bad_row,
            limit=limit,
            as_json=as_json,
        )
        return
    _check_choices(orders=orders, weights=weights, on_bad_row=on_bad_row, allow_auto=True)
    pf = _load_pairs(pairs, on_bad_row, limit)
    _score_only(
        pf,
        judgements,
        orders=orders,
        majority=majority,
        weights=weights,
        seed=seed,
        template=template,
        judge_model=judge_model,
        on_bad_row=on_bad_row,
        as_json=as_json,
        bootstrap=bootstrap,
        max_error_rate=max_error_rate,
    )


def _rate(max_error_rate: float | None) -> float:
    from ste_core.evaluation.headline import DEFAULT_MAX_ERROR_RATE

    return DEFAULT_MAX_ERROR_RATE if max_error_rate is None else max_error_rate


def _check_choices(*, orders: str | None, weights: str, on_bad_row: str, allow_auto: bool) -> None:
    allowed = ("single", "both", "auto") if allow_auto else ("single", "both")
    if orders is not None and orders not in allowed:
        raise _fail(f"--orders must be one of {', '.join(allowed)}, got {orders!r}")
    if weights not in ("current", "pre-0.1.3"):
        raise _fail(f"--weights must be 'current' or 'pre-0.1.3', got {weights!r}")
    if on_bad_row not in ("error", "skip"):
        raise _fail(f"--on-bad-row must be 'error' or 'skip', got {on_bad_row!r}")


def evaluate(
    pairs: Annotated[
        Path, typer.Argument(help="Pairs file (RewardBench / user / ResponsePair) or a run dir.")
    ],
    backend: str | None = typer.Option(None, "--backend", "-b", help="Inference backend name."),
    model: str | None = typer.Option(None, "--model", "-m", help="Judge model id."),
    template: str | None = typer.Option(None, "--template", "-t", help="Judge template name/file."),
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="Backend option key=value.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help=r"TOML with \[judge] and \[evaluation] tables (a run config works).",
        ),
    ] = None,
    orders: str | None = typer.Option(None, "--orders", help=_ORDERS_HELP + r" \[default: both]"),
    samples: int | None = typer.Option(None, "--samples", "-k", min=1, help="Samples per order."),
    majority: bool | None = typer.Option(None, "--majority/--no-majority", help="Majority vote."),
    temperature: float | None = typer.Option(None, "--temperature", help="Default 0 (greedy)."),
    top_p: float | None = typer.Option(None, "--top-p"),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Default 4096."),
    seed: int = typer.Option(0, "--seed", help="Seed of the order swap and bootstrap."),
    weights: str = typer.Option(
        "current", "--weights", help="RewardBench weights: current | pre-0.1.3."
    ),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Judge only the first N pairs."),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help=r"Output directory \[default: ste-eval/<model>/<pairs>-<digest>]."
        ),
    ] = None,
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not reuse cached answers."),
    judgements: Annotated[
        Path | None,
        typer.Option("--judgements", help="Score this JSONL of judge outputs; no model call."),
    ] = None,
    on_bad_row: str = typer.Option("error", "--on-bad-row", help="error | skip (counted)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=100, help="Bootstrap resamples."),
    max_error_rate: float | None = typer.Option(
        None,
        "--max-error-rate",
        min=0.0,
        max=1.0,
        help="Share of items that may fail (requests, not verdicts) before there is no accuracy "
        r"\[default: 0.1].",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    benchmark: str | None = typer.Option(None, "--benchmark", help=_BENCHMARK_HELP),
    mode: str | None = typer.Option(None, "--mode", help=_MODE_HELP + "."),
    pair_rule: str | None = typer.Option(None, "--pair-rule", help=_PAIR_RULE_HELP),
    ranking_template: str = typer.Option(
        "judge_rank_four", "--ranking-template", help="RewardBench 2 four-way judge template."
    ),
    rating_template: str = typer.Option(
        "judge_rate", "--rating-template", help="RewardBench 2 rating judge template."
    ),
) -> None:
    """Judge a model on labelled pairs (greedy by default) and score it with 95% intervals."""
    from ste_core.cli import benchmark_cmd

    published = benchmark_cmd.is_published(benchmark)
    _check_choices(
        orders=orders, weights=weights, on_bad_row=on_bad_row, allow_auto=judgements is not None
    )
    if published and judgements is not None:
        benchmark_cmd.score_command(
            benchmark or "",
            pairs,
            judgements,
            mode=mode,
            pair_rule=pair_rule,
            max_error_rate=_rate(max_error_rate),
            seed=seed,
            template=template,
            judge_model=model or "unknown",
            on_bad_row=on_bad_row,
            limit=limit,
            as_json=as_json,
        )
        return
    if published:
        benchmark_cmd.check_options(benchmark or "", mode, pair_rule, _rate(max_error_rate))
    pf: Any = None if published else _load_pairs(pairs, on_bad_row, limit)
    if judgements is not None:
        _score_only(
            pf,
            judgements,
            orders=orders,
            majority=bool(majority),
            weights=weights,
            seed=seed,
            template=template,
            judge_model=model or "unknown",
            on_bad_row=on_bad_row,
            as_json=as_json,
            bootstrap=bootstrap,
            max_error_rate=max_error_rate,
        )
        return

    from pydantic import ValidationError

    from ste_core.config import EvaluationConfig, JudgeConfig

    judge_tbl, eval_tbl = _read_config(config) if config is not None else ({}, {})
    if backend is not None:
        judge_tbl["backend"] = backend
    if model is not None:
        judge_tbl["model"] = model
    if option:
        judge_tbl["options"] = {**judge_tbl.get("options", {}), **_parse_options(option)}
    if concurrency is not None:
        judge_tbl["limits"] = {**judge_tbl.get("limits", {}), "concurrency": concurrency}
    if template is not None:
        eval_tbl["template"] = template
    if orders is not None:
        eval_tbl["orders"] = orders
    if samples is not None:
        eval_tbl["samples_per_order"] = samples
    if majority is not None:
        eval_tbl["majority_vote"] = majority
    if max_error_rate is not None:
        eval_tbl["max_error_rate"] = max_error_rate
    # Evaluation defaults (greedy, 4096 tokens) under the config's params, under the flags.
    params = {**EvaluationConfig().params.model_dump(), **eval_tbl.get("params", {})}
    for key, value in (("temperature", temperature), ("top_p", top_p), ("max_tokens", max_tokens)):
        if value is not None:
            params[key] = value
    eval_tbl["params"] = params
    if "backend" not in judge_tbl or "model" not in judge_tbl:
        raise _fail("give --backend and --model (or a --config with a [judge] table)")
    try:
        judge_cfg = JudgeConfig.model_validate(judge_tbl)
        eval_cfg = EvaluationConfig.model_validate(eval_tbl)
    except ValidationError as exc:
        msgs = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(msgs) from None

    if published:
        benchmark_cmd.evaluate_command(
            benchmark or "",
            pairs,
            judge_cfg,
            eval_cfg,
            out=out,
            mode=mode,
            pair_rule=pair_rule,
            max_error_rate=_rate(max_error_rate),
            seed=seed,
            no_cache=no_cache,
            on_bad_row=on_bad_row,
            limit=limit,
            ranking_template=ranking_template,
            rating_template=rating_template,
            as_json=as_json,
        )
        return
    out_dir = out or _default_out(pf.path, judge_cfg, eval_cfg, seed, limit)
    result = _run_evaluation(pf, judge_cfg, eval_cfg, out_dir, seed, weights, no_cache)
    score_path = out_dir / "score.json"
    payload = _payload(
        pf,
        result.score,
        judgements_file=str(result.judgements_path),
        backend=judge_cfg.backend,
        model=judge_cfg.model,
        template=eval_cfg.template or judge_cfg.template,
        params=eval_cfg.params.model_dump(mode="json"),
    )
    score_path.write_text(
        json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    lines = _skips_text(str(pf.path), pf.skipped)
    lines.append(f"wrote {result.judgements_path} and {score_path}")
    _emit(payload, result.score, as_json, lines)


def _default_out(pairs: Path, judge: Any, evaluation: Any, seed: int, limit: int | None) -> Path:
    """ste-eval/<model>/<pairs>-<digest of everything that changes the result>: evaluating the
    same model on other pairs, or with another template or sampling, never overwrites an earlier
    evaluation; the same command again reuses its folder (and its cached answers)."""
    from ste_core.records import content_hash

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text)

    digest = content_hash(
        hashlib.sha256(pairs.read_bytes()).hexdigest(),
        judge.backend,
        judge.options,
        # thresholds on accepting a score change no judgement: same folder, same cache
        evaluation.model_dump(mode="json", exclude={"max_error_rate", "min_eval_pairs"}),
        seed,
        limit,
    )[:8]
    return Path("ste-eval").resolve() / safe(judge.model) / f"{safe(pairs.stem)}-{digest}"


def _run_evaluation(
    pf: Any,
    judge_cfg: Any,
    eval_cfg: Any,
    out_dir: Path,
    seed: int,
    weights: str,
    no_cache: bool,
) -> Any:
    import asyncio

    from ste_core.engine.scheduler import Scheduler
    from ste_core.engine.store import RunStore
    from ste_core.errors import SteError
    from ste_core.evaluation.evaluate import evaluate_judge
    from ste_core.plugins import get_host, get_inference_backend

    template_name = eval_cfg.template or judge_cfg.template
    try:
        template = get_host().template(template_name)
        backend_obj = get_inference_backend(judge_cfg.backend, **judge_cfg.options)
    except (SteError, ValueError) as exc:
        raise _fail(str(exc)) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    store = None if no_cache else RunStore(out_dir / "store.sqlite")
    scheduler = Scheduler(backend_obj, limits=judge_cfg.limits, store=store)
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty and (done == total or done % max(1, total // 50) == 0):
            typer.echo(f"\rjudged {done}/{total}", err=True, nl=done == total)

    async def run() -> Any:
        try:
            return await evaluate_judge(
                pf.pairs,
                scheduler=scheduler,
                model=judge_cfg.model,
                template=template,
                params=eval_cfg.params.to_params(),
                samples_per_order=eval_cfg.samples_per_order,
                orders=eval_cfg.orders,
                majority=eval_cfg.majority_vote,
                weights=weights,  # type: ignore[arg-type]
                seed=seed,
                max_error_rate=eval_cfg.max_error_rate,
                judgements_path=out_dir / "judgements.jsonl",
                on_progress=progress,
            )
        finally:
            await backend_obj.aclose()

    try:
        return asyncio.run(run())
    except (SteError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        if store is not None:
            store.close()
