"""Load a chat model (hub id, local directory, or LoRA adapter directory) and keep it cached.

One process-wide cache, shared by every `LocalInference` instance, holds at most
`capacity` models (default 1). Asking for another model evicts the least recently used one and
frees its memory (CPU RAM, or GPU memory through `torch.cuda.empty_cache()`), so switching from the
seed judge to the fine-tuned judge never holds both. `release_models()` frees everything; the
backend's `aclose()` and the fine-tune backend's `serve()` exit call it.

A directory containing `adapter_config.json` is a PEFT LoRA adapter: its base model
(`base_model_name_or_path`) is loaded and the adapter attached on top, unmerged, so fine-tuned
iterations never write full model weights to disk.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ste_core import hub
from ste_core.errors import ConfigurationError

log = logging.getLogger("ste_backends.local")

#: Serialises model loading and generation: one batch at a time owns the device.
DEVICE_LOCK = threading.RLock()


@dataclass
class LoadedModel:
    """A model ready to generate: weights on `device`, tokenizer set for left padding."""

    name: str
    base_model: str
    adapter_dir: str | None
    model: Any
    tokenizer: Any
    device: str
    dtype: Any
    eos_token_ids: tuple[int, ...]


def adapter_base_model(path: str | Path) -> str | None:
    """The base model named by a PEFT adapter directory, or None if `path` is not one."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"Cannot read the LoRA adapter config {config}: {exc}") from exc
    if not base:
        raise ConfigurationError(
            f"{config} names no base_model_name_or_path, so the base model to attach the adapter "
            "to is unknown. Add it to the file."
        )
    return str(base)


def not_found_message(name: str, exc: BaseException) -> str:
    """An actionable message for a model that could not be loaded."""
    if not hub.is_hub_id(name):
        path = Path(name).expanduser()
        what = "does not exist" if not path.exists() else "is not a model directory"
        return (
            f"Could not load model '{name}': the path {what} (a model directory holds config.json "
            "and tokenizer files; a LoRA adapter directory holds adapter_config.json). "
            f"Underlying error: {exc}"
        )
    if hub.is_hub_id(name) and not hub.offline_by_environment() and not hub.hub_reachable():
        return (
            f"Could not load model '{name}': the Hugging Face Hub ({hub.hub_endpoint()}) cannot "
            "be reached from this machine and the model is not in the local cache "
            "(~/.cache/huggingface). Download it where the Hub is reachable (`hf download "
            f"{name}`) and copy the cache here, or set the model to a local directory path. "
            "Set HF_HUB_OFFLINE=1 to never contact the Hub."
        )
    return (
        f"Could not load model '{name}' ({exc}). If it is a Hugging Face Hub id, check the "
        "spelling and your internet connection: the model downloads from the Hub on first use "
        "and is cached (~/.cache/huggingface). On a machine without internet, download it "
        f"elsewhere (`hf download {name}`) and copy the cache, then set HF_HUB_OFFLINE=1 so "
        "transformers only reads the local cache; or set the model to a local directory path."
    )


def load_model(
    name: str,
    *,
    device: str,
    dtype: Any,
    trust_remote_code: bool = False,
    local_files_only: bool = False,
) -> LoadedModel:
    """Load `name` (hub id, model directory or adapter directory) onto `device`, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = adapter_base_model(name)
    adapter_dir = str(Path(name).resolve()) if base is not None else None
    base_model = base if base is not None else name
    # An adapter directory written by LocalFineTune carries the tokenizer (and its chat template)
    # it was trained with; prefer it over the base model's.
    tokenizer_source = (
        adapter_dir
        if adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").is_file()
        else base_model
    )
    from transformers.utils import logging as hf_logging

    # transformers' own "Loading weights" bars would interleave with ste's progress lines; the
    # Hub's download bars (huggingface_hub) stay on, so a first download still shows progress.
    hf_logging.disable_progress_bar()
    common = {
        "trust_remote_code": trust_remote_code,
        "local_files_only": hub.cache_only(base_model, local_files_only),
    }
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **common)
        model: Any = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype, **common)
    except OSError as exc:
        raise ConfigurationError(not_found_message(base_model, exc)) from exc
    if adapter_dir is not None:
        from peft import PeftModel

        try:
            with warnings.catch_warnings():
                # peft calls a transformers property deprecated in v5; nothing for users to do.
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
                model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigurationError(
                f"Could not attach the LoRA adapter {adapter_dir} to {base_model}: {exc}"
            ) from exc
    model.to(device)
    model.eval()

    if getattr(tokenizer, "chat_template", None) is None:
        raise ConfigurationError(
            f"Model '{name}' has no chat template, so chat messages cannot be formatted for it. "
            "Use an instruction-tuned (chat) model, e.g. Qwen/Qwen2.5-0.5B-Instruct."
        )
    tokenizer.padding_side = "left"  # decoder-only batches pad on the left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos: set[int] = set()
    for ids in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(ids, int):
            eos.add(ids)
        elif ids:
            eos.update(int(i) for i in ids)
    log.info(
        "loaded %s on %s (%s)%s",
        base_model,
        device,
        dtype,
        f" + adapter {adapter_dir}" if adapter_dir else "",
    )
    return LoadedModel(
        name=name,
        base_model=base_model,
        adapter_dir=adapter_dir,
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        eos_token_ids=tuple(sorted(eos)),
    )


class ModelCache:
    """Least-recently-used cache of loaded models, keyed by (name, device, dtype, options)."""

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = capacity
        self._models: OrderedDict[tuple[Any, ...], LoadedModel] = OrderedDict()
        self.loads = 0  # how many times a model was loaded (tests and stats)

    def get(self, name: str, *, device: str, dtype: Any, **options: Any) -> LoadedModel:
        """The loaded model for `name`, loading it (and evicting others) if needed."""
        key = (_cache_name(name), device, str(dtype), tuple(sorted(options.items())))
        with DEVICE_LOCK:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            # Free before loading: on a GPU the old and new model may not fit together.
            while len(self._models) >= self.capacity:
                self._evict(next(iter(self._models)))
            loaded = load_model(name, device=device, dtype=dtype, **options)
            self._models[key] = loaded
            self.loads += 1
            return loaded

    def release(self, name: str | None = None) -> int:
        """Free the cached model(s) named `name` (all if None); return how many were freed."""
        with DEVICE_LOCK:
            keys = [k for k in self._models if name is None or k[0] == _cache_name(name)]
            for key in keys:
                self._evict(key)
            return len(keys)

    def loaded_names(self) -> list[str]:
        return [m.name for m in self._models.values()]

    def _evict(self, key: tuple[Any, ...]) -> None:
        loaded = self._models.pop(key)
        device = loaded.device
        del loaded
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        elif device.startswith("mps"):
            import torch

            torch.mps.empty_cache()


def _cache_name(name: str) -> str:
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


#: The process-wide cache used by LocalInference.
MODEL_CACHE = ModelCache(capacity=1)


def release_models(name: str | None = None) -> int:
    """Free the process-wide cache (or one model in it). Returns how many models were freed."""
    return MODEL_CACHE.release(name)
