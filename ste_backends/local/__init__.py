"""The `local` backend: Hugging Face transformers inference and TRL/PEFT LoRA fine-tuning on the
user's own CPU or GPU, with no account and no API key.

Importing this package is cheap: torch, transformers, trl and peft are imported only inside the
methods that need them. See docs/local.md.
"""

from ste_backends.local.finetune import LocalFineTune
from ste_backends.local.inference import LocalInference

__all__ = ["LocalFineTune", "LocalInference"]
