"""The models: the recommender interface (`base.Recommender`, registered by name with `base.register` into
`base.MODELS`), the one-line baselines (imported here, so they register), the item-graph models, ALS and the GNN.

The registry that builds a model by name (`create_model`, `model_class`, `model_names`, `auto`) is hmgnn.registry,
on the floor above: nothing here imports the floors above the models."""

from __future__ import annotations

from hmgnn.interactions import Interactions
from hmgnn.models import baselines  # noqa: F401  (registers the baselines)
from hmgnn.models.base import MODELS, Recommender, register

__all__ = ["MODELS", "Interactions", "Recommender", "register"]
