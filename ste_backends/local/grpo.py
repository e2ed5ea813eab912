"""GRPO for the training worker: TRL's GRPOTrainer with the judge rewards and pair batches.

`grpo_trainer` builds the trainer of a `method = "grpo"` job from the worker's model, tokenizer,
LoRA config and the common TrainingArguments:

* **Rewards.** `REWARD_FUNCTIONS` adapts `ste_core.training.rewards` to TRL's reward-function
  signature (`prompts`, `completions`, the dataset's extra columns as lists: `label`,
  `pair_id`, `order`, `parser`, `verdict_rule`), weighted by `[finetune.grpo.rewards]`. TRL
  logs each one's mean as `rewards/<name>/mean`.
* **Pair batches.** `PairSampler` replaces TRL's RepeatSampler: it shuffles pairs, not rows, and
  puts a pair's two orders side by side, each repeated `num_generations` times, so the
  consistency reward sees both orders of every pair in the same reward call.
* **Several processes** (accelerate): every rank draws the same sequence (same seed) and
  accelerate hands rank r the r-th slice of `per_device_train_batch_size x
  steps_per_generation` rows of each generation batch. That slice holds whole pairs when it is
  a multiple of 2 x num_generations rows, which `PairSampler` checks (and, before the job
  starts, `GRPOSpec.check_batch`): a pair is never split across ranks, so no gather is needed.
* **What it sampled.** The main process appends every scored completion, its verdict, its
  rewards and the call it was scored in to `<job dir>/completions.jsonl`.

Imported only by the worker (it needs torch and trl).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler
from trl import GRPOConfig, GRPOTrainer

from ste_backends.local.jobs import JobFiles
from ste_core.training.rewards import (
    REWARDS,
    consistency_rewards,
    correct_rewards,
    format_rewards,
)
from ste_prompts import get_parser

__all__ = ["REWARD_FUNCTIONS", "PairSampler", "grpo_trainer"]


# --------------------------------------------------------------------------------------------
# Rewards, as TRL calls them
# --------------------------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """The text of one completion: conversational (a list of messages) or plain."""
    if isinstance(completion, list):
        return str(completion[-1]["content"]) if completion else ""
    return str(completion)


def verdict_reader(parser: str, rule: str | None) -> Callable[[str], Any]:
    """The judge template's reading of a judgement: its parser, with its verdict rule."""
    parse = get_parser(parser)
    return parse if rule is None else functools.partial(parse, rule=rule)


def _readers(parsers: Sequence[str], rules: Sequence[str | None]) -> list[Callable[[str], Any]]:
    return [verdict_reader(p, r) for p, r in zip(parsers, rules, strict=True)]


def _verdicts(
    completions: Sequence[Any], parsers: Sequence[str], rules: Sequence[str | None]
) -> list[str | None]:
    readers = _readers(parsers, rules)
    return [read(completion_text(c)).verdict for c, read in zip(completions, readers, strict=True)]


def correct(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    *,
    label: list[str],
    parser: list[str],
    verdict_rule: list[str | None],
    **_: Any,
) -> list[float]:
    return correct_rewards(_verdicts(completions, parser, verdict_rule), label)


def consistency(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    *,
    label: list[str],
    parser: list[str],
    verdict_rule: list[str | None],
    pair_id: list[str],
    order: list[str],
    **_: Any,
) -> list[float | None]:
    verdicts = _verdicts(completions, parser, verdict_rule)
    return consistency_rewards(verdicts, label, pair_id, order)


def verdict_format(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    *,
    parser: list[str],
    verdict_rule: list[str | None],
    **_: Any,
) -> list[float]:
    texts = [completion_text(c) for c in completions]
    return format_rewards(texts, _readers(parser, verdict_rule))


#: TRL reward functions by reward name (the fields of GRPORewardWeights, in that order)
REWARD_FUNCTIONS: dict[str, Callable[..., list[Any]]] = {
    "correct": correct,
    "consistency": consistency,
    "format": verdict_format,
}
# TRL names a reward's logged metrics after its function: make them the config's names.
for _name, _function in REWARD_FUNCTIONS.items():
    _function.__name__ = _name
assert tuple(REWARD_FUNCTIONS) == REWARDS


# --------------------------------------------------------------------------------------------
# Batches of whole pairs
# --------------------------------------------------------------------------------------------


class PairSampler(Sampler[int]):
    """TRL's RepeatSampler over pairs: both orders of a pair in the same generation batch.

    Yields, per generation batch of `batch_pairs` pairs (seeded shuffle of the pairs; a last,
    incomplete batch is dropped, as TRL does), `repeat_count` times: for each pair, its first
    row `num_generations` times, then its second. `rows_per_process` is one process's share of
    a generation batch (per_device_train_batch_size x steps_per_generation).
    """

    def __init__(
        self,
        pair_ids: Sequence[str],
        *,
        num_generations: int,
        rows_per_process: int,
        num_processes: int = 1,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        whole = 2 * num_generations
        if rows_per_process % whole:
            raise ValueError(
                f"a process's share of a generation batch ({rows_per_process} completions) must "
                f"be a multiple of 2 x num_generations = {whole}, so that no pair is split "
                "across processes or batches"
            )
        rows: dict[str, list[int]] = {}
        for i, pair in enumerate(pair_ids):
            rows.setdefault(pair, []).append(i)
        uneven = [p for p, r in rows.items() if len(r) != 2]
        if uneven:
            raise ValueError(
                f"{len(uneven)} pair(s) do not have exactly two rows (one per order) in the "
                f"training file, e.g. {uneven[0]!r}; GRPO needs both orders of every pair"
            )
        self.pairs = list(rows.values())
        self.num_generations = num_generations
        self.batch_pairs = num_processes * rows_per_process // whole
        self.repeat_count = repeat_count
        self.shuffle = shuffle
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)

    def __iter__(self) -> Iterator[int]:
        n = len(self.pairs)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).tolist()
        else:
            order = list(range(n))
        for start in range(0, n - self.batch_pairs + 1, self.batch_pairs):
            chunk = order[start : start + self.batch_pairs]
            for _ in range(self.repeat_count):
                for p in chunk:
                    for row in self.pairs[p]:
                        yield from [row] * self.num_generations

    def __len__(self) -> int:
        batches = len(self.pairs) // self.batch_pairs
        return batches * self.batch_pairs * 2 * self.num_generations * self.repeat_count


class PairGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with `PairSampler` and a record of what it sampled (completions.jsonl)."""

    def __init__(self, *args: Any, job_files: JobFiles, **kwargs: Any) -> None:
        self._job_files = job_files
        self._reward_calls = 0
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, dataset: Any = None) -> Sampler[int]:
        data: Any = self.train_dataset if dataset is None else dataset
        args: Any = self.args  # a GRPOConfig
        return PairSampler(
            data["pair_id"],
            num_generations=args.num_generations,
            rows_per_process=args.per_device_train_batch_size * args.steps_per_generation,
            num_processes=self.accelerator.num_processes,
            repeat_count=self.num_iterations * args.steps_per_generation,
            shuffle=bool(self.shuffle_dataset),
            seed=args.seed,
        )

    def _calculate_rewards(
        self, inputs: list[dict[str, Any]], prompts: Any, completions: Any, ids: Any
    ) -> Any:
        rewards = super()._calculate_rewards(inputs, prompts, completions, ids)
        self._reward_calls += 1
        if self.accelerator.is_main_process:
            # The gathered rewards start with the main process's own rows.
            mine = rewards[: len(inputs)].tolist()
            self._record(inputs, completions, mine)
        return rewards

    def _record(
        self, inputs: list[dict[str, Any]], completions: Any, rewards: list[list[float]]
    ) -> None:
        path = self._job_files.dir / "completions.jsonl"
        with path.open("a", encoding="utf-8") as fh:
            for row, completion, values in zip(inputs, completions, rewards, strict=True):
                text = completion_text(completion)
                line = {
                    "call": self._reward_calls,
                    "step": self.state.global_step,
                    "pair_id": row["pair_id"],
                    "order": row["order"],
                    "label": row["label"],
                    "verdict": verdict_reader(row["parser"], row.get("verdict_rule"))(text).verdict,
                    # NaN (a reward that did not apply) is not JSON: null.
                    "rewards": {
                        name: None if math.isnan(v) else v
                        for name, v in zip(REWARDS, values, strict=True)
                    },
                    "completion": text,
                }
                fh.write(json.dumps(line) + "\n")


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


def grpo_config(job: dict[str, Any], common: dict[str, Any]) -> Any:
    """TRL's GRPOConfig of `job` (its `grpo` settings) over the common TrainingArguments."""
    grpo = job["grpo"]
    weights = grpo["rewards"]
    vllm: dict[str, Any] = {"use_vllm": bool(job["use_vllm"])}
    if job["use_vllm"]:
        vllm["vllm_mode"] = grpo["vllm_mode"]
        if grpo.get("vllm_server_base_url"):
            vllm["vllm_server_base_url"] = grpo["vllm_server_base_url"]
    # max_length is SFT/DPO's: GRPO bounds the completion instead and keeps prompts whole.
    args = {k: v for k, v in common.items() if k != "max_length"}
    return GRPOConfig(
        **args,
        num_generations=grpo["num_generations"],
        max_completion_length=grpo["max_completion_length"],
        beta=grpo["beta"],
        temperature=grpo["temperature"],
        reward_weights=[float(weights[name]) for name in REWARDS],
        log_completions=False,  # completions.jsonl holds them
        **vllm,
    )


def grpo_trainer(
    job: dict[str, Any],
    files: JobFiles,
    *,
    model: Any,
    tokenizer: Any,
    peft_config: Any,
    train_dataset: Any,
    common: dict[str, Any],
    callbacks: list[Any],
) -> Any:
    """The GRPO trainer of `job`, ready to `train()`."""
    config = grpo_config(job, common)
    pairs = len(set(train_dataset["pair_id"]))
    per_batch = config.generation_batch_size // (2 * config.num_generations)
    if pairs < per_batch:
        raise ValueError(
            f"the training file has {pairs} pairs, fewer than one generation batch needs "
            f"({per_batch} pairs = batch_size x gradient_accumulation_steps / "
            "(2 x num_generations)); lower finetune.batch_size or add instructions"
        )
    generation = f"vLLM ({config.vllm_mode})" if config.use_vllm else "transformers generate"
    files.add_event(
        f"GRPO: {pairs} pairs, {per_batch} per generation batch, {config.num_generations} "
        f"completions per prompt, beta={config.beta}, generation with {generation}"
    )
    return PairGRPOTrainer(
        model=model,
        reward_funcs=list(REWARD_FUNCTIONS.values()),
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        job_files=files,
    )
