"""The options of LocalInference and LocalFineTune (the config's `options` tables).

Importing this module imports neither torch nor transformers: the config loader validates options
with these classes before a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ste_core.backends import BackendOptions, option

Dtype = Literal["auto", "float32", "float16", "bfloat16"]


class LocalOptions(BackendOptions):
    """What both local backends take."""

    device: str = option(
        "auto",
        changes_results=False,
        help="'auto' (CUDA, then Apple MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'",
    )
    trust_remote_code: bool = option(
        False, changes_results=False, help="allow models that ship Python code"
    )


class LocalInferenceOptions(LocalOptions):
    dtype: Dtype = option(
        "auto",
        changes_results=True,
        help="'auto' (bfloat16/float16 on a GPU, float16 on MPS, float32 on CPU), 'float32', "
        "'float16' or 'bfloat16'",
    )
    batch_size: int = option(
        8, ge=1, changes_results=False, help="rows (one per choice) generated together"
    )
    repetition_penalty: float | None = option(
        None,
        gt=0,
        changes_results=True,
        help="unset keeps the model's own generation_config value; 1.0 turns it off",
    )
    local_files_only: bool = option(
        False, changes_results=False, help="never contact the Hugging Face Hub (HF_HUB_OFFLINE=1)"
    )


class LocalFineTuneOptions(LocalOptions):
    output_dir: Path | None = option(
        None,
        changes_results=False,
        help="where job directories go; default: next to the training file",
    )
    dtype: Dtype = option(
        "auto",
        changes_results=True,
        help="'auto' (bfloat16 on capable GPUs, else float32 with fp16 autocast on CUDA, float32 "
        "on CPU/MPS), 'float32', 'float16' or 'bfloat16'",
    )
    max_steps: int | None = option(
        None,
        ge=1,
        changes_results=True,
        help="stop after this many optimizer steps (unset: train all epochs)",
    )
    logging_steps: int = option(1, ge=1, changes_results=False, help="a loss event every N steps")
    gradient_checkpointing: bool | None = option(
        None,
        changes_results=False,
        help="unset: on for CUDA, off for CPU/MPS (it saves memory and costs ~20% time)",
    )
    max_batch_size: int = option(
        8,
        ge=1,
        changes_results=True,
        help='the batch size used when the spec says batch_size = "max"',
    )
    free_inference_memory: bool = option(
        True,
        changes_results=False,
        help="free the in-process inference model cache before training starts",
    )
    cancel_grace_seconds: float = option(
        10.0, ge=0, changes_results=False, help="how long cancel waits after SIGTERM before SIGKILL"
    )
    processes: int = option(
        1,
        ge=1,
        changes_results=True,
        help="training processes (data parallel, one per GPU) under `accelerate launch`; each "
        "takes batch_size examples per step",
    )
    accelerate_config: Path | None = option(
        None,
        changes_results=True,
        help="an accelerate config file (DeepSpeed, FSDP, DDP; from `accelerate config`), "
        "passed to `accelerate launch --config_file`",
    )
