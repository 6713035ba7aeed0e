"""The model registry: every recommender by name, the baselines and (imported on first use) the trained `gnn`
and its kin and the item-graph and ALS models; `create_model(name, cfg)` builds one, and an unknown name is a
ConfigError listing the known.

It sits above both the models (hmgnn.models) and the ranking stage (hmgnn.ranking), so it may name either: the
two-stage recommender lives on the ranking floor (hmgnn.ranking.recommender), and LAZY_MODELS names it for
`model_class` to import on first use. Importing this module stays as light as importing hmgnn.models (the
baselines only)."""

from __future__ import annotations

import importlib
from typing import Any

from hmgnn.errors import ConfigError
from hmgnn.models import baselines
from hmgnn.models.base import MODELS, Recommender

# Registered on first use: importing them pulls in heavy dependencies (torch_geometric), and the trained GNN's
# recommenders sit on the ranking floor.
LAZY_MODELS = {"gnn": "hmgnn.ranking.recommender", "gnn-retrieval": "hmgnn.ranking.recommender",
               "reference": "hmgnn.ranking.recommender", "ranker-only": "hmgnn.ranking.recommender",
               "als": "hmgnn.models.als", "rp3beta": "hmgnn.models.itemgraph", "ease": "hmgnn.models.itemgraph"}

__all__ = ["LAZY_MODELS", "create_model", "model_names", "model_class", "resolve_model_name", "auto_choice", "AUTO",
           "AUTO_FALLBACK", "AUTO_CHOICES"]

AUTO = "auto"
"""The default model name of `recommend` and `serve`: the trained `gnn` where one exists, else AUTO_FALLBACK."""
AUTO_FALLBACK = "trending"


def model_names() -> list[str]:
    """Every model name the config accepts (besides `auto`)."""
    return sorted(set(MODELS) | set(LAZY_MODELS))


def resolve_model_name(name: str, workdir: Any) -> str:
    """`auto` -> the model `hmgnn train` chose where <workdir>/model holds a trained checkpoint (the `gnn`, or the
    baseline that ranked its held-out label customers better: `auto_choice`), else the `trending` baseline; any
    other name as it is. So `recommend` and `serve` answer with the same model by default. A model folder given as
    the workdir: `auto` is its own choice (`reference` for that recipe's folder)."""
    from hmgnn import artifacts

    if name != AUTO:
        return name
    where = artifacts.locate(workdir)
    if where.model_folder:
        from hmgnn.portable import recipe

        return "reference" if recipe(where.path) == "reference" else auto_choice(where.path)
    return auto_choice(where.model) if artifacts.has_checkpoint(where.model) else AUTO_FALLBACK


AUTO_CHOICES = ("gnn", *baselines.BASELINES)
"""What `hmgnn train` may choose for `auto`: the gnn, or a baseline that ranked the held-out customers better."""


def auto_choice(model_folder: Any) -> str:
    """The model `hmgnn train` chose for `auto` (its manifest's `auto`; `gnn` for a folder from before the choice)."""
    from pathlib import Path

    from hmgnn import artifacts

    chosen = (artifacts.read_manifest(Path(model_folder)) or {}).get("auto", "gnn")
    return chosen if chosen in AUTO_CHOICES else "gnn"


def model_class(name: str) -> type[Recommender]:
    if name not in MODELS and name in LAZY_MODELS:
        try:
            importlib.import_module(LAZY_MODELS[name])
        except ModuleNotFoundError as exc:
            raise ConfigError(f"model '{name}' is not available here ({exc})") from None
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}' (known: {', '.join(model_names())})")
    return MODELS[name]


def create_model(name: str, cfg: Any = None) -> Recommender:
    """A fresh, unfitted model; models with a checkpoint read it via their `from_config(cfg)`."""
    cls = model_class(name)
    return cls.from_config(cfg) if cfg is not None else cls()
