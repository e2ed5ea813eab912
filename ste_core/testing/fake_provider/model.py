"""The fake provider's scripted "model": behaviour read from the prompt, so the whole loop runs.

How a request is understood: every built-in `ste_prompts` template is inverted (its fixed text
around the placeholders becomes a regular expression), so the fake recognises which template
rendered the messages and recovers the variables, without hard-coding any prompt wording. A
request that matches no template is a plain instruction (the last user message).

What it answers (purpose of the matched template):

- **plain instruction**: a deterministic "good" answer built from the instruction's key words. The
  answer starts with an invisible signature (zero-width characters encoding a hash of the
  instruction it answers), so the fake judge can later tell which response answers which question.
- **worse_response**: a modified instruction (the original plus a twist that asks for something
  else) and a good answer to *it*, in the exact `ste_prompts.format_worse_response` format;
  except a fraction `unparsable_rate` (default 0.1) of outputs that have no section headings (so
  `parse_worse_response` fails and the pipeline must count a drop).
- **judge** (any template whose variables include instruction, response_a, response_b): a few lines
  of reasoning, then `[[A]]` or `[[B]]` alone on the last line. It knows the better response when
  exactly one of the two states the answer of a problem in `answers` (see **solve**), or carries
  the signature of the judged instruction; otherwise it prefers the
  response sharing more key words with the instruction (ties: a seeded coin). It then picks the
  better one with probability = the model's accuracy. A fraction `no_verdict_rate` (default 0)
  of outputs carry no marker.
- **judge_ranking** (instruction, response_a..response_d): the same knowledge applied to four
  responses (the signed one, else the one with the most key words); it names the best with
  probability = the accuracy, else another, as `[[A]]`-`[[D]]` on the last line.
- **judge_rating** (instruction, response): a sentence, then a rating alone on the last line:
  8-10 for a response it judges good (signed, or sharing at least half the key words), 2-5
  otherwise, the judgement inverted with probability 1 - accuracy.
- **classifier**: a sentence, then `Category: <name>` and `Difficulty: <level>` lines, with the
  category chosen by key words among the categories listed in the prompt.
- **solve** (the verifiable recipe): a few steps, then `Answer: <x>` on the last line. The right
  answer is looked up in `answers` (problem text -> reference answer, matched with whitespace
  and case ignored), else computed when the problem holds a bare arithmetic expression
  ("What is 12 + 7 * 3?"), else unknown (a made-up number). Each sample states the right answer
  with probability = the model's accuracy (below), else a wrong one (a number off by a little);
  a fraction `unparsable_rate` of solutions state no answer and hold no number at all.

**Accuracy rule** (`model_accuracy`): the base accuracy is `accNN` in the model name (`acc70` ->
0.70; case-insensitive), else `default_accuracy` (0.75). Each fine-tune level adds `ft_step` (0.1):
the level is the largest N of any `-ftN` token in the name (a bare `-ft` counts 1; so
`m-acc70-ft2` and `m-acc70-ft1-ft2` are both level 2), or 1 for OpenAI-style `ft:...` names. A
fine-tuned model's accuracy is capped at `max(max_accuracy, base)` with `max_accuracy` = 0.95.

**Determinism**: each choice's text is a function of (model, messages, seed, choice index) when
temperature > 0, and of (model, messages, seed) at temperature 0 (so all n choices agree, like
greedy decoding). A missing seed counts as seed 0. Identical requests give identical answers;
different choice indices (or seeds) differ.

`max_tokens` truncates the text at 4 characters per token (finish_reason "length"); `stop` cuts at
the first stop string. Token counts are ceil(chars / 4).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# -- signatures -----------------------------------------------------------------------------------

_SIG_START = "\u2063"  # INVISIBLE SEPARATOR
_SIG_DIGITS = "\u200b\u200c\u200d\u2060"  # four zero-width characters = 2 bits each
_SIG_LEN = 12  # 24 bits
_SIG_RE = re.compile(_SIG_START + "([" + _SIG_DIGITS + "]{" + str(_SIG_LEN) + "})")


def _normalise(text: str) -> str:
    return " ".join(_SIG_RE.sub("", text).split()).casefold()


def signature(instruction: str) -> str:
    """The invisible marker put at the start of the fake's answer to `instruction`."""
    value = int.from_bytes(hashlib.sha256(_normalise(instruction).encode()).digest()[:3], "big")
    digits = [_SIG_DIGITS[(value >> (2 * i)) & 3] for i in range(_SIG_LEN)]
    return _SIG_START + "".join(digits)


