"""Batched generation with per-row seeds, token limits and stop strings.

A request asking for n choices becomes n *rows*. Rows from many requests are sorted by prompt
length and cut into batches (left-padded), and each batch is one `model.generate` call. Three
things `generate` does not do per row are added here:

- **Sampling with a seed per row.** `_RowSampler` draws each row's next token with that row's
  own `torch.Generator` (seeded from the request's content, its seed and the choice index) and
  hands `generate` a one-hot score, so `generate` runs in greedy mode and simply takes it. A
  row's randomness therefore never depends on which other rows share its batch: an identical
  request gives identical text (for a fixed batch composition and device; padding can change
  float rounding on some kernels). Rows with temperature 0 are left alone: plain greedy.
- **Per-row max_tokens and stop strings.** `_RowStopper` marks a row finished at its own limit,
  at an end-of-sequence token, or when a stop string appears in its recent text.
- **Finish reasons.** "stop" (end of sequence or a stop string; the text is cut before the stop
  string) or "length" (max_tokens reached).

This module imports torch and transformers inside functions only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ste_backends.local.models import LoadedModel
from ste_core.errors import PermanentProviderError, SteError
from ste_core.records import ChatRequest, content_hash


class GenerationCancelled(SteError):
    """The caller stopped waiting (e.g. Ctrl-C); the batch was abandoned mid-way."""


@dataclass(frozen=True)
class Row:
    """One choice of one request, tokenised."""

    request_index: int
    choice: int
    prompt_ids: tuple[int, ...]
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class RowResult:
    request_index: int
    choice: int
    text: str
    finish_reason: str
    completion_tokens: int


def row_seed(request: ChatRequest, choice: int) -> int:
    """The sampling seed of choice `choice` of `request` (a 63-bit int).

    Derived from what defines the token distribution (model, messages, temperature, top_p, the
    request's seed and sample index) plus the choice index. n, max_tokens and stop are left out on
    purpose: asking for more choices or more tokens extends the same samples rather than
    drawing new ones. A request without a seed is treated as seed 0, so runs are reproducible.
    """
    p = request.params
    digest = content_hash(
        request.model,
        [m.model_dump() for m in request.messages],
        p.temperature,
        p.top_p,
        p.seed if p.seed is not None else 0,
        request.sample_index,
        choice,
    )
    return int(digest[:16], 16) & ((1 << 63) - 1)


def render_prompt(tokenizer: Any, request: ChatRequest) -> list[int]:
    """The request's messages through the model's chat template, ready for the assistant turn."""
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja raises its own types, e.g. "System role not supported"
        raise PermanentProviderError(
            f"the model's chat template rejected these messages: {exc}", provider="local"
        ) from exc
    # The template already placed any BOS token; do not add another.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_rows(
    loaded: LoadedModel, requests: list[tuple[int, ChatRequest]]
) -> tuple[list[Row], dict[int, SteError], dict[int, int]]:
    """Rows for every (index, request); also per-request errors and prompt token counts."""
    rows: list[Row] = []
    errors: dict[int, SteError] = {}
    prompt_tokens: dict[int, int] = {}
    limit = _max_positions(loaded)
    for index, request in requests:
        try:
            ids = render_prompt(loaded.tokenizer, request)
        except SteError as exc:
            errors[index] = exc
            continue
        if limit is not None and len(ids) >= limit:
            errors[index] = PermanentProviderError(
                f"the prompt is {len(ids)} tokens but {loaded.base_model} takes at most {limit}; "
                "shorten the instruction or responses",
                provider="local",
            )
            continue
        prompt_tokens[index] = len(ids)
        p = request.params
        max_tokens = p.max_tokens if limit is None else min(p.max_tokens, limit - len(ids))
        for choice in range(p.n):
            rows.append(
                Row(
                    request_index=index,
                    choice=choice,
                    prompt_ids=tuple(ids),
                    temperature=p.temperature,
                    top_p=p.top_p,
                    max_tokens=max_tokens,
                    stop=tuple(s for s in p.stop if s),
                    seed=row_seed(request, choice),
                )
            )
    return rows, errors, prompt_tokens


def plan_batches(rows: list[Row], batch_size: int) -> list[list[Row]]:
    """Sort rows by prompt length (longest first, so memory trouble shows at once) and chunk.

    Similar lengths in a batch waste little compute on padding; a request's choices stay
    adjacent (same prompt), so they usually finish in the same batch.
    """
    ordered = sorted(rows, key=lambda r: (-len(r.prompt_ids), r.request_index, r.choice))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def _max_positions(loaded: LoadedModel) -> int | None:
    config = getattr(loaded.model, "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def run_batch(
    loaded: LoadedModel,
    rows: list[Row],
    *,
    repetition_penalty: float | None = None,
    cancel: threading.Event | None = None,
) -> list[RowResult]:
    """Generate every row of one batch. Splits the batch in two and retries on out-of-memory."""
    import torch

    oom_types = tuple(
        t
        for t in (
            getattr(torch, "OutOfMemoryError", None),
            getattr(torch.cuda, "OutOfMemoryError", None),
        )
        if t is not None
    )
    try:
        return _generate(loaded, rows, repetition_penalty=repetition_penalty, cancel=cancel)
    except oom_types as exc:
        if loaded.device.startswith("cuda"):
            torch.cuda.empty_cache()
        if len(rows) == 1:
            raise PermanentProviderError(
                f"out of memory generating one sequence on {loaded.device}: {exc}. Lower "
                "max_tokens, use a smaller model, or set the option device = 'cpu'",
                provider="local",
            ) from exc
        half = len(rows) // 2
        return run_batch(
            loaded, rows[:half], repetition_penalty=repetition_penalty, cancel=cancel
        ) + run_batch(loaded, rows[half:], repetition_penalty=repetition_penalty, cancel=cancel)


def _generate(
    loaded: LoadedModel,
    rows: list[Row],
    *,
    repetition_penalty: float | None,
    cancel: threading.Event | None,
) -> list[RowResult]:
    import torch
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id
    prompt_len = max(len(r.prompt_ids) for r in rows)
    input_ids = torch.tensor(
        [[pad] * (prompt_len - len(r.prompt_ids)) + list(r.prompt_ids) for r in rows],
        dtype=torch.long,
        device=loaded.device,
    )
    attention_mask = torch.tensor(
        [[0] * (prompt_len - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows],
        dtype=torch.long,
        device=loaded.device,
    )
    sampler = _RowSampler(rows, loaded.device)
    stopper = _RowStopper(rows, prompt_len, tokenizer, loaded.eos_token_ids, cancel)
    # do_sample=False: token choice is made by _RowSampler (sampled rows) or argmax (greedy
    # rows). The model's own generation_config still supplies eos ids and, unless overridden,
    # its repetition_penalty (small instruct models loop without it).
    config = GenerationConfig(
        max_new_tokens=max(r.max_tokens for r in rows),
        do_sample=False,
        pad_token_id=pad,
        eos_token_id=list(loaded.eos_token_ids) or None,
    )
    if repetition_penalty is not None:
        config.repetition_penalty = repetition_penalty
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=config,
            logits_processor=LogitsProcessorList([sampler]),
            stopping_criteria=StoppingCriteriaList([stopper]),
        )
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled("generation cancelled by the caller")

    generated = output[:, prompt_len:].tolist()
    eos = set(loaded.eos_token_ids)
    results = []
    for i, row in enumerate(rows):
        length, reason = stopper.finished[i] or (min(len(generated[i]), row.max_tokens), "length")
        ids = generated[i][:length]
        while ids and ids[-1] in eos:
            ids = ids[:-1]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        cut = _first_stop(text, row.stop)
        if cut is not None:
            text, reason = text[:cut], "stop"
        results.append(RowResult(row.request_index, row.choice, text, reason, length))
    return results


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


class _RowSampler:
    """A logits processor that samples each row with its own seeded generator (see module doc)."""

    def __init__(self, rows: list[Row], device: str) -> None:
        import torch

        self.rows = [i for i, r in enumerate(rows) if r.temperature > 0]
        # Generators live where the probabilities are; MPS generators are not reliable, use CPU.
        self.gen_device = "cpu" if device.startswith("mps") else device
        self.index = torch.tensor(self.rows, dtype=torch.long, device=device)
        self.temperature = torch.tensor(
            [rows[i].temperature for i in self.rows], dtype=torch.float32, device=device
        )
        self.top_p = torch.tensor(
            [rows[i].top_p for i in self.rows], dtype=torch.float32, device=device
        )
        self.generators = [
            torch.Generator(device=self.gen_device).manual_seed(rows[i].seed) for i in self.rows
        ]

    #: Nucleus sampling looks at the K most likely tokens first and sorts the whole vocabulary
    #: only when they hold less than top_p of the mass: a full sort of a 150k-token vocabulary
    #: costs ~25 ms per row per step on a CPU, a top-256 well under 1 ms.
    TOP_K_FIRST = 256

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if not self.rows:
            return scores
        import torch

        logits = scores[self.index].float() / self.temperature[:, None]
        probs = torch.softmax(logits, dim=-1)
        vocab = probs.shape[-1]
        chosen = []
        for r, generator in enumerate(self.generators):
            top_p = float(self.top_p[r])
            ids = None
            weights = probs[r]
            if top_p < 1.0:
                weights, ids = probs[r].topk(min(self.TOP_K_FIRST, vocab))  # most likely first
                if float(weights.sum()) < top_p:  # a flat distribution: sort it all
                    weights, ids = probs[r].sort(descending=True)
                # Drop a token when the mass before it already reaches top_p (the first token
                # is always kept).
                before = weights.cumsum(dim=-1) - weights
                weights = weights.masked_fill(before >= top_p, 0.0)
            # Inverse-CDF draw with the row's own generator (torch.multinomial over a large
            # vocabulary is ~20 ms on a CPU; a cumsum and a binary search are far cheaper).
            cdf = weights.cumsum(dim=-1)
            u = torch.rand(1, generator=generator, device=self.gen_device).to(cdf.device) * cdf[-1]
            j = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1)
            chosen.append(j if ids is None else ids[j])
        tokens = torch.cat(chosen)
        out = scores.clone()
        out[self.index] = float("-inf")
        out[self.index, tokens] = 0.0
        return out


class _RowStopper:
    """A stopping criterion with a per-row token limit, end-of-sequence tokens and stop strings.

    Records in `finished[i]` the number of generated tokens (including an end token) and the
    reason, the first time row i finishes; `generate` pads finished rows afterwards.
    """

    def __init__(
        self,
        rows: list[Row],
        prompt_len: int,
        tokenizer: Any,
        eos_token_ids: tuple[int, ...],
        cancel: threading.Event | None,
    ) -> None:
        self.rows = rows
        self.prompt_len = prompt_len
        self.tokenizer = tokenizer
        self.eos = set(eos_token_ids)
        self.cancel = cancel
        self.finished: list[tuple[int, str] | None] = [None] * len(rows)
        longest = max((len(s) for r in rows for s in r.stop), default=0)
        # A token decodes to at least one character almost always; a few spare tokens cover
        # byte-level pieces of multi-byte characters.
        self.window = longest + 4

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        n_new = input_ids.shape[1] - self.prompt_len
        last = input_ids[:, -1].tolist()
        need_text = any(self.finished[i] is None and row.stop for i, row in enumerate(self.rows))
        tails = (
            input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window) :].tolist()
            if need_text
            else None
        )
        for i, row in enumerate(self.rows):
            if self.finished[i] is not None:
                continue
            if last[i] in self.eos or (
                tails is not None
                and row.stop
                and _first_stop(self.tokenizer.decode(tails[i], skip_special_tokens=True), row.stop)
                is not None
            ):
                self.finished[i] = (n_new, "stop")
            elif n_new >= row.max_tokens:
                self.finished[i] = (n_new, "length")
        done = [f is not None for f in self.finished]
        if self.cancel is not None and self.cancel.is_set():
            done = [True] * len(done)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
