"""GRPO in the local backend (ste_backends/local/grpo.py): pair-preserving batches, on one
process and split the way accelerate splits them across two, and a 2-step job through the same
worker subprocess `LocalFineTune` runs, on a tiny model whose verdicts vary.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from ste_core.records import FineTuneMethod, GRPOSpec, JobStatus, Order, ResponsePair
from ste_core.stages.training_data import grpo_examples
from tests.backends.local.test_finetune import finetuner, spec_for, wait_for

pytest.importorskip("trl")


def pair_ids(n: int) -> list[str]:
    """Two rows per pair (AB then BA), as the training_data stage writes them."""
    return [f"p{i}" for i in range(n) for _ in range(2)]


def test_the_sampler_keeps_both_orders_of_a_pair_in_one_batch() -> None:
    from ste_backends.local.grpo import PairSampler

    ids = pair_ids(5)
    sampler = PairSampler(ids, num_generations=2, rows_per_process=8, repeat_count=1, seed=3)
    rows = list(sampler)
    assert len(rows) == len(sampler) == 4 * 2 * 2  # 2 batches of 2 pairs; the 5th is dropped
    for start in range(0, len(rows), 8):
        batch = rows[start : start + 8]
        pairs = Counter(ids[r] for r in batch)
        assert all(n == 4 for n in pairs.values()), batch  # 2 orders x 2 generations
        assert sorted(set(batch)) == sorted(i for i, p in enumerate(ids) if p in pairs)
    # Shuffled by pair, reproducibly: another seed gives another order of the same pairs.
    again = list(PairSampler(ids, num_generations=2, rows_per_process=8, seed=3))
    other = list(PairSampler(ids, num_generations=2, rows_per_process=8, seed=4))
    assert again == rows and other != rows


def test_the_sampler_never_splits_a_pair_across_processes() -> None:
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    from ste_backends.local.grpo import PairSampler

    ids = pair_ids(12)
    seen: Counter[str] = Counter()
    for rank in (0, 1):
        # Each process builds its own sampler, with the same seed: the same sequence.
        # 2 processes, per_device_train_batch_size 4 x steps_per_generation 2 = 8 rows each.
        sampler = PairSampler(ids, num_generations=2, rows_per_process=8, num_processes=2)
        shard = BatchSamplerShard(BatchSampler(sampler, 8, drop_last=False), 2, rank)
        for batch in shard:
            pairs = Counter(ids[r] for r in batch)
            assert all(n == 4 for n in pairs.values()), (rank, batch)
            seen.update(pairs)
    assert seen == dict.fromkeys(ids, 4)  # 3 generation batches of 4 pairs: each pair once
    with pytest.raises(ValueError, match="multiple of 2 x num_generations = 4"):
        PairSampler(ids, num_generations=2, rows_per_process=6)
    with pytest.raises(ValueError, match="exactly two rows"):
        PairSampler([*ids, "lonely"], num_generations=2, rows_per_process=8)


def test_the_batch_must_hold_whole_pairs() -> None:
    spec = GRPOSpec(num_generations=3)
    spec.check_batch(6, 1)
    spec.check_batch(2, 3)
    with pytest.raises(ValueError, match=r"multiple of 2 x finetune\.grpo\.num_generations = 6"):
        spec.check_batch(8, 1)


async def test_submit_refuses_a_grpo_job_it_cannot_run(tmp_path: Path) -> None:
    from ste_core.errors import ConfigurationError

    ft = finetuner(tmp_path, max_batch_size=6)
    train = grpo_file(ft, tmp_path / "grpo.jsonl", n_pairs=2)
    model = tmp_path / "model"
    with pytest.raises(ConfigurationError, match=r"= 6 completions per generation batch"):
        await ft.submit(spec_for(model, "grpo", batch_size="max", grpo=GRPOSpec()), train)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ConfigurationError, match="vLLM is not installed here"):
            spec = spec_for(model, "grpo", batch_size=8, grpo=GRPOSpec(use_vllm=True))
            await ft.submit(spec, train)
    assert not (tmp_path / "jobs").exists()  # nothing was started


def grpo_file(ft, path: Path, n_pairs: int) -> Path:
    from ste_prompts import get_template

    template = get_template("judge_short")
    pairs = [
        ResponsePair(
            id=f"p{i}",
            instruction=f"Name a colour {i}.",
            chosen="Blue.",
            rejected="Seven.",
            modified_instruction="Name a number.",
        )
        for i in range(n_pairs)
    ]
    examples = [e for p in pairs for e in grpo_examples(p, template=template)]
    assert [e.label for e in examples[:2]] == ["A", "B"]
    assert [e.order for e in examples[:2]] == [Order.AB, Order.BA]
    ft.write_training_file(examples, FineTuneMethod.GRPO, path)
    return path


@pytest.mark.local_model
@pytest.mark.timeout(240)
async def test_two_grpo_steps_through_the_worker(taught_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    ft = finetuner(tmp_path, max_steps=2)
    train = grpo_file(ft, tmp_path / "grpo.jsonl", n_pairs=3)
    grpo = GRPOSpec(num_generations=4, max_completion_length=12, beta=0.01)
    spec = spec_for(taught_model_dir, "grpo", batch_size=8, grpo=grpo)
    job = await ft.submit(spec, train)
    state = await wait_for(ft, job.job_id, lambda s: s.status.terminal)
    assert state.status is JobStatus.SUCCEEDED, (state.message, state.events, job.job_id)
    assert any("GRPO: 3 pairs, 1 per generation batch, 4 completions" in e for e in state.events)
    status = json.loads((Path(job.job_id) / "status.json").read_text())
    assert status["steps_per_second"] > 0 and status["tokens_per_second"] > 0

    # Rewards logged per function, with the KL, to the events and the typed state.
    steps = [e for e in state.events if e.startswith("step ") and "reward/correct=" in e]
    assert [e.split()[1] for e in steps] == ["1/2", "2/2"], state.events
    assert {"reward", "reward/correct", "reward/consistency", "reward/format", "kl"} <= set(
        state.metrics
    )

    # Both orders of each pair were scored in the same reward call, 4 completions each.
    lines = (Path(job.job_id) / "completions.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    calls: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
    rewards: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        calls[row["call"]][(row["pair_id"], row["order"])] += 1
        rewards[row["call"]].append(row["rewards"]["correct"])
        assert row["rewards"]["correct"] == float(row["verdict"] == row["label"])
    assert sorted(calls) == [1, 2]
    for seen in calls.values():
        (pair,) = {p for p, _ in seen}
        assert seen == {(pair, "AB"): 4, (pair, "BA"): 4}
    assert {"A", "B"} <= {row["verdict"] for row in rows}  # rewards varied: a signal to learn
    # What was logged at each step is the mean over that step's reward call.
    for step, event in enumerate(steps, start=1):
        logged = float(event.split("reward/correct=")[1].split()[0])
        assert logged == pytest.approx(sum(rewards[step]) / 8, abs=1e-3)

    # The adapter was trained: LoRA's B matrices start at zero and moved.
    adapter = Path(state.model.model)
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(float(w.abs().sum()) > 0 for w in lora_b)
    await ft.aclose()


@pytest.mark.local_model
@pytest.mark.timeout(240)
async def test_grpo_across_two_processes_keeps_pairs_whole(
    taught_model_dir: Path, tmp_path: Path
) -> None:
    """Under accelerate launch each rank scores whole pairs: no pair is split across ranks."""
    ft = finetuner(tmp_path, max_steps=2, processes=2)
    train = grpo_file(ft, tmp_path / "grpo.jsonl", n_pairs=4)
    grpo = GRPOSpec(num_generations=2, max_completion_length=12, beta=0.0)
    job = await ft.submit(spec_for(taught_model_dir, "grpo", batch_size=4, grpo=grpo), train)
    state = await wait_for(ft, job.job_id, lambda s: s.status.terminal)
    assert state.status is JobStatus.SUCCEEDED, (state.message, state.events, job.job_id)
    # 2 ranks x 4 completions = 2 pairs per generation batch, one per rank.
    assert any("GRPO: 4 pairs, 2 per generation batch" in e for e in state.events)
    calls: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
    for line in (Path(job.job_id) / "completions.jsonl").read_text().splitlines():
        row = json.loads(line)  # rank 0's share
        calls[row["call"]][(row["pair_id"], row["order"])] += 1
    assert sorted(calls) == [1, 2]
    for seen in calls.values():
        (pair,) = {p for p, _ in seen}
        assert seen == {(pair, "AB"): 2, (pair, "BA"): 2}
    assert "reward/consistency" in state.metrics