def signatures_in(text: str) -> list[str]:
    """Every fake signature found in `text` (usually zero or one)."""
    return [_SIG_START + m.group(1) for m in _SIG_RE.finditer(text)]


def strip_signatures(text: str) -> str:
    """`text` without the invisible signatures (for display or comparisons)."""
    return _SIG_RE.sub("", text)


# -- accuracy -------------------------------------------------------------------------------------


def model_accuracy(
    model: str,
    *,
    default_accuracy: float = 0.75,
    ft_step: float = 0.1,
    max_accuracy: float = 0.95,
) -> float:
    """How often a judge named `model` picks the better response (see the module docstring)."""
    name = model.lower()
    m = re.search(r"acc(\d{1,3})(?!\d)", name)
    base = min(1.0, int(m.group(1)) / 100) if m else default_accuracy
    levels = [int(d) if d else 1 for d in re.findall(r"-ft(\d*)(?![a-z])", name)]
    level = max(levels, default=0)
    if name.startswith("ft:"):
        level = max(level, 1)
    if level == 0:
        return base
    return min(max(max_accuracy, base), base + ft_step * level)


# -- template inversion ---------------------------------------------------------------------------

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# Same placeholder syntax as ste_prompts.template: {{name}} is a literal {name}, {name} a variable.
_TOKEN = re.compile(r"\{\{(" + _IDENT + r")\}\}|\{(" + _IDENT + r")\}")


def _inverse(text: str) -> re.Pattern[str]:
    """A regex that fully matches any rendering of `text` and captures each variable."""
    parts: list[str] = []
    seen: set[str] = set()
    pos = 0
    for m in _TOKEN.finditer(text):
        parts.append(re.escape(text[pos : m.start()]))
        escaped, name = m.group(1), m.group(2)
        if escaped is not None:
            parts.append(re.escape("{" + escaped + "}"))
        elif name in seen:
            parts.append(f"(?P={name})")
        else:
            seen.add(name)
            parts.append(f"(?P<{name}>.*?)")
        pos = m.end()
    parts.append(re.escape(text[pos:]))
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class _Inverted:
    name: str
    purpose: str
    variables: frozenset[str]
    system: re.Pattern[str] | None
    user: re.Pattern[str]


class TemplateMatcher:
    """Recognises which template rendered a list of chat messages and recovers its variables."""

    def __init__(self, templates: Iterable[Any] | None = None) -> None:
        if templates is None:
            from ste_prompts import builtin_templates

            templates = builtin_templates().values()
        inverted = [
            _Inverted(
                name=t.name,
                purpose=t.purpose,
                variables=frozenset(t.all_variables),
                system=_inverse(t.system) if t.system else None,
                user=_inverse(t.user),
            )
            for t in templates
        ]
        # Templates with a system text first: they are the more specific match.
        self._templates = sorted(inverted, key=lambda t: t.system is None)

    def match(
        self, messages: Sequence[Mapping[str, str]]
    ) -> tuple[str, str, dict[str, str]] | None:
        """(template name, purpose, variables) or None when no template rendered `messages`."""
        if not messages or messages[-1].get("role") != "user":
            return None
        user = messages[-1].get("content") or ""
        system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), None)
        for t in self._templates:
            if t.system is not None and (system is None or not t.system.fullmatch(system)):
                continue
            found = t.user.fullmatch(user)
            if found:
                return t.name, t.purpose, found.groupdict()
        return None


# -- text building --------------------------------------------------------------------------------

_STOP_WORDS = """a an and are as at be but by can could did do does for from has have how i if in
into is it its me my no not of on or our please should so than that the their them then there
these this those to up us was we were what when where which who why will with would you your
write give explain describe tell make list about using use some any more most very also just"""
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*|\d+")


