"""The trained GNN behind the recommender interface: `gnn` (hmgnn's hybrid) and `reference` (the reference recipe).

`fit` runs one message pass over the purchases it is given (no retraining), so the same checkpoint scores the
validation window from history and the test window from history + validation, as a deployed model would.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmgnn import artifacts
from hmgnn.errors import InputError
from hmgnn.models.base import Interactions, Recommender, register
from hmgnn.models.gnn import HeteroSAGERecommender


def load_checkpoint(folder: Path) -> dict[str, Any]:
    artifacts.require(folder, [artifacts.MODEL_PT], artifacts.MODEL)
    return torch.load(folder / artifacts.MODEL_PT, weights_only=False, map_location="cpu")


@register("gnn")
class GNNRecommender(Recommender):
    """Heterogeneous GraphSAGE scores, z-scored per customer and blended with popularity and repurchase.

    Args:
        checkpoint: the dict `hmgnn train` saves in model.pt.
        customer_x, article_x: the static node features of graph/graph.pt.
        device: where the message pass and the scoring run.
    """

    folder = artifacts.MODEL
    fixed_catalogue = True
    """Bound to the customers and articles of the graph it was trained on."""

    def __init__(self, checkpoint: dict[str, Any], customer_x: torch.Tensor, article_x: torch.Tensor,
                 device: str = "cpu", cold_start: bool = True, batch_size: int = 1024) -> None:
        super().__init__(cold_start=cold_start, batch_size=batch_size)
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.model = HeteroSAGERecommender(**checkpoint["model_args"])
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.eval().to(self.device)
        self.customer_x, self.article_x = customer_x, article_x
        self.blend = checkpoint.get("blend")
        from hmgnn.train import blend_segments

        # drops bought articles for everybody only if every segment's blend does; `drops_bought`: some segment does
        # (its customers' bought articles score -inf)
        drops = [g["repurchase_weight"] is None for g in blend_segments(self.blend)] if self.blend else [False]
        self.filters_bought, self.drops_bought = all(drops), any(drops)
        loss = checkpoint["train_config"]["loss"]
        # BCE-trained logits are probabilities after a sigmoid; ranking losses only order articles
        self.score_kind = "logit" if loss == "bce" and not self.blend else "rank"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, blend={self.blend})"

    @classmethod
    def from_config(cls, cfg: Any) -> GNNRecommender:
        from hmgnn.train import load_graph_features

        workdir = Path(cfg.workdir)
        checkpoint = load_checkpoint(workdir / cls.folder)
        customer_x, article_x, _ = load_graph_features(workdir / artifacts.GRAPH)
        fingerprint = artifacts.fingerprint(workdir / artifacts.GRAPH / artifacts.GRAPH_PT)
        if fingerprint != checkpoint.get("graph_fingerprint"):
            raise InputError(f"{workdir / cls.folder / artifacts.MODEL_PT} was trained on another graph.pt; "
                             f"run `hmgnn train --force` (or `hmgnn train -c ... --set train.recipe={cls.name}`)")
        device = "cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu"
        return cls(checkpoint, customer_x, article_x, device=device, batch_size=cfg.recommend.batch_size)

    @torch.no_grad()
    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        from hmgnn.train import BlendSignals, blend_segments, build_adjacency, node_inputs

        if (interactions.n_customers, interactions.n_articles) != (self.model.num_customers, self.model.num_articles):
            raise InputError(f"the model was trained on {self.model.num_customers} customers x "
                             f"{self.model.num_articles} articles, the data has {interactions.n_customers} x "
                             f"{interactions.n_articles}; retrain with `hmgnn train --force`")
        adj = build_adjacency(interactions).to(self.device)
        inputs = node_inputs(self.checkpoint["recipe"], self.checkpoint["time_features"], self.customer_x,
                             self.article_x, interactions, as_of)
        inputs = {k: (v.to(self.device) if v is not None else None) for k, v in inputs.items()}
        self.customer_emb, self.article_emb = self.model.embeddings(adj, **inputs)
        if self.blend:
            segments = blend_segments(self.blend)
            variant = any(g.get("variant_weight") for g in segments)
            self.signals = BlendSignals.of(interactions, as_of, [g["repurchase_half_life"] for g in segments],
                                           self.checkpoint["article_product"] if variant else None)

    @torch.no_grad()
    def score_all(self, customer_indices: np.ndarray) -> torch.Tensor:
        from hmgnn.train import blended_scores

        customers = np.asarray(customer_indices, np.int64)
        idx = torch.from_numpy(customers).to(self.device)
        scores = self.model.score_all(self.customer_emb, self.article_emb, idx)
        if self.blend:
            scores = blended_scores(scores, customers, self.signals, self.blend)
        return scores.cpu()

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fitted customer and article embeddings (for serving and similar-article shelves)."""
        self._check_fitted()
        return self.customer_emb.cpu(), self.article_emb.cpu()


@register("reference")
class ReferenceRecommender(GNNRecommender):
    """The reference project's recipe (features-only 2-layer GraphSAGE, BCE, 1:1 uniform negatives)."""

    folder = "reference"
