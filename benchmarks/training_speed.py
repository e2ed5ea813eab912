"""Training throughput of the local backend: SFT and GRPO steps per second and tokens per second,
on each device asked for, side by side in one table.

Builds a small chat model offline (`ste_backends.local.testing.build_tiny_chat_model`, random
weights: `--size tiny` is the tests' model, `--size small` a larger one worth a GPU), writes
judge training data for it (SFT: a judgement per order; GRPO: both orders of each pair with their
labels, the `judge_short` template) and runs the same job through `LocalFineTune` on every
`--device`, with `dtype = "auto"` (bfloat16 on a GPU that has it, float32 on the CPU). The
figures are the worker's own (status.json): the Trainer's runtime and steps per second, and the
tokens TRL counted (prompts included) per second of it. Model load and process start-up are
outside them.

    python benchmarks/training_speed.py --device cpu [--device cuda] [--size small] [--steps 8]

The CPU row is the baseline: on a machine with a GPU, give both devices and the two are measured
in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from ste_backends.local import LocalFineTune
from ste_backends.local.testing import build_tiny_chat_model
from ste_core.records import (
    FineTuneMethod,
    FineTuneSpec,
    GRPOSpec,
    LoRAConfig,
    ResponsePair,
    SFTExample,
)
from ste_core.stages.training_data import grpo_examples
from ste_prompts import get_template

#: (hidden size, layers) of each model size
SIZES = {"tiny": (64, 2), "small": (512, 8)}
NUM_GENERATIONS = 4


def pairs(n: int) -> list[ResponsePair]:
    return [
        ResponsePair(
            id=f"p{i}",
            instruction=f"Name a colour that the sky can have ({i}).",
            chosen="Blue, on a clear day.",
            rejected="Seven.",
            modified_instruction="Name a number.",
        )
        for i in range(n)
    ]


def training_file(ft: LocalFineTune, method: str, path: Path, n_pairs: int) -> Path:
    template = get_template("judge_short")
    if method == "grpo":
        grpo = [e for p in pairs(n_pairs) for e in grpo_examples(p, template=template)]
        ft.write_training_file(grpo, FineTuneMethod.GRPO, path)
        return path
    sft = []
    for example in (e for p in pairs(n_pairs) for e in grpo_examples(p, template=template)):
        verdict = example.label
        sft.append(
            SFTExample(
                messages=example.messages,
                completion=f"Response {verdict} answers the question asked. [[{verdict}]]",
                pair_id=example.pair_id,
                order=example.order,
            )
        )
    ft.write_training_file(sft, FineTuneMethod.SFT, path)
    return path


async def one_job(model: Path, work: Path, device: str, method: str, steps: int) -> dict[str, Any]:
    ft = LocalFineTune(device=device, output_dir=work / "jobs", max_steps=steps)
    batch = 2 * NUM_GENERATIONS if method == "grpo" else 8
    data = training_file(ft, method, work / f"{method}.jsonl", n_pairs=4 * steps)
    spec = FineTuneSpec(
        base_model=str(model),
        method=FineTuneMethod(method),
        lora=LoRAConfig(r=8, alpha=16, dropout=0.0),
        batch_size=batch,
        learning_rate=1e-4,
        max_length=1024,
        seed=1,
        grpo=GRPOSpec(num_generations=NUM_GENERATIONS, max_completion_length=64)
        if method == "grpo"
        else None,
    )
    started = time.monotonic()
    state = await ft.submit(spec, data)
    while not state.status.terminal:
        await asyncio.sleep(0.2)
        state = await ft.poll(state.job_id)
    wall = time.monotonic() - started
    await ft.aclose()
    if state.model is None:
        raise SystemExit(f"the {method} job on {device} failed: {state.message}")
    status = json.loads((Path(state.job_id) / "status.json").read_text())
    return {"wall_s": wall, **status}


def versions() -> str:
    import torch
    import transformers
    import trl

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, TRL {trl.__version__}; {gpu}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", help="cpu, cuda, ... (repeatable)")
    parser.add_argument("--method", action="append", choices=["sft", "grpo"])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    devices = args.device or ["cpu"]
    methods = args.method or ["sft", "grpo"]
    hidden, layers = SIZES[args.size]
    print(versions())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_chat_model(work / "model", hidden_size=hidden, num_layers=layers)
        print(f"model: --size {args.size} (hidden {hidden}, {layers} layers), {args.steps} steps")
        header = (
            "| device | method | precision | steps | train s | steps/s | tokens/s | job wall s |"
        )
        rows = [header, "|---|---|---|---|---|---|---|---|"]
        for method in methods:
            for device in devices:
                got = await one_job(model, work, device, method, args.steps)
                rows.append(
                    f"| {got.get('device', device)} | {method} | {got.get('precision', '?')} "
                    f"| {got['step']} | {got['train_runtime_s']:.2f} "
                    f"| {got['steps_per_second']:.2f} | {got.get('tokens_per_second', 0):.0f} "
                    f"| {got['wall_s']:.1f} |"
                )
                print(rows[-1], flush=True)
        print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