def keywords(text: str, limit: int = 8) -> list[str]:
    """The instruction's content words, in order, without repeats or stop words."""
    out: list[str] = []
    for w in _WORD.findall(strip_signatures(text)):
        lw = w.lower().strip("'-")
        if len(lw) > 2 and lw not in _STOP and lw not in out:
            out.append(lw)
        if len(out) >= limit:
            break
    return out


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(strip_signatures(text))}


_OPENINGS = (
    "Here is a careful answer about {topic}.",
    "Let me address {topic} step by step.",
    "A clear answer on {topic} follows.",
    "Good question about {topic}; here is what matters.",
)
_POINTS = (
    "First, consider {kw}: it is central to the request and deserves a precise treatment.",
    "Regarding {kw}, the key facts are stated plainly and checked for correctness.",
    "On {kw}: a concrete example makes the idea easy to apply.",
    "{Kw} matters here because the instruction asks for it directly.",
    "For {kw}, the common pitfalls are listed along with how to avoid them.",
)
_CLOSINGS = (
    "In short, this covers {topic} as asked.",
    "That answers the request about {topic} directly.",
    "Together these points address {topic} completely.",
)
_TWISTS = (
    "{x} Answer only for a complete beginner and leave out the main point.",
    "Instead of answering it, describe the history behind this request: {x}",
    "{x} Focus only on the disadvantages and arguments against it.",
    "Rewrite the following as a short poem rather than answering it: {x}",
    "{x} Reply with a list of related questions instead of an answer.",
)
_CATEGORY_HINTS = {
    "coding": ("code", "python", "function", "bug", "program", "script", "sql", "javascript"),
    "math": ("calculate", "sum", "equation", "integral", "probability", "solve", "number"),
    "reasoning": ("why", "logic", "puzzle", "infer", "plan", "deduce", "reason", "if"),
    "writing": ("essay", "poem", "story", "summarize", "summarise", "translate", "letter"),
    "advice": ("should", "recommend", "advice", "tips", "help me"),
    "roleplay": ("pretend", "role", "character", "act as"),
    "knowledge": ("what is", "who", "when", "explain", "history"),
}


