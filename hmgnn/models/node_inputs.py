"""The GNN's node inputs as of a day: static features plus customer recency and activity and article popularity
and trend, recomputed at every as-of day (so they never leak), and the purchase graph's adjacency."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from hmgnn.interactions import MONTH, WEEK, Interactions, PurchasePairs, article_sales, purchase_matrix, sales_trend
from hmgnn.models.base import csr_rows, stored_at
from hmgnn.models.gnn import HeteroSAGE, own_edge_basis
from hmgnn.models.sparse import Adjacency

CUSTOMER_TIME_FEATURES = ["log_purchases", "log_days_since_last", "log_purchases_28d", "has_history"]
ARTICLE_TIME_FEATURES = ["log_sales_7d", "log_sales_28d", "log_sales_all", "trend_7d_vs_28d", "log_days_on_sale"]
NEVER = 730  # days used for "never bought / never sold": about the span of the Kaggle data


def _standardise(columns: list[np.ndarray]) -> torch.Tensor:
    x = np.stack(columns, axis=1).astype(np.float32)
    # z-scores over nodes, so inputs keep one scale whatever the data's size or as-of day
    x -= x.mean(axis=0, keepdims=True)
    x /= x.std(axis=0, keepdims=True) + 1e-6
    return torch.from_numpy(x)


def time_features(inter: Interactions, as_of: dt.date) -> tuple[torch.Tensor, torch.Tensor]:
    """`(customer_extra [n_customers, 4], article_extra [n_articles, 5])` from the purchases up to `as_of`."""
    days = inter.days_before(as_of)
    nc, na = inter.n_customers, inter.n_articles
    c, a = inter.customer_index, inter.article_index

    purchases = np.bincount(c, minlength=nc)
    last = np.full(nc, NEVER, np.int64)
    np.minimum.at(last, c, days) if len(c) else None
    recent_c = np.bincount(c[days < MONTH], minlength=nc)
    customer = _standardise([np.log1p(purchases), np.log1p(np.minimum(last, NEVER)), np.log1p(recent_c),
                             (purchases > 0).astype(np.float32)])

    sales7, sales28 = article_sales(inter, where=days < WEEK), article_sales(inter, where=days < MONTH)
    sales = article_sales(inter)
    first = np.zeros(na, np.int64)
    np.maximum.at(first, a, days) if len(a) else None
    article = _standardise([np.log1p(sales7), np.log1p(sales28), np.log1p(sales),
                            sales_trend(sales7, sales28), np.log1p(first)])
    return customer, article


def build_adjacency(inter: Interactions, mask: np.ndarray | None = None, counts: sp.csr_matrix | None = None,
                    as_of: dt.date | None = None, half_life: float = 0.0) -> Adjacency:
    """The purchase graph's adjacency (message passing) over the purchases, or those where `mask` is set; `counts`,
    their customer x article matrix (`purchase_matrix`) where already built. With `half_life` > 0 (days), a pair
    weighs the sum of 0.5 ** (days before `as_of` / half_life) over its purchases instead of their count."""
    if half_life > 0:
        if as_of is None:
            raise ValueError("a half-life needs the as-of day its purchases' ages count from")
        weights = np.exp2(-inter.days_before(as_of) / half_life).astype(np.float32)
        counts = purchase_matrix(inter, weights, where=mask)
    elif counts is None:
        counts = purchase_matrix(inter, where=mask)
    return Adjacency.from_counts(torch.from_numpy(counts.indptr), torch.from_numpy(counts.indices),
                                 torch.from_numpy(counts.data), inter.n_customers, inter.n_articles)


@dataclass(frozen=True)
class OwnEdges:
    """The pairs each customer bought up to an as-of day, for the GNN's own-edge term (`HeteroSAGE.own_term`).

    Args:
        times: customer x article purchases per pair bought (the pattern: sorted indices).
        last: the same pattern's days from the last purchase to the as-of day, plus one (as `Snapshot.last_bought`
            stores them, so the ranker's snapshot lends its matrices without a copy).
    """

    times: sp.csr_matrix
    last: sp.csr_matrix
    weights: torch.Tensor | None = None
    """[OWN_BASIS] weights of the basis in place of the model's own-edge term (the GNN alone's retrieval head,
    fit after training on frozen embeddings); None: `HeteroSAGE.own_term`."""

    def with_weights(self, weights: torch.Tensor) -> OwnEdges:
        """The same pairs, their term weighed by `weights` instead of the model's."""
        return OwnEdges(self.times, self.last, weights.detach().float().reshape(-1))

    @property
    def has_term(self) -> bool:
        return self.weights is not None

    @classmethod
    def of(cls, inter: Interactions, as_of: dt.date, mask: np.ndarray | None = None) -> OwnEdges:
        """The pairs bought among the purchases (those where `mask` is set), none after `as_of`."""
        visible = inter if mask is None else inter.subset(mask)
        pairs = PurchasePairs(visible, visible.days_before(as_of))
        return cls(pairs.matrix(pairs.counts()), pairs.matrix(pairs.reduce(np.minimum, pairs.days) + 1.0))

    def basis(self, times: np.ndarray, last: np.ndarray, device: torch.device) -> torch.Tensor:
        """[P, OWN_BASIS] `own_edge_basis` rows of stored entries' values."""
        return own_edge_basis(torch.from_numpy(times).to(device), torch.from_numpy(last - 1.0).to(device))

    def _terms(self, model: HeteroSAGE, times: np.ndarray, last: np.ndarray, device: torch.device) -> torch.Tensor:
        basis = self.basis(times, last, device)
        return model.own_term(basis) if self.weights is None else basis @ self.weights.to(device)

    def pairs(self, model: HeteroSAGE, customers: np.ndarray, articles: np.ndarray,
              device: torch.device) -> torch.Tensor:
        """[P] own-edge terms of the pairs (customers[i], articles[i]); 0 where the pair was not bought."""
        at = stored_at(self.times, np.asarray(customers, np.int64), np.asarray(articles, np.int64))
        out = torch.zeros(len(at), device=device)
        hit = np.flatnonzero(at >= 0)
        if len(hit):
            entries = at[hit]
            out[torch.from_numpy(hit).to(device)] = self._terms(model, self.times.data[entries],
                                                                self.last.data[entries], device)
        return out

    def rows(self, model: HeteroSAGE, customers: np.ndarray,
             device: torch.device) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """(row in `customers`, article, own-edge term) of every pair these customers bought."""
        customers = np.asarray(customers, np.int64)
        r, a, times = csr_rows(self.times, customers)
        last = csr_rows(self.last, customers)[2]  # the same pattern: the same entries in the same order
        return r, a, self._terms(model, times, last, device)

    def add_to(self, scores: torch.Tensor, model: HeteroSAGE, customers: np.ndarray,
               articles: np.ndarray | None = None) -> torch.Tensor:
        """`scores` ([customers, articles]: every article, or the sorted `articles` listed) with the own-edge term
        added in place to the pairs these customers bought (those of unlisted articles have no column)."""
        r, a, term = self.rows(model, customers, scores.device)
        if articles is not None:
            col = np.minimum(np.searchsorted(articles, a), max(len(articles) - 1, 0))
            listed = (articles[col] == a) if len(articles) else np.zeros(len(a), bool)
            r, a, term = r[listed], col[listed], term[torch.from_numpy(np.flatnonzero(listed)).to(scores.device)]
        scores[torch.from_numpy(r).to(scores.device), torch.from_numpy(a).to(scores.device)] += term.to(scores.dtype)
        return scores


def node_inputs(recipe: str, with_time: bool, customer_x: torch.Tensor, article_x: torch.Tensor,
                inter: Interactions, as_of: dt.date, mask: np.ndarray | None = None) -> dict[str, torch.Tensor | None]:
    """The GNN's node inputs as of a day: static features, plus time features from the visible purchases."""
    if recipe == "reference":
        # the reference project row-normalises its one-hot features (PyG NormalizeFeatures)
        customer_x, article_x = _row_normalise(customer_x), _row_normalise(article_x)
    inputs: dict[str, torch.Tensor | None] = {"customer_x": customer_x, "article_x": article_x,
                                              "customer_extra": None, "article_extra": None}
    if with_time:
        visible = inter if mask is None else inter.subset(mask)
        inputs["customer_extra"], inputs["article_extra"] = time_features(visible, as_of)
    return inputs


def inputs_on(inputs: dict[str, torch.Tensor | None], device: torch.device) -> dict[str, torch.Tensor | None]:
    """`node_inputs`' tensors moved to `device` (the absent ones stay None)."""
    return {k: (v.to(device) if v is not None else None) for k, v in inputs.items()}


def _row_normalise(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(min=0)
    return x / x.sum(dim=1, keepdim=True).clamp(min=1e-12)
