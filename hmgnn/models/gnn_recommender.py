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
from hmgnn.models.base import Interactions, Recommender, csr_rows, positions_in, register
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
                 device: str = "cpu", cold_start: bool = True, batch_size: int = 1024,
                 candidate_days: int = 0) -> None:
        super().__init__(cold_start=cold_start, batch_size=batch_size)
        self.checkpoint = checkpoint
        self.candidate_days = candidate_days
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
        # the pair head gives probabilities; BCE-trained logits are probabilities after a sigmoid; ranking losses
        # only order articles
        self.pair_head = checkpoint.get("pair_head") if self.model.mlp is None else None
        self.score_kind = ("probability" if self.pair_head else
                           "logit" if loss == "bce" and not self.blend else "rank")

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
        return cls(checkpoint, customer_x, article_x, device=device, batch_size=cfg.recommend.batch_size,
                   candidate_days=cfg.recommend.candidate_days if cls.name == "gnn" else 0)

    @torch.no_grad()
    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        from hmgnn.train import BlendSignals, DotBlend, blend_segments, build_adjacency, node_inputs

        if (interactions.n_customers, interactions.n_articles) != (self.model.num_customers, self.model.num_articles):
            raise InputError(f"the model was trained on {self.model.num_customers} customers x "
                             f"{self.model.num_articles} articles, the data has {interactions.n_customers} x "
                             f"{interactions.n_articles}; retrain with `hmgnn train --force`")
        adj = build_adjacency(interactions).to(self.device)
        inputs = node_inputs(self.checkpoint["recipe"], self.checkpoint["time_features"], self.customer_x,
                             self.article_x, interactions, as_of)
        inputs = {k: (v.to(self.device) if v is not None else None) for k, v in inputs.items()}
        self.customer_emb, self.article_emb = self.model.embeddings(adj, **inputs)
        # the articles it ranks: those sold in the last candidate_days (0: all), plus, for each customer, the
        # articles their own history boosts (bought ones, other colours of bought products); the rest score -inf
        self.candidates = None
        if self.candidate_days:
            sold = np.unique(interactions.article_index[interactions.days_before(as_of) < self.candidate_days])
            self.candidates = sold.astype(np.int64) if 0 < len(sold) < self.n_articles else None
        self.signals = self.dot_blend = None
        if self.blend:
            segments = blend_segments(self.blend)
            variant = any(g.get("variant_weight") for g in segments)
            self.signals = BlendSignals.of(interactions, as_of, [g["repurchase_half_life"] for g in segments],
                                           self.checkpoint["article_product"] if variant else None,
                                           walk=any(g.get("walk_weight") for g in segments))
            if self.model.mlp is None:
                self.dot_blend = DotBlend(self.article_emb, self.signals, self.blend)
        self._candidate_rows = None  # the candidates' rows of the dot blend's article matrix, for one request
        if self.candidates is not None and self.dot_blend is not None:
            index = torch.from_numpy(self.candidates).to(self.device)
            self._candidate_rows = self.dot_blend.articles.index_select(0, index).contiguous()
        self._pair_features = None
        self._fit_data = (interactions, as_of)  # the pair head's inputs are built on the first score() call

    def pair_features(self) -> Any:
        """The pair head's inputs as of the fit (built once, when `score` first needs them)."""
        if self._pair_features is None:
            from hmgnn.pair_head import PairFeatures

            self._pair_features = PairFeatures(*self._fit_data, self.checkpoint.get("article_product"), self.signals)
        return self._pair_features

    def _own_articles(self, customers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, article) of the articles each customer's history puts forward: bought ones and their variants."""
        parts = [csr_rows(self.user_items, customers)[:2]]
        if self.signals is not None and self.signals.variant is not None:
            parts.append(csr_rows(self.signals.variant, customers)[:2])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _merge_candidates(self, own_articles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(columns, at, other_at): the sorted union of the candidates and `own_articles`, the candidates'
        positions in it and the positions of the others (own articles that are not candidates)."""
        mine = np.unique(own_articles)
        others = mine[~positions_in(self.candidates, mine)[0]]
        at = np.arange(len(self.candidates)) + np.searchsorted(others, self.candidates)
        other_at = np.searchsorted(self.candidates, others) + np.arange(len(others))
        columns = np.empty(len(self.candidates) + len(others), np.int64)
        columns[at], columns[other_at] = self.candidates, others
        return columns, at, other_at

    @torch.no_grad()
    def candidate_scores(self, customers: np.ndarray, scratch: bool = False) -> tuple[torch.Tensor, np.ndarray | None]:
        """(scores [len(customers), len(columns)], columns): the sorted articles scored for this batch (None: all)
        and their scores, -inf where an article is a candidate only for another customer of the batch.
        `scratch`: the scores may live in a reusable buffer (`DotBlend.scores`), valid until the next such call."""
        from hmgnn.train import blended_scores

        columns = own = None
        idx = torch.from_numpy(customers).to(self.device)
        if self.candidates is not None:
            own = self._own_articles(customers)
            columns, at, other_at = self._merge_candidates(own[1])
            if len(customers) == 1 and self._candidate_rows is not None:
                # one request: the prepared candidate rows plus the customer's own others (nothing to mask)
                scores = self.dot_blend.scores(self.customer_emb[idx], customers, columns,
                                               parts=(self._candidate_rows, at, other_at))
                return scores, columns
        if self.dot_blend is not None:
            scores = self.dot_blend.scores(self.customer_emb[idx], customers, columns, scratch=scratch)
        else:
            scores = self.model.score_all(self.customer_emb, self.article_emb, idx)
            if self.blend:
                scores = blended_scores(scores, customers, self.signals, self.blend)
            if columns is not None:
                scores = scores[:, torch.from_numpy(columns).to(self.device)]
        if own is not None and len(other_at):
            extra = np.zeros(len(columns), bool)
            extra[other_at] = True
            r, pos = own[0], np.searchsorted(columns, own[1])
            keep = extra[pos]
            r, pos = torch.from_numpy(r[keep]).to(self.device), torch.from_numpy(pos[keep]).to(self.device)
            values = scores[r, pos]
            scores[:, torch.from_numpy(np.flatnonzero(extra)).to(self.device)] = -torch.inf
            scores[r, pos] = values
        return scores, columns

    def score(self, customer_indices: Any, article_indices: Any) -> np.ndarray:
        """P(bought) of each pair from the pair head when the checkpoint has one (the binary metrics compare pairs
        across customers, which the ranking blend does not order); else the ranking scores, as every model's."""
        if self.pair_head is None:
            return super().score(customer_indices, article_indices)
        from hmgnn.pair_head import pair_zscores, probability

        customers, articles = self._pairs(customer_indices, article_indices)
        z = pair_zscores(self.customer_emb.cpu(), self.article_emb.cpu(), customers, articles,
                         self.dot_blend.mean.cpu(), self.dot_blend.cov.cpu())
        return probability(self.pair_head, self.pair_features().matrix(z, customers, articles)).astype(np.float32)

    @torch.no_grad()
    def score_all(self, customer_indices: np.ndarray) -> torch.Tensor:
        customers = np.asarray(customer_indices, np.int64)
        scores, columns = self.candidate_scores(customers)
        if columns is not None:
            full = torch.full((len(customers), self.n_articles), -torch.inf, dtype=scores.dtype, device=scores.device)
            full[:, torch.from_numpy(columns).to(self.device)] = scores
            scores = full
        return scores.cpu()

    def _rank_dense(self, customers: np.ndarray, k: int, filt: bool,
                    cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if cand is not None:
            return super()._rank_dense(customers, k, filt, cand)
        # the batch's candidate columns only; ranked before the next batch reuses the buffer
        scores, columns = self.candidate_scores(customers, scratch=True)
        return self.rank_scores(scores.cpu(), customers, k, filt, columns)

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fitted customer and article embeddings (for serving and similar-article shelves)."""
        self._check_fitted()
        return self.customer_emb.cpu(), self.article_emb.cpu()


@register("reference")
class ReferenceRecommender(GNNRecommender):
    """The reference project's recipe (features-only 2-layer GraphSAGE, BCE, 1:1 uniform negatives)."""

    folder = "reference"
