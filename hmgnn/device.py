"""Where torch work runs: one rule for every step (training, distributed training, recommend, serve, evaluate)."""

from __future__ import annotations

import torch

from hmgnn.errors import ConfigError


def resolve_device(name: str, strict: bool = True) -> torch.device:
    """`train.device` as a torch device: `auto` is CUDA where a CUDA device is available, else the CPU. `cuda`
    without a CUDA device is a ConfigError, or with `strict=False` (ranking with a model trained elsewhere) the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        if strict:
            raise ConfigError("train.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