def _rng(*parts: Any) -> random.Random:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return random.Random(int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big"))


def good_answer(instruction: str, rng: random.Random) -> str:
    """A deterministic on-topic answer to `instruction`, signed with its signature."""
    kws = keywords(instruction) or ["your request"]
    topic = ", ".join(kws[:3])
    lines = [rng.choice(_OPENINGS).format(topic=topic), ""]
    for i, kw in enumerate(kws[:5], 1):
        lines.append(f"{i}. " + rng.choice(_POINTS).format(kw=kw, Kw=kw[:1].upper() + kw[1:]))
    lines += ["", rng.choice(_CLOSINGS).format(topic=topic)]
    lines.append(f"(Draft {rng.randrange(10**6):06d}.)")
    return signature(instruction) + "\n".join(lines)


# -- the model ------------------------------------------------------------------------------------


@dataclass
class ScriptedModel:
    """Generates the fake provider's answers (see the module docstring for the rules)."""

    unparsable_rate: float = 0.1
    no_verdict_rate: float = 0.0
    default_accuracy: float = 0.75
    ft_step: float = 0.1
    max_accuracy: float = 0.95
    matcher: TemplateMatcher | None = None
    #: reference answers of the problems the fake can solve (problem text -> answer)
    answers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._answers = {_normalise(k): v for k, v in self.answers.items()}
        for name in ("unparsable_rate", "no_verdict_rate", "default_accuracy", "max_accuracy"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"ScriptedModel.{name} must be in [0, 1], got {v}")

    def _matcher(self) -> TemplateMatcher:
        if self.matcher is None:
            self.matcher = TemplateMatcher()
        return self.matcher

    def accuracy(self, model: str) -> float:
        return model_accuracy(
            model,
            default_accuracy=self.default_accuracy,
            ft_step=self.ft_step,
            max_accuracy=self.max_accuracy,
        )

    def generate(
        self,
        model: str,
        messages: Sequence[Mapping[str, str]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        seed: int | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
    ) -> list[tuple[str, str]]:
        """n (text, finish_reason) pairs for one chat request."""
        found = self._matcher().match(messages)
        msgs = [{"role": m.get("role"), "content": m.get("content")} for m in messages]
        out = []
        for i in range(n):
            rng = _rng(model, msgs, seed or 0, i if temperature > 0 else 0)
            text = self._one(model, messages, found, rng)
            out.append(_limit(text, max_tokens, stop))
        return out

    def _one(
        self,
        model: str,
        messages: Sequence[Mapping[str, str]],
        found: tuple[str, str, dict[str, str]] | None,
        rng: random.Random,
    ) -> str:
        if found is not None:
            _name, purpose, values = found
            judge_vars = {"instruction", "response_a", "response_b"}
            if purpose == "worse_response" and "instruction" in values:
                return self._worse(values["instruction"], rng)
            if purpose == "judge_ranking" and {*judge_vars, "response_c", "response_d"} <= set(
                values
            ):
                return self._rank(model, values, rng)
            if purpose == "judge_rating" and {"instruction", "response"} <= values.keys():
                return self._rate(model, values, rng)
            if judge_vars <= values.keys():  # any judge-shaped template, built-in or not
                return self._judge(model, values, rng)
            if purpose == "classifier" and "instruction" in values:
                return self._classify(values["instruction"], values.get("categories", ""), rng)
            if purpose == "solve" and "problem" in values:
                return self._solve(model, values["problem"], rng)
        user = next(
            (m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), ""
        )
        return good_answer(user, rng)

    def _worse(self, instruction: str, rng: random.Random) -> str:
        from ste_prompts import format_worse_response

        modified = rng.choice(_TWISTS).format(x=" ".join(instruction.split()))
        answer = good_answer(modified, rng)
        if rng.random() < self.unparsable_rate:
            # No section headings at all: parse_worse_response must report a failure.
            return "Sure, here is a different take.\n\n" + answer
        return format_worse_response(modified, answer)

    def _judge(self, model: str, values: Mapping[str, str], rng: random.Random) -> str:
        instruction, a, b = values["instruction"], values["response_a"], values["response_b"]
        own = signature(instruction)
        a_signed, b_signed = own in signatures_in(a), own in signatures_in(b)
        right = self._answers.get(_normalise(instruction))
        a_right, b_right = _states(a, right), _states(b, right)
        if a_right != b_right:
            better, basis = ("A" if a_right else "B"), "reaches the right final answer"
        elif a_signed != b_signed:
            better, basis = ("A" if a_signed else "B"), "answers the question that was asked"
        else:
            kws = set(keywords(instruction, limit=20))
            sa, sb = len(kws & _words(a)), len(kws & _words(b))
            better = ("A" if sa > sb else "B") if sa != sb else rng.choice("AB")
            basis = "covers more of what the question asks about"
        correct = rng.random() < self.accuracy(model)
        verdict = better if correct else ("B" if better == "A" else "A")
        other = "B" if verdict == "A" else "A"
        criteria = rng.sample(
            ["relevance", "correctness", "completeness", "clarity", "faithfulness"], 3
        )
        lines = [
            f"Checking both responses for errors: response {other} drifts from the question "
            f"in places, while response {verdict} stays on it.",
            "Rubric for this question: " + ", ".join(criteria) + ".",
            f"Assessment: response {verdict} {basis}; response {other} is weaker on {criteria[0]}.",
            f"Confidence: {rng.random():.4f}.",
        ]
        if rng.random() < self.no_verdict_rate:
            lines.append("Both responses have merit and I cannot decide between them.")
        else:
            lines.append(f"[[{verdict}]]")
        return "\n".join(lines)

    def _solve(self, model: str, problem: str, rng: random.Random) -> str:
        from ste_prompts import format_solution

        steps = (
            # no digits here: a solution without an answer line must hold no number at all
            f"Reading the problem: it is about {', '.join(_topic(problem)) or 'quantities'}."
            "\nWorking through the quantities one step at a time and checking each step."
        )
        if rng.random() < self.unparsable_rate:
            return steps + "\nI could not finish the calculation."
        right = self._answers.get(_normalise(problem)) or _arithmetic(problem)
        if right is not None and rng.random() < self.accuracy(model):
            return format_solution(steps, right)
        return format_solution(steps, _wrong(right, rng))

    def _quality(self, instruction: str, response: str) -> tuple[bool, int]:
        """(carries the instruction's signature, key words of the instruction it shares)."""
        kws = set(keywords(instruction, limit=20))
        return signature(instruction) in signatures_in(response), len(kws & _words(response))

    def _rank(self, model: str, values: Mapping[str, str], rng: random.Random) -> str:
        letters = "ABCD"
        scores = [self._quality(values["instruction"], values[f"response_{x.lower()}"])
                  for x in letters]  # fmt: skip
        top = max(scores)
        best = rng.choice([x for x, q in zip(letters, scores, strict=True) if q == top])
        if rng.random() >= self.accuracy(model):
            best = rng.choice([x for x in letters if x != best])
        return f"Answer {best} addresses the question most directly of the four.\n[[{best}]]"

    def _rate(self, model: str, values: Mapping[str, str], rng: random.Random) -> str:
        signed, shared = self._quality(values["instruction"], values["response"])
        wanted = len(set(keywords(values["instruction"], limit=20)))
        good = signed or (not signatures_in(values["response"]) and 2 * shared >= max(1, wanted))
        if rng.random() >= self.accuracy(model):
            good = not good
        rating = rng.choice([8, 9, 10]) if good else rng.choice([2, 3, 4, 5])
        return f"The answer is {'on topic' if good else 'off topic'} for this question.\n\n{rating}"

    def _classify(self, instruction: str, categories_text: str, rng: random.Random) -> str:
        from ste_prompts import DEFAULT_CATEGORIES, format_category

        names = re.findall(r"^\s*-\s*([^:\n]+?)\s*(?::|$)", categories_text, re.MULTILINE)
        names = names or list(DEFAULT_CATEGORIES)
        low = instruction.lower()
        scored = [
            (sum(h in low for h in _CATEGORY_HINTS.get(name.lower(), ())), name) for name in names
        ]
        best = max(s for s, _ in scored)
        pick = (
            next(name for s, name in scored if s == best)
            if best > 0
            else ("other" if "other" in names else rng.choice(names))
        )
        words = len(instruction.split())
        difficulty = "easy" if words < 12 else "medium" if words < 40 else "hard"
        return format_category(
            pick, difficulty, rationale=f"The instruction is mostly about {pick}."
        )


_EXPRESSION = re.compile(r"\d+(?:\.\d+)?(?:\s*[-+*/]\s*\d+(?:\.\d+)?)+")
_OPERATORS = {ast.Add: float.__add__, ast.Sub: float.__sub__, ast.Mult: float.__mul__}


def _arithmetic(problem: str) -> str | None:
    """The value of the longest bare arithmetic expression in `problem` (+, -, *, / over
    numbers, no parentheses), or None when there is none (or it divides by zero)."""
    found = sorted(_EXPRESSION.findall(problem), key=len)
    if not found:
        return None

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return value(node.left) / value(node.right)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("not arithmetic")

    try:
        result = value(ast.parse(found[-1], mode="eval").body)
    except (ValueError, SyntaxError, ZeroDivisionError):
        return None
    return str(int(result)) if result.is_integer() else f"{result:.6g}"


def _states(solution: str, answer: str | None) -> bool:
    """Whether `solution` states `answer` as its final answer (False for an unknown answer)."""
    from ste_prompts import parse_final_answer

    found = parse_final_answer(solution)
    return answer is not None and getattr(found, "answer", None) == answer


def _topic(problem: str) -> list[str]:
    return [w for w in keywords(problem) if w.isalpha()][:3]


def _wrong(right: str | None, rng: random.Random) -> str:
    """An answer that is not `right`: a number off by a little, or a made-up one."""
    try:
        number = float((right or "").replace(",", ""))
    except ValueError:
        return f"not {right}" if right else str(rng.randrange(2, 1000))
    off = number + rng.choice((-3, -2, -1, 1, 2, 5, 10))
    return str(int(off)) if off.is_integer() else f"{off:.6g}"


def _limit(text: str, max_tokens: int | None, stop: Sequence[str]) -> tuple[str, str]:
    reason = "stop"
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    if max_tokens is not None and len(text) > max_tokens * 4:
        text, reason = text[: max_tokens * 4], "length"
    return text, reason


def count_tokens(text: str) -> int:
    """The fake's token count: ceil(chars / 4)."""
    return math.ceil(len(text) / 4)
