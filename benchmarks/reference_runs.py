"""Fingerprints of two reference runs' outputs, to show that a change keeps them byte for byte.

Not a speed figure: a check for refactors that must not change what a run writes. It runs
`ste run` on two fixed configurations against the fake providers (no network, no key):

- `e2e`: two iterations, openai-backend generator and judge, Together fine-tuning, SFT;
- `full`: the category filter, DPO with `init_from = "previous"`, an agreement threshold,
  majority-vote evaluation with sampling, and a RewardBench-style benchmark file;

then prints one JSON object: for each run, every output file with the first 16 hex digits of its
sha256 (metrics.json compared as sorted JSON without timings and job ids, which a fake makes
anew each run; the store, manifest, config and reports, which carry times and paths, left out).

    python benchmarks/reference_runs.py /tmp/before > before.json   # on the old checkout
    python benchmarks/reference_runs.py /tmp/after > after.json     # on the new one
    diff before.json after.json                                      # nothing: same outputs
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ste_backends.openai.fake import OpenAIFake
from ste_backends.together.fake import TogetherFake
from ste_core.config import dumps_toml

STE = str(Path(sys.executable).with_name("ste"))
WORDS = [
    "copper",
    "river",
    "logic",
    "prime",
    "garden",
    "violin",
    "orbit",
    "maple",
    "quartz",
    "ember",
]
#: files whose bytes carry times, paths or ids that change from run to run by design
# status.json holds a pid and times: it differs between any two runs.
NOT_COMPARED = {
    "store.sqlite",
    "manifest.json",
    "report.html",
    "report.md",
    "accuracy.png",
    "status.json",
}


def instructions(variant: str) -> list[str]:
    words = WORDS
    if variant == "full":  # three kinds, so the classifier finds several categories
        kinds = [
            "Write a python function about {a} and {b} (case {i}).",
            "Solve the equation linking {a} to {b} (case {i}).",
            "Why does {a} infer {b}? A logic puzzle (case {i}).",
        ]
        return [
            kinds[i % 3].format(a=words[i % 10], b=words[(3 * i + 1) % 10], i=i) for i in range(60)
        ]
    return [
        f"Explain how {words[i % 10]} relates to {words[(3 * i + 1) % 10]} (case {i})."
        for i in range(40)
    ]


def config(root: Path, variant: str, oa: OpenAIFake, tg: TogetherFake) -> dict[str, Any]:
    limits = {"concurrency": 4, "backoff_initial_s": 0.01, "backoff_max_s": 0.1}
    role = {"backend": "openai", "options": {"base_url": oa.url + "/v1"}, "limits": limits}
    cfg: dict[str, Any] = {
        "run": {"name": variant, "output_dir": str(root / "runs"), "iterations": 2, "seed": 1},
        "data": {"path": "instructions.jsonl"},
        "generator": {**role, "model": "fake-acc90"},
        "judge": {**role, "model": "fake-acc70", "samples_per_order": 3},
        "finetune": {
            "backend": "together",
            "base_model": "fake-acc70",
            "poll_interval_s": 0.05,
            "options": {"base_url": tg.url},
            "inference_options": {"base_url": tg.url},
        },
        "evaluation": {"eval_size": 10},
    }
    if variant == "full":
        cfg["filter"] = {
            "enabled": True,
            "categories": ["reasoning", "coding", "math"],
            "balance": False,
        }
        cfg["finetune"] |= {"method": "dpo", "init_from": "previous", "dpo_pairs_per_prompt": 2}
        cfg["selection"] = {"agreement_threshold": 0.3}
        cfg["evaluation"] = {
            "eval_size": 8,
            "samples_per_order": 3,
            "majority_vote": True,
            "params": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 2048},
            "benchmarks": [{"name": "rb", "path": "bench.jsonl"}],
        }
    return cfg


def benchmark_rows() -> str:
    subsets = ["alpacaeval-easy", "mt-bench-hard", "refusals-dangerous", "math-prm"]
    rows = [
        {
            "prompt": f"Q{i}: name a {WORDS[i % 10]}",
            "chosen": f"A good {WORDS[i % 10]} answer {i}",
            "rejected": f"unrelated {i}",
            "subset": subsets[i % 4],
        }
        for i in range(12)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows)


def fingerprint(run_dir: Path) -> dict[str, str]:
    out = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        rel = str(path.relative_to(run_dir))
        if rel in NOT_COMPARED or rel == "config.toml" or rel.endswith(("-wal", "-shm")):
            continue
        data = path.read_bytes()
        if path.name == "metrics.json":
            metrics = json.loads(data)
            for usage in (metrics.get("stages") or {}).values():
                usage.pop("seconds", None)
            if isinstance(metrics.get("finetune"), dict):
                metrics["finetune"].pop("job_id", None)
            data = json.dumps(metrics, sort_keys=True).encode()
        out[rel] = hashlib.sha256(data).hexdigest()[:16]
    return out


def main(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STE_", "TOGETHER_"))}
    env["TOGETHER_API_KEY"] = "fake-key"  # the fake accepts any key
    result = {}
    for variant in ("e2e", "full"):
        root = workdir / variant
        root.mkdir(parents=True)
        rows = "".join(json.dumps({"instruction": t}) + "\n" for t in instructions(variant))
        (root / "instructions.jsonl").write_text(rows)
        (root / "bench.jsonl").write_text(benchmark_rows())
        with OpenAIFake(latency_s=0.002) as oa, TogetherFake() as tg:
            (root / "config.toml").write_text(dumps_toml(config(root, variant, oa, tg)))
            proc = subprocess.run(
                [STE, "run", str(root / "config.toml"), "--quiet"],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
        if proc.returncode != 0:
            sys.exit(f"{variant}: ste run exited {proc.returncode}\n{proc.stderr}")
        result[variant] = fingerprint(root / "runs" / variant)
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ste-reference-runs"))
