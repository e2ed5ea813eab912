"""A tiny chat model built offline: the model of `ste demo`, of the local backend's tests and of
end-to-end runs (a documented part of the package, not only of its tests).

`build_tiny_chat_model(path)` writes a Hugging Face model directory (config, safetensors weights,
a byte-level BPE tokenizer with a ChatML chat template) that `LocalInference` and `LocalFineTune`
load like any hub model, in milliseconds. Its weights are random, so its text is noise: assert on
shapes, files, token counts and determinism, never on what it says.

For an end-to-end `ste run` with backend `local`, the model must write parseable answers. Pass
`replies`: the model is then trained for a few seconds so that, for a prompt rendered from a named
`ste_prompts` template (any values), it answers one of that template's replies (uniformly at
random when sampling); key None covers every other prompt (e.g. the baseline response).
`PIPELINE_REPLIES` covers a whole run: a parseable worse response, a 50/50 judge, two baselines:

    from ste_backends.local.testing import PIPELINE_REPLIES, build_tiny_chat_model
    model_dir = build_tiny_chat_model(tmp_path / "tiny", replies=PIPELINE_REPLIES)
    # [generator] / [judge]: backend = "local", model = str(model_dir), options.device = "cpu"
    # (generator temperature > 0 gives both baseline texts; judges sample A and B)

`ste demo` (`ste_backends.local.demo`) builds one with `replies` once, caches it, and runs the
whole loop on it in under a minute (docs/local.md, "Try it in a minute").

Needs the `local` extra (torch, transformers, tokenizers); imports them only when called.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: ChatML, the format Qwen2.5 uses: the prompt rendered with add_generation_prompt=True is a
#: prefix of the prompt+completion rendering, which TRL's completion-only loss needs.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: The built-in templates whose text trains the tokenizer's merges (see `_build_tokenizer`).
TOKENIZER_TEMPLATES = (
    "classify_category",
    "judge_eval_plan",
    "judge_meta_rewardbench",
    "judge_short",
    "worse_response",
)

# Text for the BPE merges (any text still encodes: the byte alphabet is always in the vocabulary)
# and for the random filler of training prompts.
_CORPUS = """
You are a helpful assistant. Answer the question carefully and explain your reasoning.
Which response is better? Response A or Response B. Output your final verdict: [[A]] or [[B]].
Write a short story about a robot who learns to paint. Explain recursion to a child.
The quick brown fox jumps over the lazy dog. What is the capital of France? Paris.
Write a Python function that returns the sum of a list of numbers: def total(xs): return sum(xs)
Evaluate the two answers for correctness, helpfulness, clarity and relevance to the instruction.
Modified instruction: a related but different question. Answer: a high quality answer to it.
If a train travels 60 miles in 1.5 hours, its average speed is 40 miles per hour.
Give three tips for staying focused while studying at home, and say why each one works.
""".strip().splitlines()


def _pipeline_replies() -> dict[str | None, list[str]]:
    # The replies share as few words as possible: a two-layer model continues mostly from the
    # last few tokens, so a word shared by two replies lets it jump from one to the other.
    # Inline labels for the worse response: unlike the "### ..." headings they do not occur in
    # the prompt itself, which a tiny model would otherwise copy in a loop.
    verdicts = ["Response A wins. [[A]]", "Response B wins. [[B]]"]
    return {
        "worse_response": [
            "Modified question: Why do cats purr?\n\n"
            "Answer to modified instruction: Purring shows comfort."
        ],
        "judge_short": verdicts,
        "judge_eval_plan": verdicts,
        None: ["Paris is the capital of France.", "Here is my short reply."],
    }


#: Replies for a whole `ste run`: see the module docstring.
PIPELINE_REPLIES: Mapping[str | None, Sequence[str]] = _pipeline_replies()


def build_tiny_chat_model(
    path: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 1024,
    max_position_embeddings: int = 16384,
    seed: int = 0,
    replies: Mapping[str | None, Sequence[str]] | None = None,
    train_steps: int = 150,
    on_build: Callable[[], None] | None = None,
) -> Path:
    """Write a tiny Qwen2-architecture chat model and tokenizer to `path`; return the path.

    Deterministic for given arguments. Reuses `path` if it already holds a model built with the
    same arguments (a `ste_tiny_model.json` records them). With `replies`, the random model is
    trained for `train_steps` steps (a few seconds to a minute on a CPU) to answer as described
    in the module docstring. `on_build` is called just before a build starts (not when `path`
    is reused), e.g. to tell a person to wait.
    """
    out = Path(path)
    params = {
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_position_embeddings,
        "seed": seed,
        "replies": {str(k): list(v) for k, v in (replies or {}).items()},
        "train_steps": train_steps if replies else 0,
        "version": 2,
    }
    marker = out / "ste_tiny_model.json"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return out
    if on_build is not None:
        on_build()
    out.mkdir(parents=True, exist_ok=True)
    # The marker is written last: a build cut short is never taken for a finished one.
    marker.unlink(missing_ok=True)

    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bars in test output
    tokenizer = _build_tokenizer(vocab_size, max_position_embeddings)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if replies:
        _teach(model, tokenizer, replies, steps=train_steps, seed=seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker.write_text(json.dumps(params, indent=2))
    return out


def _build_tokenizer(vocab_size: int, max_length: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    import ste_prompts

    # The templates' own text in the corpus gives them long merges, so rendered prompts stay
    # short (fast tests) even with a tiny vocabulary. A fixed list, not every built-in: a new
    # template would change the merges, hence every prompt's tokens and what the taught model
    # learns in its few steps (a new built-in once made its worse responses unparseable).
    texts = list(_CORPUS)
    for name in TOKENIZER_TEMPLATES:
        template = ste_prompts.get_template(name)
        texts += [m["content"] for m in template.render(**dict.fromkeys(template.variables, ""))]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=max_length,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _teach(
    model: Any,
    tokenizer: Any,
    replies: Mapping[str | None, Sequence[str]],
    *,
    steps: int,
    seed: int,
    batch_size: int = 8,
) -> None:
    """Train `model` to answer prompts of each template with one of its replies."""
    import torch

    import ste_prompts

    rng = random.Random(seed)
    words = " ".join(_CORPUS).split()

    def filler(low: int, high: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(low, high)))

    def encode(messages: list[dict[str, str]]) -> list[int]:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(name: str | None) -> list[int]:
        if name is None:
            return encode([{"role": "user", "content": filler(3, 40)}])
        template = ste_prompts.get_template(name)
        return encode(template.render(**{v: filler(2, 60) for v in template.variables}))

    targets = {
        name: [
            [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
            for text in texts
        ]
        for name, texts in replies.items()
    }
    names = list(targets)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    # One thread: for a model this small, OpenMP threads only fight over (shared) cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_steps(model, optimizer, steps, batch_size, names, targets, prompt, rng, tokenizer)
    finally:
        torch.set_num_threads(threads)
    model.eval()


def _train_steps(
    model: Any,
    optimizer: Any,
    steps: int,
    batch_size: int,
    names: list[str | None],
    targets: dict[str | None, list[list[int]]],
    prompt: Any,
    rng: random.Random,
    tokenizer: Any,
) -> None:
    import torch

    for _ in range(steps):
        batch = []
        for _ in range(batch_size):
            name = rng.choice(names)
            batch.append((prompt(name), rng.choice(targets[name])))
        width = max(len(p) + len(t) for p, t in batch)
        ids = torch.full((batch_size, width), tokenizer.pad_token_id)
        labels = torch.full((batch_size, width), -100)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for i, (p, t) in enumerate(batch):
            ids[i, : len(p) + len(t)] = torch.tensor(p + t)
            mask[i, : len(p) + len(t)] = 1
            labels[i, len(p) : len(p) + len(t)] = torch.tensor(t)  # loss on the reply only
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
