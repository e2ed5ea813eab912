"""Peak memory of the pipeline's data path: 10k vs 100k instructions.

What runs, in a fresh interpreter per size (so each peak RSS is its own):

1. the `load` stage (`Pipeline.stage("load")`): read a JSONL file, normalise, drop, de-duplicate,
   write `data/instructions.jsonl`;
2. the `split` stage: eval = 50 smallest split keys (a bounded heap), train = every other
   instruction streamed to `data/train.jsonl`;
3. request building over the training split, as the model stages and the budget precheck do:
   a baseline request per instruction, then a worse-response request and two judge requests
   (both orders, n=3) per instruction with a synthetic response pair, each rendered from its
   template and fed to the token estimator (streamed, never collected).

The instructions file is generated in a temporary directory (lengths 80-1200 characters, 3%
exact duplicates and 1% empty rows, so every drop path runs). Peak RSS is `ru_maxrss` at the end;
"baseline" is the RSS after imports and before any data, so growth = peak - baseline.

    python benchmarks/memory.py                # 10k and 100k
    python benchmarks/memory.py --sizes 10000 300000

Target: peak RSS at 100k <= 1.5x peak RSS at 10k.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "analyse",
    "explain",
    "compare",
    "write",
    "summarise",
    "translate",
    "design",
    "debug",
    "estimate",
    "prove",
    "list",
    "history",
    "physics",
    "recipe",
    "contract",
    "poem",
    "function",
    "database",
    "market",
    "climate",
    "protein",
    "orbit",
    "budget",
    "travel",
    "garden",
    "violin",
    "theorem",
    "network",
    "shader",
    "policy",
    "harbor",
    "lattice",
    "meadow",
    "ember",
]


def make_file(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = rng.random()
            if r < 0.01:
                text = "   "
            elif r < 0.04 and i > 0:
                text = f"Duplicate instruction number {i % 97}: " + " ".join(WORDS[:10])
            else:
                length = rng.randint(12, 180)
                text = f"({i}) " + " ".join(rng.choice(WORDS) for _ in range(length))
            fh.write(json.dumps({"instruction": text}) + "\n")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(workdir: Path) -> None:
    """Run load + split + request building in this process; print one JSON line."""
    import asyncio

    from ste_core.config import config_from_dict
    from ste_core.pipeline import Pipeline
    from ste_core.plugins import get_host
    from ste_core.records import Baseline, Instruction, Order, ResponsePair, SamplingParams
    from ste_core.run.io import read_rows
    from ste_core.stages.baseline import baseline_request
    from ste_core.stages.judge import judge_request
    from ste_core.stages.worse import worse_request
    from ste_prompts import get_template

    get_host()  # plugin discovery is part of the fixed cost, not of the data
    baseline_rss = _rss_mb()
    cfg = config_from_dict(
        {
            "run": {"name": "mem", "output_dir": str(workdir / "runs")},
            "data": {"path": str(workdir / "instructions.jsonl"), "max_chars": 4000},
            "generator": {"backend": "openai", "model": "g"},
            "judge": {"backend": "openai", "model": "j"},
            "finetune": {"backend": "together"},
            "evaluation": {"eval_size": 50},
        }
    )
    pipe = Pipeline(cfg)
    started = time.perf_counter()

    async def stages() -> dict[str, dict[str, int]]:
        load = await pipe.stage("load")
        split = await pipe.stage("split")
        await pipe.aclose()
        return {"load": load, "split": split}

    counts = asyncio.run(stages())
    after_split = _rss_mb()

    from ste_core.engine.budget import estimate_request_tokens

    worse_t, judge_t = get_template("worse_response"), get_template("judge_eval_plan")
    params = SamplingParams(max_tokens=1024)

    def requests():
        for inst in read_rows(cfg.run_dir / "data" / "train.jsonl", Instruction):
            yield baseline_request(inst, model="g", params=params)
            b = Baseline(instruction_id=inst.id, instruction=inst.text, response=inst.text[::-1])
            yield worse_request(b, model="g", template=worse_t, params=params)
            pair = ResponsePair(
                id=inst.id, instruction=inst.text, chosen=inst.text[::-1], rejected=inst.text
            )
            for order in Order:
                yield judge_request(
                    pair, order, model="j", template=judge_t, params=params, samples=3
                )

    est = estimate_request_tokens(requests())
    print(
        json.dumps(
            {
                "baseline_rss_mb": baseline_rss,
                "after_split_rss_mb": after_split,
                "peak_rss_mb": _rss_mb(),
                "seconds": time.perf_counter() - started,
                "requests_built": est.requests,
                "prompt_tokens": est.prompt_tokens,
                "counts": counts,
            }
        )
    )


def measure(n: int, tmp: Path) -> dict:
    workdir = tmp / f"n{n}"
    workdir.mkdir()
    make_file(workdir / "instructions.jsonl", n)
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(workdir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs=2, default=(10_000, 100_000))
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child)
        return 0
    small, large = args.sizes
    with tempfile.TemporaryDirectory() as d:
        results = {n: measure(n, Path(d)) for n in (small, large)}
    print(
        f"{'instructions':>12}  {'kept':>7}  {'train':>7}  {'requests':>8}  "
        f"{'base MB':>7}  {'peak MB':>7}  {'growth MB':>9}  {'seconds':>7}"
    )
    for n, r in results.items():
        load, split = r["counts"]["load"], r["counts"]["split"]
        print(
            f"{n:>12}  {load['kept']:>7}  {split['train']:>7}  {r['requests_built']:>8}  "
            f"{r['baseline_rss_mb']:>7.1f}  {r['peak_rss_mb']:>7.1f}  "
            f"{r['peak_rss_mb'] - r['baseline_rss_mb']:>9.1f}  {r['seconds']:>7.1f}"
        )
    ratio = results[large]["peak_rss_mb"] / results[small]["peak_rss_mb"]
    print(
        f"peak RSS ratio {large} / {small}: {ratio:.2f}x (target <= 1.5x): "
        f"{'OK' if ratio <= 1.5 else 'OVER TARGET'}"
    )
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
