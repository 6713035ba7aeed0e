"""hmgnn: personalised top-12 H&M fashion recommendations with a graph neural network.

`hmgnn.load(workdir)` gives a trained workdir's recommender (see `hmgnn.api`); the CLI is `hmgnn`.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load", "Model"]


def __getattr__(name: str):
    # imported on first use: `import hmgnn` (the CLI's start, `hmgnn --version`) stays free of torch
    if name in ("load", "Model"):
        from hmgnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'hmgnn' has no attribute {name!r}")
