"""`ste demo`: the whole Self-Taught Evaluator loop in under a minute, offline, on a CPU.

No download, no account, no key: the generator and the seed judge are a tiny chat model built on
the spot by `ste_backends.local.testing.build_tiny_chat_model` (a two-layer Qwen2-shaped model,
trained for a few seconds to write parseable worse responses and verdicts; its verdicts ignore
the responses, so the demo shows the machinery, never an improvement). It runs on the bundled
instructions (`data/demo_instructions.jsonl` in this package) through every stage once: eval
pairs, baseline and worse responses, judgements in both orders, selection, a LoRA fine-tune, and
the seed judge M0 and the fine-tuned judge M1 scored on the same frozen pairs; then it prints
where the run directory and the report are and the `ste view` command.

The model is built once and cached in `$STE_CACHE_DIR/demo-model` (default
`$XDG_CACHE_HOME/ste`, else `~/.cache/ste`); a later demo reuses it. The run itself goes to
`--out` (default `./ste-demo`): the config it ran (`demo.toml`, which `ste run` takes as is) and
the run directory `runs/demo`. Registered as a command by the local plugin's `register_commands`
hook; this module imports nothing heavy until the demo runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from ste_backends.local.testing import PIPELINE_REPLIES

#: Training steps of the demo model (with PIPELINE_REPLIES). Measured on torch 2.13 (CPU):
#: every worse response parses after 100, 120 and 150 steps, none after 60 or 80 (they repeat
#: a heading); 120 keeps a margin on both sides. Fewer replies are not faster to learn: without
#: the judge_eval_plan replies even 150 steps left the worse response unparseable.
DEMO_TRAIN_STEPS = 120
RUN_NAME = "demo"


def cache_dir() -> Path:
    """Where ste keeps what it builds for reuse: `$STE_CACHE_DIR`, else `$XDG_CACHE_HOME/ste`,
    else `~/.cache/ste`."""
    explicit = os.environ.get("STE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "ste"


def demo_model(cache: Path, on_build: Callable[[], None] | None = None) -> Path:
    """The demo model, `cache/demo-model`: built there first if it is missing or was built with
    other arguments (`on_build` is called then, before the build starts)."""
    from ste_backends.local.testing import build_tiny_chat_model

    return build_tiny_chat_model(
        cache / "demo-model",
        replies=PIPELINE_REPLIES,
        train_steps=DEMO_TRAIN_STEPS,
        on_build=on_build,
    )


def demo_config(out: Path, model: Path, instructions: Path) -> dict[str, Any]:
    """The demo's config: every stage once, on sizes chosen for time (measured in
    docs/local.md), with the bundled instructions copied to `instructions`."""
    cpu = {"device": "cpu"}
    return {
        "run": {"name": RUN_NAME, "output_dir": str(out / "runs"), "iterations": 1, "seed": 0},
        "data": {"path": str(instructions)},
        "generator": {
            "backend": "local",
            "model": str(model),
            "params": {"temperature": 0.0, "max_tokens": 48},
            "options": cpu,
        },
        "judge": {
            "backend": "local",
            "model": str(model),
            "template": "judge_short",
            "samples_per_order": 2,
            "params": {"temperature": 1.0, "top_p": 0.9, "max_tokens": 12, "seed": 5},
            "options": cpu,
        },
        "finetune": {
            "backend": "local",
            "poll_interval_s": 0.2,
            "max_length": 2048,
            "batch_size": 2,
            "learning_rate": 1e-4,
            "options": {"max_steps": 1, "device": "cpu"},
        },
        "evaluation": {"eval_size": 3, "params": {"temperature": 0.0, "max_tokens": 12}},
    }


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the demo's config and run directory.")
    ] = Path("ste-demo"),
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start the run over (the cached model is kept)."),
    ] = False,
) -> None:
    """Try the whole loop in about a minute: a tiny model built offline, no download, no key."""
    from ste_backends.local.finetune import EXTRA, LocalFineTune
    from ste_backends.local.inference import LocalInference
    from ste_backends.local.requirements import ensure_installed
    from ste_core.errors import MissingDependencyError

    try:
        ensure_installed("local", EXTRA, (*LocalInference.requires, *LocalFineTune.requires))
    except MissingDependencyError as exc:
        typer.echo(
            f"error: `ste demo` runs on the local backend. {exc} (on Linux, install the CPU "
            "build of torch first: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)",
            err=True,
        )
        raise typer.Exit(2) from None
    started = time.perf_counter()
    out = out.expanduser().resolve()
    model, built_s = _model_with_time()
    run_dir, run_s = _run(out, model, fresh=fresh)
    _print_where(run_dir, out, built_s=built_s, run_s=run_s, total_s=time.perf_counter() - started)


def _model_with_time() -> tuple[Path, float | None]:
    """The demo model and the seconds spent building it (None: the cached one was reused)."""
    cache = cache_dir()
    build_started: list[float] = []

    def announce() -> None:
        where = cache / "demo-model"
        typer.echo(f"building the demo model in {where} (once; later demos reuse it)")
        build_started.append(time.perf_counter())

    model = demo_model(cache, on_build=announce)
    return model, (time.perf_counter() - build_started[0]) if build_started else None


def _run(out: Path, model: Path, *, fresh: bool) -> tuple[Path, float]:
    """Write the demo's instructions and config under `out`, run them; the run directory and
    the seconds the loop took."""
    from ste_core.config import config_from_dict, dumps_toml
    from ste_core.errors import SteError
    from ste_core.pipeline import Pipeline
    from ste_core.run.progress import make_reporter

    out.mkdir(parents=True, exist_ok=True)
    instructions = out / "instructions.jsonl"
    bundled = resources.files("ste_backends.local") / "data" / "demo_instructions.jsonl"
    instructions.write_text(bundled.read_text(encoding="utf-8"), encoding="utf-8")
    data = demo_config(out, model, instructions)
    (out / "demo.toml").write_text(dumps_toml(data), encoding="utf-8")
    config = config_from_dict(data, base_dir=out, source=str(out / "demo.toml"))
    reporter = make_reporter(quiet=False, log_json=False)
    started = time.perf_counter()
    try:
        result = Pipeline(config, fresh=fresh, reporter=reporter).run_sync()
    except SteError as exc:
        reporter.close()
        typer.echo(
            f"error: the demo's run stopped: {exc}\n  run directory: {config.run_dir}\n"
            "`ste demo --fresh` starts it over.",
            err=True,
        )
        raise typer.Exit(1) from None
    finally:
        reporter.close()
    return Path(result.run_dir), time.perf_counter() - started


def _print_where(
    run_dir: Path, out: Path, *, built_s: float | None, run_s: float, total_s: float
) -> None:
    summary = run_dir / "summary.md"
    if summary.is_file():
        typer.echo(summary.read_text(encoding="utf-8"))
    model = "reused the cached model" if built_s is None else f"model built in {built_s:.0f} s"
    typer.echo(
        f"demo finished in {total_s:.0f} s ({model}, loop {run_s:.0f} s).\n"
        f"  run directory: {run_dir}\n"
        f"  report:        {run_dir / 'report.html'} (and report.md)\n"
        f"  browse it:     ste view {run_dir}\n"
        f"  the config:    {out / 'demo.toml'} (`ste run` it, or edit it)\n"
        "The tiny model's verdicts ignore the responses (sampled: A or B at random; greedy, as "
        "in evaluation: mostly one letter whatever the order, so about 50%): this shows the "
        "machinery, not an improvement. "
        "A real model: README's Quickstart (examples/quickstart.toml)."
    )
