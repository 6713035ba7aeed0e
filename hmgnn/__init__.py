"""hmgnn: personalised top-12 H&M fashion recommendations with a graph neural network.

`hmgnn.load(workdir)` gives a trained workdir's recommender (see `hmgnn.api`); the CLI is `hmgnn`.
"""

import os

__version__ = "0.1.0"

# torch's CPU allocator asks for transparent huge pages for its large tensors: a fresh tensor of a few hundred MB
# (every message pass and score product makes several) otherwise costs one page fault per 4 KiB, which takes as
# long as the arithmetic on it. torch reads this once, at its first allocation: hmgnn is imported before torch.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__all__ = ["__version__", "load", "Model"]


def __getattr__(name: str):
    # imported on first use: `import hmgnn` (the CLI's start, `hmgnn --version`) stays free of torch
    if name in ("load", "Model"):
        from hmgnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'hmgnn' has no attribute {name!r}")
