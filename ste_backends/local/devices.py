"""Pick the torch device and dtype from the `device` / `dtype` options (the dtype names are
checked by the options, `ste_backends.local.options.Dtype`).

`device="auto"` prefers CUDA, then Apple MPS, then CPU. `dtype="auto"` is bfloat16 on a GPU that
supports it (else float16), float16 on MPS, and float32 on CPU: CPU matmuls in half precision
are slower than float32 on most laptops, and float32 avoids numerical surprises in sampling.
"""

from __future__ import annotations

from typing import Any

from ste_core.errors import ConfigurationError


def resolve_device(option: str) -> str:
    """'auto' -> the best available device; otherwise validate the name ('cpu', 'cuda:1', 'mps')."""
    import torch

    if option == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    kind = option.split(":", 1)[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(
            f"device = '{option}' but torch sees no CUDA GPU (torch {torch.__version__}). "
            "Use device = 'auto' or 'cpu', or install a CUDA build of torch."
        )
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigurationError(f"device = '{option}' but Apple MPS is not available here.")
    if kind not in ("cpu", "cuda", "mps", "xpu"):
        raise ConfigurationError(
            f"Unknown device '{option}'. Allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'."
        )
    return option


def resolve_dtype(option: str, device: str) -> Any:
    """The torch dtype for `option` on `device` (see the module docstring for 'auto')."""
    import torch

    if option != "auto":
        return getattr(torch, option)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32


def training_precision(device: str, option: str) -> tuple[Any, bool, bool]:
    """(dtype to load the model in, bf16 mixed precision, fp16 mixed precision) for training.

    'auto': bfloat16 on a GPU that supports it, else float32 weights with fp16 autocast on CUDA;
    float32 without autocast on CPU and MPS (half precision training there is slow or unstable).
    """
    import torch

    cuda = device.startswith("cuda")
    if option == "auto":
        if cuda and torch.cuda.is_bf16_supported():
            return torch.bfloat16, True, False
        if cuda:
            return torch.float32, False, True
        return torch.float32, False, False
    dtype = getattr(torch, option)
    return dtype, cuda and option == "bfloat16", cuda and option == "float16"
