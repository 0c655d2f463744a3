"""Which torch device a run uses (serving and training alike): --device auto, cpu or cuda[:N]."""

from __future__ import annotations

import torch

from models.errors import UserError


class DeviceError(UserError, ValueError):
    """The requested device cannot be used."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA GPU is available (use --device cpu or auto)")
        return torch.device(name)
    raise DeviceError(f"unknown device {name!r}: use auto, cpu or cuda")
