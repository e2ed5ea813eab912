"""Wall time of a local fine-tune job with one training process and with several.

Builds the tiny chat model of `ste_backends.local.testing` (offline, random weights), then runs
the same 2-step LoRA SFT job through `LocalFineTune` with `processes = 1` (one worker process)
and `processes = N` (N CPU ranks over gloo under `accelerate launch`), best of `--repeat` runs
each. The time is submit to "succeeded": process start-up, imports, model load, training, adapter
save. On the tiny model it is all overhead; the figure says what the launcher costs, not what
data parallel training gains on a real model and several GPUs.

    python benchmarks/local_training.py [--processes 2] [--repeat 2] [--steps 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from ste_backends.local import LocalFineTune
from ste_backends.local.testing import build_tiny_chat_model
from ste_core.records import FineTuneMethod, FineTuneSpec, LoRAConfig, Message, Order, SFTExample


def examples(n: int) -> list[SFTExample]:
    prompt = (Message(role="user", content="Which response is better? [A] Paris. [B] Rome."),)
    return [
        SFTExample(
            messages=prompt, completion=f"A is right {i}. [[A]]", pair_id=f"p{i}", order=Order.AB
        )
        for i in range(n)
    ]


async def one_job(model: Path, work: Path, processes: int, steps: int) -> float:
    ft = LocalFineTune(device="cpu", output_dir=work / "jobs", max_steps=steps, processes=processes)
    data = work / "sft.jsonl"
    ft.write_training_file(examples(16), FineTuneMethod.SFT, data)
    spec = FineTuneSpec(
        base_model=str(model),
        lora=LoRAConfig(r=4, alpha=8, dropout=0.0),
        batch_size=2,
        learning_rate=1e-3,
        max_length=256,
        seed=1,
    )
    started = time.monotonic()
    state = await ft.submit(spec, data)
    while not state.status.terminal:
        await asyncio.sleep(0.1)
        state = await ft.poll(state.job_id)
    elapsed = time.monotonic() - started
    if state.model is None:
        raise SystemExit(f"the job failed: {state.message}")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_chat_model(work / "tiny")
        for processes in (1, args.processes):
            times = [await one_job(model, work, processes, args.steps) for _ in range(args.repeat)]
            shown = ", ".join(f"{t:.1f}" for t in times)
            print(f"processes={processes}: best {min(times):.1f} s ({shown})")


if __name__ == "__main__":
    asyncio.run(main())
