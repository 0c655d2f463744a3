"""Which torch device a run uses (serving and training alike): --device auto, cpu or cuda[:N],
and what serving computes in there (--precision). Importing it costs no torch import, so
the front ends can build their options from it."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from models.errors import UserError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("float32", "bfloat16")
"""What serving computes in: bfloat16 (autocast) on a CUDA device only; float32 by default
(docs/PERFORMANCE.md, GPU, has what each costs and how far their outputs differ)."""


class DeviceError(UserError, ValueError):
    """The requested device cannot be used."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA GPU is available (use --device cpu or auto)")
        return torch.device(name)
    raise DeviceError(f"unknown device {name!r}: use auto, cpu or cuda")


def check_precision(precision: str, device: torch.device) -> None:
    """DeviceError unless ``precision`` is one of PRECISIONS and runs on ``device``."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}: use {' or '.join(PRECISIONS)}")
    if precision != "float32" and device.type != "cuda":
        raise DeviceError(f"--precision {precision} runs on a CUDA device only (this run uses {device.type})")


def computing_in(precision: str) -> contextlib.ExitStack:
    """The block serving's forward runs in: float32 convolutions (below) and, for
    ``precision`` "bfloat16", CUDA autocast to bfloat16 (see check_precision)."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(float32_convolutions())
    stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bfloat16"))
    return stack


def float32_convolutions() -> contextlib.AbstractContextManager:
    """cuDNN without TF32 inside the block (restored after): on a GPU its convolutions then
    compute in float32 as the CPU does. With TF32 (PyTorch's default for cuDNN) the served
    edge weights of the bundled student moved by up to 0.004 from the CPU's at batch 64 on
    an H100; without it by 1e-5, at no measured cost for these small convolutions."""
    import torch

    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                       allow_tf32=False)
