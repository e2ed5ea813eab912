"""`ste init`: a commented starting config for one provider, that loads as written.

Each provider's config is the same loop (one iteration, small sizes, both orders, the short
judge template) with the sections that differ: which backend generates, judges and fine-tunes,
the key to export, and what it costs. Every key written here is one `load_config` accepts; the
comments say what to change first.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["PROVIDERS", "Provider", "scaffold"]

Provider = Literal["local", "together", "openai-compatible", "litellm"]
PROVIDERS: tuple[Provider, ...] = ("local", "together", "openai-compatible", "litellm")

#: the model each provider's config starts from (any model the provider serves works)
DEFAULT_MODELS: dict[Provider, str] = {
    "local": "Qwen/Qwen2.5-0.5B-Instruct",
    "together": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    "openai-compatible": "Qwen/Qwen2.5-7B-Instruct",
    "litellm": "anthropic/claude-3-5-haiku-latest",
}

_HEAD = """\
# ste config for the {provider} provider, written by `ste init`.
# Run it:       ste run {filename}
# Check it:     ste run {filename} --plan        (the stages, in order)
# Every key:    docs/pipeline.md; backend options: ste backends --options {backend}
{setup}
[run]
name = "{name}"
output_dir = "runs"
# One iteration shows the loop; the paper runs several (each fine-tunes on the last judge).
iterations = 1
seed = 0

[data]
# A JSONL file of {{"instruction": "..."}} lines (relative to this file).
path = "{data}"
# Instructions used for training; another 10 (evaluation.eval_size) are held out for scoring.
train_size = 40
"""

_SECTIONS: dict[Provider, str] = {
    "local": """
[generator]
backend = "local"
model = "{model}"

[generator.params]
temperature = 0.0
max_tokens = 384

[judge]
backend = "local"
model = "{model}"
template = "judge_short"   # `ste templates` lists the others (judge_eval_plan: the paper's)
samples_per_order = 2

[judge.params]
temperature = 0.7
max_tokens = 256

[finetune]
backend = "local"
method = "sft"
learning_rate = 2e-4
batch_size = 4
max_length = 1536

[finetune.lora]
r = 16
alpha = 32
""",
    "together": """
[generator]
backend = "together"
model = "{model}"

[generator.params]
temperature = 0.0
max_tokens = 1024

[generator.limits]
concurrency = 8

[judge]
backend = "together"
model = "{model}"
template = "judge_short"   # `ste templates` lists the others (judge_eval_plan: the paper's)
samples_per_order = 2

[judge.params]
temperature = 0.7
max_tokens = 1024

[judge.limits]
concurrency = 8

[finetune]
backend = "together"
method = "sft"
learning_rate = 1e-5
batch_size = 8

[finetune.lora]
r = 16
alpha = 32

[finetune.options]
# serverless where Together serves the adapter, else a dedicated endpoint (billed by the hour,
# deleted when the run no longer needs it; `ste cleanup RUN_DIR` removes what a dead run left).
serving = "auto"
auto_shutdown_minutes = 30

[budget]
# The run stops before going over (all sessions of the run, fine-tunes and endpoints included).
max_cost_usd = 20.0
""",
    "openai-compatible": """
[generator]
backend = "openai"
model = "{model}"

[generator.options]
# Any OpenAI-compatible server: vLLM (`vllm serve {model} --port 8000`), SGLang, ...
base_url = "http://127.0.0.1:8000/v1"

[generator.params]
temperature = 0.0
max_tokens = 1024

[judge]
backend = "openai"
model = "{model}"
template = "judge_short"   # `ste templates` lists the others (judge_eval_plan: the paper's)
samples_per_order = 2

[judge.options]
base_url = "http://127.0.0.1:8000/v1"

[judge.params]
temperature = 0.7
max_tokens = 1024

[finetune]
# Fine-tunes on this machine (pip install 'self-taught-evaluators[local]'); the adapter then
# judges through the local backend.
backend = "local"
method = "sft"
learning_rate = 1e-4
batch_size = 4

[finetune.lora]
r = 16
alpha = 32
""",
    "litellm": """
[generator]
backend = "litellm"
model = "{model}"   # any model litellm reaches: provider/model

[generator.params]
temperature = 0.0
max_tokens = 1024

[judge]
backend = "litellm"
model = "{model}"
template = "judge_short"   # `ste templates` lists the others (judge_eval_plan: the paper's)
samples_per_order = 2

[judge.params]
temperature = 0.7
max_tokens = 1024

[finetune]
# litellm does not fine-tune: train a LoRA judge on this machine from an open base model
# (pip install 'self-taught-evaluators[local]').
backend = "local"
base_model = "Qwen/Qwen2.5-0.5B-Instruct"
method = "sft"
learning_rate = 2e-4
batch_size = 4

[finetune.lora]
r = 16
alpha = 32

[budget]
max_requests = 2000
""",
}

_TAIL = """
[evaluation]
# Held-out pairs every judge is scored on; 10 give a 95% interval of about +-30 points.
eval_size = 10
"""

_SETUP: dict[Provider, str] = {
    "local": "# No key needed: the model runs here (pip install 'self-taught-evaluators[local]')\n",
    "together": "# Key:          export TOGETHER_API_KEY=...   (never in this file)\n",
    "openai-compatible": (
        "# Key:          a local server needs none; for a hosted one set OPENAI_API_KEY.\n"
    ),
    "litellm": "# Key:          the provider's usual variable (e.g. ANTHROPIC_API_KEY).\n",
}

_BACKEND: dict[Provider, str] = {
    "local": "local",
    "together": "together",
    "openai-compatible": "openai",
    "litellm": "litellm",
}


def scaffold(
    provider: Provider,
    *,
    name: str = "my-judge",
    model: str | None = None,
    data: str = "instructions.jsonl",
    filename: str = "ste.toml",
) -> str:
    """The config text for `provider` (see the module docstring)."""
    fields = {
        "provider": provider,
        "backend": _BACKEND[provider],
        "setup": _SETUP[provider],
        "name": name,
        "model": model or DEFAULT_MODELS[provider],
        "data": data,
        "filename": filename,
    }
    return (_HEAD + _SECTIONS[provider] + _TAIL).format(**fields)
